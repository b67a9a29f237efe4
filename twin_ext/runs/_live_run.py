# SPDX-License-Identifier: Apache-2.0
"""``twin-ext run``: the live twin, headless, against an MQTT broker — the product without Isaac Sim.

Builds a `TwinSession` from a config file (default: the shipped ``config/twin.toml``), starts it and ticks
it at ``twin.display_rate_hz`` until the duration ends or Ctrl-C / SIGTERM, with the terminal dashboard
(in place on a TTY, a status line every few seconds in a log). ``--status-file`` writes the status as JSON
once a second (atomically: write and rename) for monitoring and scripts; it also carries the what-if
service's counters and the process's memory.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

__all__ = ["add_run_arguments", "run_live", "process_memory_mb"]


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="twin config TOML (default: the shipped config/twin.toml)")
    parser.add_argument("--broker", help="broker URL, overrides [broker] url (e.g. mqtt://10.0.0.5:1883)")
    parser.add_argument("--robot-id", help="robot to mirror, overrides [robot] robot_id")
    parser.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    parser.add_argument("--status-file", help="write the status as JSON to this file once a second")
    parser.add_argument("--quiet", action="store_true", help="no dashboard or status lines on stdout")


def process_memory_mb() -> dict[str, float | None]:
    """This process's resident memory now and at its peak, MiB (Linux /proc; None elsewhere)."""
    out: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    out["rss_mb" if key == "VmRSS" else "peak_rss_mb"] = int(value.split()[0]) / 1024.0
    except OSError:
        pass
    return out


def _status_document(session: Any) -> dict[str, Any]:
    doc = session.status().to_dict()
    remote = session.remote
    if remote is not None:
        doc["whatif"] = remote.counters()  # served, refused, refused_by_reason, waiting, running
    health = getattr(session.link, "health", None)
    if health is not None:  # the MQTT link: state, since when (CLOCK_MONOTONIC ns), connections
        doc["link"] = {
            "state": health.state.value,
            "since_ns": health.since_ns,
            "connects": health.connects,
            "disconnects": health.disconnects,
            "session_present": health.session_present,
            "message": health.message,
        }
    robot_health = getattr(session, "health", None)
    if robot_health is not None and robot_health.summary is not None:
        doc["robot_health"] = robot_health.summary.to_dict()  # the health monitor's summary (docs/health.md)
    doc["process"] = {"pid": os.getpid(), **process_memory_mb()}
    doc["written_at_unix_s"] = time.time()
    return doc


def _write_atomically(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    os.replace(tmp, path)


def _write_status_every_second(path: Path, session: Any, stop: threading.Event) -> None:
    """Thread: the status file, once a second, from its own thread so a stalled display loop still shows
    (the twin's watchdog turns health ``stale`` with the reason)."""
    while not stop.wait(1.0):
        try:
            _write_atomically(path, _status_document(session))
        except Exception as exc:  # noqa: BLE001 - monitoring must not kill the twin; say it once
            print(f"twin_ext: writing the status file {path} failed: {exc!r}", file=sys.stderr, flush=True)
            return


def run_live(args: argparse.Namespace) -> int:
    """Run the live twin until ``--duration`` or a signal; 0 on a clean stop, 2 when it cannot be assembled."""
    from .. import TwinExtError
    from ..live import TwinSession, load_config
    from ._dashboard import TerminalDashboard

    try:
        config = load_config(args.config)
        if args.broker:
            config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, url=args.broker))
        if args.robot_id:
            config = dataclasses.replace(
                config,
                robot=dataclasses.replace(config.robot, robot_id=args.robot_id),
                telemetry=dataclasses.replace(config.telemetry, robot_id=args.robot_id),
            )
        session = TwinSession(config)
    except TwinExtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.duration is not None and not args.duration > 0:
        print(f"error: --duration must be > 0 s, got {args.duration:g}", file=sys.stderr)
        return 2
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    status_path = Path(args.status_file) if args.status_file else None
    dashboard = None if args.quiet else TerminalDashboard(session.model, title=f"twin_ext — {session.model.name}")
    period = 1.0 / config.twin.display_rate_hz
    end = None if args.duration is None else time.monotonic() + args.duration
    next_tick = time.monotonic()
    writer_stop = threading.Event()
    writer = None
    try:
        session.start()
        print(
            f"twin_ext: mirroring {config.telemetry.robot_id or 'the first robot heard from'} from "
            f"{config.broker.redacted_url()} (Ctrl-C to stop)",
            flush=True,
        )
        while not stop.is_set() and (end is None or time.monotonic() < end):
            session.tick()
            if status_path is not None and writer is None:  # after the first tick: a snapshot exists
                _write_atomically(status_path, _status_document(session))
                writer = threading.Thread(
                    target=_write_status_every_second, args=(status_path, session, writer_stop), daemon=True
                )
                writer.start()
            if dashboard is not None and dashboard.due():  # a status costs ~0.3 ms: only when it is shown
                dashboard.update(session.status())
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                stop.wait(delay)
            else:
                next_tick = time.monotonic()  # fell behind: no burst of catch-up ticks
        writer_stop.set()
        if writer is not None:
            writer.join(5.0)
        if status_path is not None:
            _write_atomically(status_path, _status_document(session))
    finally:
        writer_stop.set()
        session.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
