# SPDX-License-Identifier: Apache-2.0
"""`FleetWebServer`: a small read-only web page of the fleet, served by the twin process (stdlib http.server).

    server = FleetWebServer(session, host="127.0.0.1", port=8765)   # [fleet] web_host / web_port
    server.start(); print(server.url)                               # http://127.0.0.1:8765/

Pages: ``/`` (the fleet table, refreshed every second by a few lines of JavaScript, sortable by clicking a
column, click a robot for its details), ``/api/fleet`` (the rows as JSON, `FleetRow.to_dict`), ``/api/robot/<id>``
(one robot's `TwinStatus.to_dict` and health summary). Only GET and HEAD: the page cannot change the twin. It binds
to 127.0.0.1 unless configured otherwise; there is no authentication, so expose it beyond the machine only
behind a reverse proxy that adds it.
"""

from __future__ import annotations

import html
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from ._view import fleet_rows

__all__ = ["FleetWebServer"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }}
table {{ border-collapse: collapse; width: 100%; }}
th, td {{ padding: 4px 8px; border-bottom: 1px solid #ddd; text-align: left; white-space: nowrap; }}
th {{ cursor: pointer; background: #f4f4f4; user-select: none; }}
td.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.ok td.h {{ color: #17823b; }} tr.stale td.h {{ color: #b26a00; }} tr.lost td.h {{ color: #c62828; font-weight: bold; }}
tr:hover {{ background: #f0f6ff; cursor: pointer; }}
#detail {{ white-space: pre-wrap; font: 12px monospace; background: #fafafa; padding: 1em; margin-top: 1em; }}
</style></head>
<body><h1>{title}</h1><p id="summary">loading…</p>
<table><thead><tr>
<th data-k="robot_id">robot</th><th data-k="health">health</th><th data-k="robot_health">robot health</th>
<th data-k="rate_hz">msg/s</th><th data-k="latency_ms">latency ms</th><th data-k="added_p99_ms">p99 added ms</th>
<th data-k="wear">wear</th><th data-k="rejected">rejected</th><th data-k="last_event">last event</th>
</tr></thead><tbody id="rows"></tbody></table>
<div id="detail">click a robot for its details</div>
<script>
let sortKey = "health", desc = false, rows = [];
const order = {{lost: 0, stale: 1, ok: 2}};
function cmp(a, b) {{
  let x = a[sortKey], y = b[sortKey];
  if (sortKey === "health") {{ x = order[x] ?? 0; y = order[y] ?? 0; }}
  if (x === null) return 1; if (y === null) return -1;
  const r = x < y ? -1 : x > y ? 1 : 0;
  return desc ? -r : r;
}}
function num(v, d) {{ return v === null || v === undefined ? "—" : Number(v).toFixed(d); }}
function esc(s) {{ return String(s).replace(/[&<>"]/g, c => ({{"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}})[c]); }}
function draw() {{
  const body = document.getElementById("rows");
  body.innerHTML = rows.slice().sort(cmp).map(r =>
    `<tr class="${{esc(r.health)}}" data-id="${{esc(r.robot_id)}}"><td>${{esc(r.robot_id)}}</td><td class="h">${{esc(r.health)}}</td>` +
    `<td>${{esc(r.robot_health || "—")}}</td><td class="num">${{num(r.rate_hz, 1)}}</td><td class="num">${{num(r.latency_ms, 2)}}</td>` +
    `<td class="num">${{num(r.added_p99_ms, 2)}}</td><td class="num">${{num(r.wear, 2)}}</td><td class="num">${{r.rejected}}</td>` +
    `<td>${{esc(r.last_event || r.error || "")}}</td></tr>`).join("");
  const n = h => rows.filter(r => r.health === h).length;
  document.getElementById("summary").textContent =
    `${{rows.length}} robots — ok ${{n("ok")}}, stale ${{n("stale")}}, lost ${{n("lost")}} (sorted by ${{sortKey}})`;
}}
async function refresh() {{
  try {{ rows = await (await fetch("api/fleet")).json(); draw(); }} catch (e) {{ document.getElementById("summary").textContent = "twin not reachable"; }}
}}
document.querySelectorAll("th").forEach(th => th.onclick = () => {{
  const k = th.dataset.k; desc = (k === sortKey) ? !desc : ["rate_hz", "latency_ms", "added_p99_ms", "wear", "rejected"].includes(k);
  sortKey = k; draw();
}});
document.getElementById("rows").onclick = async ev => {{
  const tr = ev.target.closest("tr"); if (!tr) return;
  const doc = await (await fetch("api/robot/" + encodeURIComponent(tr.dataset.id))).json();
  document.getElementById("detail").textContent = JSON.stringify(doc, null, 2);
}};
refresh(); setInterval(refresh, 1000);
</script></body></html>
"""


class FleetWebServer:
    """Serves the fleet page of ``session`` (a `FleetSession`) on ``host:port`` (port 0: a free one).

    Args:
        session: the fleet (anything with ``robots`` and ``router`` as `fleet_rows` reads them).
        host: interface to bind; default loopback only.
        port: TCP port; 0 picks a free one (see `url`).
        title: page title.
    """

    def __init__(self, session: Any, *, host: str = "127.0.0.1", port: int = 0, title: str = "twin_ext fleet") -> None:
        self.session = session
        self.title = title
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                server._get(self)

            def do_HEAD(self) -> None:  # noqa: N802
                server._get(self, head=True)

            def do_POST(self) -> None:  # noqa: N802 - read-only: say so
                self.send_error(405, "the fleet page is read-only")

            do_PUT = do_DELETE = do_PATCH = do_POST  # noqa: N815

            def log_message(self, *args: Any) -> None:  # no access log on stderr
                pass

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self.host, self.port = self._httpd.server_address[:2]
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/"

    def start(self) -> None:
        """Serve on a daemon thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._httpd.serve_forever, name="twin_ext-fleet-web", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self._httpd.server_close()

    def _get(self, handler: BaseHTTPRequestHandler, *, head: bool = False) -> None:
        path = handler.path.split("?", 1)[0]
        try:
            if path in ("/", "/index.html"):
                body, kind = _PAGE.format(title=html.escape(self.title)).encode(), "text/html; charset=utf-8"
            elif path == "/api/fleet":
                body = json.dumps([r.to_dict() for r in fleet_rows(self.session)]).encode()
                kind = "application/json"
            elif path.startswith("/api/robot/"):
                robot = self.session.robots.get(unquote(path[len("/api/robot/") :]))
                if robot is None:
                    handler.send_error(404, "no such robot in this twin")
                    return
                doc = robot.twin.status().to_dict()
                summary = robot.health.summary if robot.health is not None else None
                doc["health_summary"] = summary.to_dict() if summary is not None else None
                doc["model"] = robot.model_note
                body, kind = json.dumps(doc, default=str).encode(), "application/json"
            else:
                handler.send_error(404, "not found: try / or /api/fleet")
                return
        except Exception as exc:  # noqa: BLE001 - the page must not take the twin down
            handler.send_error(500, f"the twin could not answer: {exc!r}"[:200])
            return
        handler.send_response(200)
        handler.send_header("Content-Type", kind)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        if not head:
            handler.wfile.write(body)
