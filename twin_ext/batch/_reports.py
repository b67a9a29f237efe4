# SPDX-License-Identifier: Apache-2.0
"""A suite's outputs: JUnit XML (one test case per job), a summary JSON, and an HTML report with per-job pages.

Plots are inline SVG written here (no plotting library: the report is made wherever the suite ran, Kit
included).
"""

from __future__ import annotations

import html
import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

__all__ = ["job_page_name", "write_html", "write_junit", "write_summary"]

_COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "error": "#6a1b9a"}


def job_page_name(result: dict[str, Any]) -> str:
    """File name of a job's page under ``jobs/``: its name made file-safe plus its key."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", result["name"])[:80]
    return f"{safe}-{result.get('key', '')[:8]}.html"


def _failure_text(result: dict[str, Any]) -> str:
    return "; ".join(f"{c['name']}: {c['detail']}" for c in result["checks"] if not c["ok"])


def write_junit(path: Path, suite: str, results: list[dict[str, Any]]) -> None:
    """JUnit XML: ``<testsuites><testsuite name=suite>`` with one ``<testcase classname="<suite>.<kind>"
    name="<job>">`` per job; a failed check is a ``<failure>``, a job that could not run an ``<error>``."""
    failures = sum(r["status"] == "fail" for r in results)
    errors = sum(r["status"] == "error" for r in results)
    seconds = sum(r.get("seconds", 0.0) for r in results)
    root = ET.Element(
        "testsuites", name=suite, tests=str(len(results)), failures=str(failures), errors=str(errors),
        time=f"{seconds:.3f}",
    )  # fmt: skip
    ts = ET.SubElement(
        root, "testsuite", name=suite, tests=str(len(results)), failures=str(failures), errors=str(errors),
        skipped="0", time=f"{seconds:.3f}",
    )  # fmt: skip
    for r in results:
        case = ET.SubElement(
            ts, "testcase", classname=f"{suite}.{r['kind']}", name=r["name"], time=f"{r.get('seconds', 0.0):.3f}"
        )
        if r["status"] == "error":
            node = ET.SubElement(case, "error", message=r["error"][:500], type="JobError")
            node.text = r.get("traceback", r["error"])
        elif r["status"] == "fail":
            text = _failure_text(r)
            node = ET.SubElement(case, "failure", message=text[:500], type="CheckFailed")
            node.text = text
        lines = [f"{c['name']}: {'ok' if c['ok'] else 'FAILED'} - {c['detail']}" for c in r["checks"]]
        lines += [f"warning: {w}" for w in r.get("warnings", [])]
        if lines:
            ET.SubElement(case, "system-out").text = "\n".join(lines)
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)


def write_summary(path: Path, suite: dict[str, Any], results: list[dict[str, Any]]) -> dict[str, Any]:
    """The summary JSON: suite, counts, and each job's status, checks, metrics and warnings (no plot series)."""
    counts = {s: sum(r["status"] == s for r in results) for s in ("pass", "fail", "error")}
    doc = {
        "version": 1,
        "suite": suite,
        "jobs": len(results),
        "counts": counts,
        "passed": counts["pass"] == len(results),
        "results": [{k: v for k, v in r.items() if k not in ("series", "traceback")} for r in results],
    }
    path.write_text(json.dumps(doc, indent=2, default=_json_default), encoding="utf-8")
    return doc


def _json_default(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _ratio_chart(results: list[dict[str, Any]]) -> str:
    """Horizontal bars: twin/last-sample-hold RMS per job (jobs with truth)."""
    rows = [(r["name"], r["metrics"].get("fidelity_ratio")) for r in results]
    rows = [(n, v) for n, v in rows if isinstance(v, (int, float))]
    if not rows:
        return "<p>No job had the plant's truth to score fidelity against.</p>"
    width, bar_h, label_w = 760, 18, 330
    top = max(1.0, max(v for _, v in rows))
    scale = (width - label_w - 60) / top
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{len(rows) * (bar_h + 4) + 24}">']
    for i, (name, v) in enumerate(rows):
        y = i * (bar_h + 4)
        colour = "#1565c0" if v <= 1 / 3 else "#ef6c00"
        out.append(f'<text x="0" y="{y + 13}" font-size="11">{html.escape(name[:55])}</text>')
        out.append(f'<rect x="{label_w}" y="{y}" width="{max(1.0, v * scale):.1f}" height="{bar_h}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + v * scale + 4:.1f}" y="{y + 13}" font-size="11">{v:.3f}</text>')
    x13 = label_w + scale / 3
    y_end = len(rows) * (bar_h + 4)
    out.append(f'<line x1="{x13:.1f}" y1="0" x2="{x13:.1f}" y2="{y_end}" stroke="#555" stroke-dasharray="4 3"/>')
    out.append(f'<text x="{x13 + 3:.1f}" y="{y_end + 14}" font-size="10">1/3</text></svg>')
    return "".join(out)


def _series_chart(series: dict[str, Any]) -> str:
    """Lines: RMS error over the joints per display tick, twin and last-sample-hold, mrad."""
    t = series.get("t_s") or []
    if len(t) < 2:
        return "<p>No plant truth in this run: no error plot.</p>"
    width, height, pad = 760, 240, 40
    values = [v for key in ("twin_rad", "hold_rad") for v in series.get(key, []) if v is not None]
    top = max(values) * 1e3 if values else 1.0
    top = top or 1.0

    def path(key: str) -> str:
        pts = []
        for x, v in zip(t, series.get(key, []), strict=False):
            if v is None:
                continue
            px = pad + (x - t[0]) / (t[-1] - t[0]) * (width - 2 * pad)
            py = height - pad - v * 1e3 / top * (height - 2 * pad)
            pts.append(f"{px:.1f},{py:.1f}")
        return " ".join(pts)

    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}">'
        f'<polyline fill="none" stroke="#ef6c00" stroke-width="1" points="{path("hold_rad")}"/>'
        f'<polyline fill="none" stroke="#1565c0" stroke-width="1.5" points="{path("twin_rad")}"/>'
        f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="#333"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad}" y2="{height - pad}" stroke="#333"/>'
        f'<text x="{pad}" y="{pad - 8}" font-size="11">RMS error over joints, mrad (max {top:.2f}); '
        f'<tspan fill="#1565c0">twin</tspan>, <tspan fill="#ef6c00">last-sample-hold</tspan></text>'
        f'<text x="{width - pad - 60}" y="{height - pad + 16}" font-size="11">{t[-1]:.1f} s</text></svg>'
    )


_STYLE = (
    "<style>body{font-family:sans-serif;margin:2em;max-width:1000px}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px;font-size:13px;text-align:left}.pass{color:#2e7d32}"
    ".fail{color:#c62828}.error{color:#6a1b9a}code{font-size:12px}</style>"
)


def _fmt(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, float) else ("" if value is None else str(value))


def write_html(out: Path, suite: dict[str, Any], results: list[dict[str, Any]]) -> Path:
    """``index.html`` (counts, fidelity chart, one row per job) and ``jobs/<job>.html`` per job."""
    jobs_dir = out / "jobs"
    jobs_dir.mkdir(parents=True, exist_ok=True)
    counts = {s: sum(r["status"] == s for r in results) for s in ("pass", "fail", "error")}
    rows = []
    for r in results:
        page = job_page_name(r)
        m = r["metrics"]
        rows.append(
            f"<tr><td><a href='jobs/{page}'>{html.escape(r['name'])}</a></td>"
            f"<td class='{r['status']}'>{r['status']}</td><td>{_fmt(m.get('fidelity_ratio'))}</td>"
            f"<td>{_fmt(m.get('twin_rms_mrad'))}</td><td>{html.escape(', '.join(m.get('event_kinds', [])))}</td>"
            f"<td>{html.escape(str(m.get('verdict', '')))}</td><td>{r.get('seconds', 0):.1f}</td>"
            f"<td>{html.escape(_failure_text(r) or r.get('error', ''))[:300]}</td></tr>"
        )
        _write_job_page(jobs_dir / page, suite, r)
    body = (
        f"<h1>Suite {html.escape(suite['name'])}</h1><p>{html.escape(suite.get('description', ''))}</p>"
        f"<p>{len(results)} jobs: <span class='pass'>{counts['pass']} pass</span>, "
        f"<span class='fail'>{counts['fail']} fail</span>, <span class='error'>{counts['error']} error</span>. "
        f"Suite file <code>{html.escape(suite.get('path', ''))}</code>; JUnit: <a href='junit.xml'>junit.xml</a>, "
        f"summary: <a href='summary.json'>summary.json</a>.</p>"
        "<h2>Fidelity: twin RMS / last-sample-hold RMS against the plant</h2>"
        f"{_ratio_chart(results)}<h2>Jobs</h2><table><tr><th>job</th><th>status</th><th>fidelity ratio</th>"
        "<th>twin RMS mrad</th><th>health events</th><th>what-if</th><th>s</th><th>why</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    index = out / "index.html"
    index.write_text(f"<!doctype html><html><head><meta charset='utf-8'>{_STYLE}</head><body>{body}</body></html>")
    return index


def _write_job_page(path: Path, suite: dict[str, Any], r: dict[str, Any]) -> None:
    checks = "".join(
        f"<tr><td>{html.escape(c['name'])}</td><td class='{'pass' if c['ok'] else 'fail'}'>"
        f"{'ok' if c['ok'] else 'failed'}</td><td>{html.escape(c['detail'])}</td></tr>"
        for c in r["checks"]
    )
    metrics = {k: v for k, v in r["metrics"].items() if k != "events"}
    events = "".join(
        f"<tr><td>{html.escape(e['kind'])}</td><td>{html.escape(', '.join(e['joints']))}</td>"
        f"<td>{_fmt(e['magnitude'])} {html.escape(e['unit'])}</td><td>{_fmt(e['t_s'])}</td>"
        f"<td>{html.escape(e['message'])}</td></tr>"
        for e in r["metrics"].get("events", [])
    )
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in r.get("warnings", []))
    error = (
        f"<h2>Error</h2><pre>{html.escape(r.get('traceback') or r['error'])}</pre>" if r["status"] == "error" else ""
    )
    body = (
        f"<p><a href='../index.html'>suite {html.escape(suite['name'])}</a></p><h1>{html.escape(r['name'])}</h1>"
        f"<p class='{r['status']}'>{r['status']} ({r.get('seconds', 0):.1f} s, key {r.get('key', '')})</p>{error}"
        f"<h2>Checks</h2><table>{checks}</table><h2>Error against the plant</h2>{_series_chart(r.get('series', {}))}"
        f"<h2>Health events</h2><table><tr><th>kind</th><th>joints</th><th>magnitude</th><th>t s</th><th></th></tr>"
        f"{events}</table><h2>Warnings</h2><ul>{warnings or '<li>none</li>'}</ul>"
        f"<h2>Metrics</h2><pre>{html.escape(json.dumps(metrics, indent=2, default=_json_default))}</pre>"
    )
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'>{_STYLE}</head><body>{body}</body></html>")
