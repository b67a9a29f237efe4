# SPDX-License-Identifier: Apache-2.0
"""Headless Isaac Sim batch runner: a suite (docs/batch.md) with the Isaac articulation driver stepping PhysX
while the twin replays, writing the same outputs as ``python -m twin_ext batch``.

    ./python.sh -m twin_ext.kit.batch_runner config/suites/smoke.toml --out out/batch

Thin on purpose (docs/kit.md, "Headless batch runs"): boot ``SimulationApp({"headless": True})`` as Isaac Sim's
standalone examples do, open a new stage with a physics scene, play the timeline, then run the suite in this
process with two hooks per twin run — the stage driver as an extra sink (`make_driver`: the articulation while
the timeline plays) and ``simulation_app.update()`` after every display tick (one app frame: a PhysX step).
Everything else is the plain-Python suite runner. `run_suite_in_kit` is the part the bare Kit kernel tests run
(there the driver is the private pxr mirror; SimulationApp, PhysX and the articulation need Isaac Sim).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..batch import run_suite
from .settings import DRIVE_MODES, KitSettings
from .stage_drivers import make_driver

__all__ = ["kit_hooks", "main", "run_suite_in_kit"]


def kit_hooks(update: Callable[[], Any] | None, *, drive: str = "auto", robot_prim_path: str = "") -> dict[str, Any]:
    """The suite hooks for a Kit app: the stage driver for ``drive`` (`KitSettings.drive`) as a sink of every
    twin run, and ``update`` (one app frame) after each display tick."""
    settings = KitSettings(drive=drive, robot_prim_path=robot_prim_path, disable_gravity=True)

    def sinks(robot) -> list:
        driver = make_driver(robot, settings)
        return [driver] if driver is not None else []

    return {"sinks": sinks, "on_tick": update}


def run_suite_in_kit(
    suite: str | Path,
    *,
    update: Callable[[], Any] | None,
    out: Path = Path("out/batch"),
    drive: str = "auto",
    fresh: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run ``suite`` in this Kit process (in-process executor: Kit objects do not travel to workers); returns
    the summary of `twin_ext.batch.run_suite`."""
    return run_suite(suite, out=out, fresh=fresh, progress=progress, hooks=kit_hooks(update, drive=drive))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python.sh -m twin_ext.kit.batch_runner", description=__doc__.splitlines()[0])
    p.add_argument("suite", help="a suite TOML file (docs/batch.md)")
    p.add_argument("--out", default="out/batch", help="output root; the suite writes <out>/<suite>/")
    p.add_argument("--drive", default="auto", choices=DRIVE_MODES, help="how the twin reaches the stage (kit.drive)")
    p.add_argument("--fresh", action="store_true", help="ignore cached results")
    return p


def main(argv: list[str] | None = None) -> int:
    """Boot Isaac Sim headless, run the suite, close the app; leaves the process with the suite's exit code."""
    args, _kit_args = _parser().parse_known_args(sys.argv[1:] if argv is None else argv)
    from isaacsim import SimulationApp  # Isaac Sim's Python only; must come before any omni import

    app = SimulationApp({"headless": True})
    code = 2
    try:
        import omni.timeline
        import omni.usd
        from pxr import UsdPhysics

        from .. import TwinExtError

        context = omni.usd.get_context()
        context.new_stage()
        app.update()
        UsdPhysics.Scene.Define(context.get_stage(), "/physicsScene")
        timeline = omni.timeline.get_timeline_interface()
        timeline.play()
        app.update()
        try:
            summary = run_suite_in_kit(
                args.suite, update=app.update, out=Path(args.out), drive=args.drive, fresh=args.fresh
            )
            code = 0 if summary["passed"] else 1
        except TwinExtError as exc:
            print(f"error: {exc}", file=sys.stderr)
        timeline.stop()
        app.update()
    finally:
        app.close()
        sys.stdout.flush()
        os._exit(code)  # Kit's process otherwise exits 0 whatever happened
    return code


if __name__ == "__main__":
    main()
