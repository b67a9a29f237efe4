"""``make demo`` / ``python -m twin_ext demo``: the main job on the embedded default.

Current slice: load the shipped robot from USD, print its description (joints, limits, drives, masses)
and write the robot posed at a configuration to ``out/demo/`` as a USD stage that opens in usdview or
Isaac Sim.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_demo_arguments", "run_demo"]


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--robot", help="robot USD file (default: the shipped Franka Panda)")
    parser.add_argument("--prim-path", help="articulation root to read when the file holds several")
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")


def run_demo(args: argparse.Namespace) -> int:
    import numpy as np

    from .robot import RobotModelError, default_robot_path, load_robot
    from .sinks import UsdKinematicMirror

    try:
        robot = load_robot(args.robot or default_robot_path(), prim_path=args.prim_path)
    except RobotModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(robot.describe())
    # The drive targets are the asset's default (home) pose; clip into limits for robots without drives.
    q = robot.clip_to_limits(np.array(robot.drive_target))
    mirror = UsdKinematicMirror.new_stage(robot, robot_prim_path=f"/World/{robot.name}")
    mirror.write(q)
    posed = mirror.save(out / f"{robot.name}_posed.usda")
    (out / f"{robot.name}_description.txt").write_text(robot.describe() + "\n")
    tool = robot.link_poses(q)[-1]
    print(f"\nposed at q = {np.round(q, 4).tolist()} (rad|m)")
    print(f"last link {robot.link_names[-1]} at {np.round(tool[:3, 3], 4).tolist()} m")
    print(f"wrote {posed} and {out / (robot.name + '_description.txt')}")
    return 0
