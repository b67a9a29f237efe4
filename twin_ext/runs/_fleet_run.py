# SPDX-License-Identifier: Apache-2.0
"""``python -m twin_ext fleet run|emulate``: a fleet twin with its terminal list (and web page), or emulated robots.

python -m twin_ext fleet run --config config/twin.toml --web-port 8765        # until Ctrl-C
python -m twin_ext fleet emulate --url mqtt://127.0.0.1:1883 --robots 20 --rate 200 --misbehave panda-07=flood
"""

from __future__ import annotations

import argparse
import sys
import time

__all__ = ["add_fleet_arguments", "run_fleet"]


def add_fleet_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the ``fleet`` command."""
    parser.add_argument("action", choices=("run", "emulate"), help="run the fleet twin, or emulated robots")
    parser.add_argument("--config", help="twin config (default config/twin.toml): [broker], [fleet], [history]")
    parser.add_argument("--url", help="broker URL (overrides [broker] url)")
    parser.add_argument("--seconds", type=float, default=0.0, help="stop after this long (default: until Ctrl-C)")
    parser.add_argument("--web-port", type=int, help="serve the read-only fleet page on this port (overrides [fleet])")
    parser.add_argument("--shard", help="this process's shard as INDEX/COUNT, e.g. 0/2 (overrides [fleet])")
    parser.add_argument("--sort", default="health", help="column the terminal list is sorted by (default health)")
    parser.add_argument("--robots", type=int, default=10, help="emulate: how many robots (default 10)")
    parser.add_argument("--prefix-id", default="panda", help="emulate: robot ids are <prefix>-NN (default panda)")
    parser.add_argument("--rate", type=float, default=200.0, help="emulate: joint states per second per robot")
    parser.add_argument("--misbehave", action="append", default=[], metavar="ID=KIND",
                        help="emulate: a robot that sends garbage, floods or jumps its clock (garbage|flood|clock_jump)")  # fmt: skip


def run_fleet(args: argparse.Namespace) -> int:
    """Run the ``fleet`` command; returns the exit code (2 for bad input, with the fix on stderr)."""
    import dataclasses

    from ..config import ConfigError
    from ..fleet import FleetSession, FleetSettings, FleetWebServer, render_fleet_table, sort_rows
    from ..live import SessionError, load_config

    try:
        config = load_config(args.config)
        if args.url:
            config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, url=args.url))
        fleet = FleetSettings.from_mapping(config.other.get("fleet"))
        if args.shard:
            index, _, count = args.shard.partition("/")
            fleet = dataclasses.replace(fleet, shard_index=int(index), shard_count=int(count))
            fleet.__post_init__()
        if args.web_port is not None:
            fleet = dataclasses.replace(fleet, web_port=args.web_port)
    except (ConfigError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.action == "emulate":
        return _emulate(args, config)
    try:
        session = FleetSession(config, fleet=fleet)
    except SessionError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server = None
    session.run_in_background()
    if fleet.web_port:
        server = FleetWebServer(session, host=fleet.web_host, port=fleet.web_port)
        server.start()
        print(f"fleet page: {server.url}", flush=True)
    tty = sys.stdout.isatty()
    end = time.monotonic() + args.seconds if args.seconds > 0 else float("inf")
    try:
        while time.monotonic() < end:
            time.sleep(min(0.5 if tty else 2.0, max(0.0, end - time.monotonic())))
            table = render_fleet_table(
                sort_rows(session.rows(), args.sort), title=f"fleet shard {fleet.shard_index}/{fleet.shard_count}"
            )
            table += "".join(f"\nproblem: {p}" for p in session.problems())
            sys.stdout.write(("\x1b[H\x1b[J" if tty else "") + table + "\n")
            sys.stdout.flush()
    except KeyboardInterrupt:
        pass
    finally:
        if server is not None:
            server.stop()
        session.stop()
    if session.history is not None:
        h = session.history.stats()
        print(f"history: written {h.written}, buffered {h.buffered}, dropped {h.dropped}, failures {h.write_failures}")
    return 0


def _emulate(args: argparse.Namespace, config) -> int:
    from ..emulator import LightFleet
    from ..robot import load_robot

    misbehave = {}
    for item in args.misbehave:
        rid, sep, kind = item.partition("=")
        if not sep:
            print(f"error: --misbehave {item!r}: write ID=KIND, e.g. panda-03=garbage", file=sys.stderr)
            return 2
        misbehave[rid] = kind
    ids = [f"{args.prefix_id}-{i:02d}" for i in range(args.robots)]
    try:
        fleet = LightFleet(ids, load_robot(config.robot.resolved_usd()), config.broker.url, rate_hz=args.rate,
                           misbehave=misbehave, prefix=config.telemetry.topic_prefix)  # fmt: skip
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"emulating {len(ids)} robots at {args.rate:g} Hz on {config.broker.redacted_url()} ({ids[0]} .. {ids[-1]})")
    try:
        stats = fleet.run(args.seconds if args.seconds > 0 else 1e9)
    except KeyboardInterrupt:
        return 0
    print(f"published {stats.published} messages in {stats.seconds:.1f} s ({stats.rate_hz:.0f} msg/s)")
    return 0
