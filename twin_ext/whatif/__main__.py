# SPDX-License-Identifier: Apache-2.0
"""Command line: ``python -m twin_ext.whatif list | run SCENARIO | warm``.

    python -m twin_ext.whatif list                          shipped scenarios (config/scenarios/*.toml)
    python -m twin_ext.whatif run pick_place_payload        run one; prints the verdicts (--json: the report,
                                                            --out FILE.json, --svg FILE.svg: a chart)
    python -m twin_ext.whatif run my.toml --samples 64 --robot usd/ur5e/ur5e.usda
    python -m twin_ext.whatif warm                          compile the kernels into the cache, print the times

Exit status of ``run``: 0 pass, 1 fail, 3 unknown, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .._paths import scenarios_dir


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m twin_ext.whatif", description="What-if rollouts, scenarios and verdicts."
    )
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="list the shipped scenarios")
    run = sub.add_parser("run", help="run a scenario (a name from config/scenarios or a TOML path)")
    run.add_argument("scenario")
    run.add_argument("--robot", default="", help="robot USD (default: the shipped Panda)")
    run.add_argument("--samples", type=int, default=None, help="Monte-Carlo samples per variant (overrides the file)")
    run.add_argument("--seed", type=int, default=None, help="random seed (overrides the file)")
    run.add_argument("--json", action="store_true", help="print the JSON report instead of the summary")
    run.add_argument("--out", default="", help="also write the JSON report to this file")
    run.add_argument("--svg", default="", help="also write a chart of the verdicts (SVG) to this file")
    run.add_argument("--config", default="", help="twin config TOML whose [whatif] section to use")
    warm = sub.add_parser("warm", help="load/compile the kernels for a robot into the cache and report the time")
    warm.add_argument("--robot", default="", help="robot USD (default: the shipped Panda)")
    warm.add_argument("--config", default="", help="twin config TOML whose [whatif] section to use")
    return p


def _settings(config: str):
    from ._settings import WhatIfSettings

    if not config:
        return WhatIfSettings()
    from ..config import load_toml

    return WhatIfSettings.from_mapping(load_toml(config, what="--config file").get("whatif"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "list":
        for path in sorted(scenarios_dir().glob("*.toml")):
            first = next((line[2:].strip() for line in path.read_text().splitlines() if line.startswith("# ")), "")
            print(f"{path.stem:<28}{first}")
        return 0

    from dataclasses import replace

    from ..robot import RobotModelError, default_robot_path, load_robot
    from . import shutdown_workers
    from ._engine import WhatIfEngine
    from ._errors import WhatIfError
    from ._scenario import load_scenario

    try:
        settings = _settings(args.config)
        robot = load_robot(args.robot or default_robot_path())
        if args.command == "warm":
            engine = WhatIfEngine(robot, settings=settings)
            info = engine.wait_ready()
            print(
                f"{robot.name}: kernels ready in {info['seconds']:.2f} s (load/compile {info['kernel_seconds']:.2f} s, "
                f"{info['workers']} workers); cache: {__import__('twin_ext.whatif._kernels', fromlist=['x']).cache_dir()}"
            )
            return 0
        scenario = load_scenario(args.scenario)
        if args.samples is not None or args.seed is not None:
            scenario = replace(
                scenario,
                samples=args.samples or scenario.samples,
                seed=scenario.seed if args.seed is None else args.seed,
            )
        engine = WhatIfEngine(robot, settings=settings)
        report = engine.run(scenario)
    except (WhatIfError, RobotModelError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        shutdown_workers()
    if args.out:
        Path(args.out).write_text(report.to_json(indent=2), encoding="utf-8")
    if args.svg:
        Path(args.svg).write_text(report.to_svg(), encoding="utf-8")
    print(json.dumps(report.to_dict(), indent=2) if args.json else report.summary())
    return {"pass": 0, "fail": 1, "unknown": 3}[report.status]


if __name__ == "__main__":
    raise SystemExit(main())
