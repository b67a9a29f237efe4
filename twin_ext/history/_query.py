# SPDX-License-Identifier: Apache-2.0
"""Reading history for people: ``--since`` parsing, a text table, a plot, and the ``history`` command.

python -m twin_ext history query --robot panda-03 --since 1h --what health
python -m twin_ext history query --robot panda-03 --since 30m --what state --plot out/q.png
python -m twin_ext history prune                    # apply [history] retention_days now
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ..config import ConfigError, load_toml
from ._records import HISTORY_KINDS
from ._settings import HistoryError, HistorySettings
from ._store import open_store

__all__ = ["format_table", "parse_since", "plot_rows", "run_history_command"]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}


def parse_since(text: str, *, now_ns: int | None = None) -> int:
    """``"90s"``, ``"30m"``, ``"1h"``, ``"2d"``, ``"1w"`` ago, or an ISO-8601 time -> Unix-epoch int ns.

    Raises:
        ValueError: naming the accepted forms.
    """
    now = time.time_ns() if now_ns is None else now_ns
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        return now - int(float(m.group(1)) * _UNITS[m.group(2)] * 1e9)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"--since {text!r}: give a duration ago (90s, 30m, 1h, 2d, 1w) or an ISO time (2026-12-02T18:00:00)"
        ) from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return int(dt.timestamp() * 1e9)


def _when(t_ns: int) -> str:
    return datetime.fromtimestamp(t_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def _summary(row: dict[str, Any]) -> str:
    kind, doc = row["kind"], row["doc"]
    if kind == "state":
        return "q=[" + ", ".join(f"{x:+.3f}" for x in row["q"]) + "] rad"
    if kind == "health":
        joints = ",".join(doc.get("joints") or [])
        mag = doc.get("magnitude")
        size = f"{mag:.3g} {doc.get('unit', '')}" if isinstance(mag, int | float) else ""
        return " ".join(x for x in (joints, size, doc.get("message", "")) if x)
    if kind == "params":
        joints = [j for j in doc.get("joints", []) if isinstance(j, dict)]  # HealthSummary.to_dict rows
        known = [j for j in joints if isinstance(j.get("friction_ratio"), int | float)]
        known.sort(key=lambda j: -j["friction_ratio"])
        worst = [f"{j.get('name') or j.get('joint', '?')} friction x{j['friction_ratio']:.2f}" for j in known[:4]]
        state = f"state {doc['state']}; " if "state" in doc else ""
        return state + ("; ".join(worst) or "friction not identifiable yet")
    return ", ".join(f"{k}={v}" for k, v in doc.items() if k not in ("version",))[:120]


def format_table(rows: Sequence[dict[str, Any]], *, width: int = 140) -> str:
    """A plain-text table of query rows: time (UTC), robot, label, a one-line summary."""
    if not rows:
        return "(no rows)"
    lines = [f"{'time (UTC)':<23}  {'robot':<16}  {'label':<18}  what"]
    for row in rows:
        try:
            what = _summary(row)
        except (KeyError, TypeError, ValueError, IndexError):  # a document of another version: show it raw
            what = str(row.get("doc"))[:120]
        line = f"{_when(row['t_ns']):<23}  {row['robot_id']:<16.16}  {row['label']:<18.18}  {what}"
        lines.append(line[:width])
    lines.append(f"({len(rows)} rows)")
    return "\n".join(lines)


def plot_rows(rows: Sequence[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Plot query rows to a PNG: joint positions over time (``state``), or events as marks (other kinds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(10, 4))
    if rows and rows[0]["kind"] == "state":
        t0 = rows[0]["t_ns"]
        t = [(r["t_ns"] - t0) * 1e-9 for r in rows]
        ndof = max(len(r["q"]) for r in rows)
        for j in range(ndof):
            ax.plot(t, [r["q"][j] if j < len(r["q"]) else float("nan") for r in rows], label=f"q{j}")
        ax.set_xlabel(f"s since {_when(t0)} UTC")
        ax.set_ylabel("joint position, rad")
        ax.legend(ncol=min(ndof, 7), fontsize="small")
    else:
        labels = sorted({r["label"] for r in rows})
        for r in rows:
            ax.plot(datetime.fromtimestamp(r["t_ns"] / 1e9, UTC), labels.index(r["label"]), "o")
        ax.set_yticks(range(len(labels)), labels)
        ax.set_xlabel("time (UTC)")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _settings(args: argparse.Namespace) -> HistorySettings:
    raw: dict[str, Any] = {}
    if args.config:
        raw = dict(load_toml(args.config).get("history", {}))
    if args.store:
        raw["backend"] = args.store
    if args.path:
        raw["path"] = args.path
    if args.dsn:
        raw["postgres_dsn"] = args.dsn
        raw.setdefault("backend", "postgres")
    return HistorySettings.from_mapping(raw)


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``history`` command's options (``query`` and ``prune``)."""
    parser.add_argument("action", choices=("query", "prune"), help="query rows, or apply retention now")
    parser.add_argument("--config", help="twin config whose [history] section names the store")
    parser.add_argument("--store", choices=("parquet", "postgres"), help="override [history] backend")
    parser.add_argument("--path", help="Parquet store folder (overrides [history] path)")
    parser.add_argument("--dsn", help="PostgreSQL connection string (overrides [history] postgres_dsn)")
    parser.add_argument("--robot", help="robot id (default: every robot)")
    parser.add_argument("--since", default="1h", help="how far back: 90s, 30m, 1h, 2d, 1w or an ISO time (default 1h)")
    parser.add_argument("--until", help="end of the window (same forms; default now)")
    parser.add_argument("--what", default="health", choices=HISTORY_KINDS, help="which history (default health)")
    parser.add_argument("--limit", type=int, default=1000, help="most rows shown, the newest (default 1000)")
    parser.add_argument("--plot", help="also plot the rows to this PNG file")
    parser.add_argument("--json", action="store_true", help="print the rows as JSON lines instead of a table")


def run_history_command(args: argparse.Namespace) -> int:
    """``python -m twin_ext history ...``; returns the exit code (2 for bad input, with the fix on stderr)."""
    import json

    try:
        settings = _settings(args)
        store = open_store(settings)
        if args.action == "prune":
            if settings.retention_days <= 0:
                print("[history] retention_days = 0: history is kept forever; nothing deleted")
                return 0
            n = store.delete_before(time.time_ns() - int(settings.retention_days * 86_400e9))
            print(
                f"deleted {n} {'days' if settings.backend == 'parquet' else 'rows'} older than {settings.retention_days:g} days"
            )
            return 0
        since = parse_since(args.since)
        until = parse_since(args.until) if args.until else None
        rows = store.query(args.what, robot_id=args.robot, since_ns=since, until_ns=until, limit=args.limit)
        store.close()
    except (ValueError, ConfigError, HistoryError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for row in rows:
            print(json.dumps(row, default=str))
    else:
        print(format_table(rows))
    if args.plot:
        out = plot_rows(rows, args.plot, title=f"{args.what} of {args.robot or 'every robot'} since {args.since}")
        print(f"plot: {out}")
    return 0
