# SPDX-License-Identifier: Apache-2.0
"""Command line: ``python -m twin_ext <command> [options]`` (also installed as ``twin-ext``).

Commands:
    info    load a robot USD and print its joints, limits, drives and masses
    run     the live twin, headless, against an MQTT broker (config/twin.toml), until Ctrl-C
    demo    the main job on the embedded default (see ``demo --help``)
    replay  run the twin over an MCAP recording as a batch job and write its report

Imports of pxr, warp and mujoco happen inside the commands, so ``--help`` is instant.
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _cmd_info(args: argparse.Namespace) -> int:
    from .robot import RobotModelError, default_robot_path, load_robot

    try:
        robot = load_robot(args.robot or default_robot_path(), prim_path=args.prim_path)
    except RobotModelError as exc:
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m twin_ext", description="twin_ext: a live digital twin of a robot arm"
    )
    sub = parser.add_subparsers(dest="command", required=True)

    info = sub.add_parser("info", help="describe a robot USD (joints, limits, drives, masses)")
    info.add_argument("--robot", help="robot USD file (default: the shipped Franka Panda)")
    info.add_argument("--prim-path", help="articulation root to read when the file holds several")
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
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)
