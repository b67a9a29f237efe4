# SPDX-License-Identifier: Apache-2.0
"""Command line: ``python -m twin_ext <command> [options]`` (also installed as ``twin-ext``).

Commands:
    info    load a robot USD and print its joints, limits, drives (and where their gains came from), masses
    run     the live twin, headless, against an MQTT broker (config/twin.toml), until Ctrl-C
    demo    the main job on the embedded default (see ``demo --help``)
    replay  run the twin over an MCAP recording as a batch job and write its report
    batch   run a suite (recordings, robots, profiles, scenarios, checks): JUnit XML, summary, HTML
    fleet   many robots in one twin process (list, web page, shards), or emulated robots (``fleet emulate``)
    history query the fleet's history (state, health, identified parameters, commands), or prune it

Imports of pxr, warp and mujoco happen inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _cmd_info(args: argparse.Namespace) -> int:
    import dataclasses

    from . import TwinExtError

    try:
        if args.config:
            from .live import load_config

            settings = load_config(args.config).robot
            base = None
        else:
            from .robot import RobotSettings

            settings, base = RobotSettings(), None
        if args.robot:
            from ._paths import resolve_shipped

            # a command-line path means the file in the working directory when there is one
            settings = dataclasses.replace(settings, usd=str(resolve_shipped(args.robot, prefer_cwd=True).absolute()))
        if args.prim_path:
            settings = dataclasses.replace(settings, prim_path=args.prim_path)
        if args.balance_inertia:
            settings = dataclasses.replace(settings, balance_inertia=True)
        robot = settings.load_model(base)
    except TwinExtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(robot.describe())
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from .runs import run_live

    return run_live(args)


def _cmd_demo(args: argparse.Namespace) -> int:
    from .runs import run_demo

    return run_demo(args)


def _cmd_replay(args: argparse.Namespace) -> int:
    from .runs import run_replay

    return run_replay(args)


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    return run_batch(args)


def _cmd_fleet(args: argparse.Namespace) -> int:
    from .runs import run_fleet

    return run_fleet(args)


def _cmd_history(args: argparse.Namespace) -> int:
    from .history import run_history_command

    return run_history_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m twin_ext", description="twin_ext: a live digital twin of a robot arm"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="describe a robot USD (joints, limits, drives, masses)")
    info.add_argument("--robot", help="robot USD file (default: the shipped Franka Panda)")
    info.add_argument("--prim-path", help="articulation root to read when the file holds several")
    info.add_argument(
        "--config", help="twin TOML whose [robot] section applies (usd, [robot.drives], drive_rule, balance_inertia)"
    )
    info.add_argument(
        "--balance-inertia", action="store_true", help="repair triangle-inequality inertias (MuJoCo balanceinertia)"
    )
    info.set_defaults(func=_cmd_info)

    from .runs import add_demo_arguments, add_replay_arguments, add_run_arguments

    run = sub.add_parser("run", help="run the live twin against an MQTT broker (config/twin.toml) until Ctrl-C")
    add_run_arguments(run)
    run.set_defaults(func=_cmd_run)

    demo = sub.add_parser("demo", help="run the twin end to end on the embedded default; outputs in out/demo/")
    add_demo_arguments(demo)
    demo.set_defaults(func=_cmd_demo)

    replay = sub.add_parser("replay", help="run the twin over an MCAP recording (batch job) and write its report")
    add_replay_arguments(replay)
    replay.set_defaults(func=_cmd_replay)

    from .batch import add_batch_arguments

    batch = sub.add_parser("batch", help="run a suite of jobs with checks; JUnit XML, summary JSON, HTML report")
    add_batch_arguments(batch)
    batch.set_defaults(func=_cmd_batch)

    from .runs import add_fleet_arguments

    fleet = sub.add_parser(
        "fleet", help="a fleet twin (many robots, one process) with its list and web page, or emulated robots"
    )
    add_fleet_arguments(fleet)
    fleet.set_defaults(func=_cmd_fleet)

    from .history import add_history_arguments

    history = sub.add_parser("history", help="query the twin's history (state, health, params, commands) or prune it")
    add_history_arguments(history)
    history.set_defaults(func=_cmd_history)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
