# SPDX-License-Identifier: Apache-2.0
"""What-if benchmark: our Warp engine against a like-for-like ``mujoco.rollout`` on three arms, in one run.

    python -m twin_ext.bench whatif [--json] [--worlds 1024] [--steps 1000] [--repeats 3] [--robots panda,ur5e,kinova_gen3]
                                    [--no-cold] [--quick] [--clearance-only]

Throughput, per robot: the Franka Panda (9 dof, the shipped pick-and-place program), the UR5e (6 dof) and the
Kinova Gen3 (7 dof; both a smooth sine move around home). Ours reads the shipped USD (``usd/<robot>/``), MuJoCo
the MJCF it was built from (``data/robots/``); both simulate ``worlds x steps`` at dt = 2 ms, float64, every
world with its own command, through the position servos, and both return the full trajectory of every world
(MuJoCo: its state per step; ours: q, qd and tau per step). MuJoCo runs as documented for speed: a persistent
``mujoco.rollout.Rollout(nthread=<cores>)`` with one ``MjData`` per thread and preallocated outputs.

The anchor is MuJoCo **like-for-like**: set up the way our engine works -- ``implicitfast`` integration, and
contacts, joint-limit and equality constraints disabled (``opt.disableflags``; see `_mujoco_model`), same dt,
all cores. Beside it, MuJoCo on the model **as shipped** (its own integrator, e.g. the Panda's ``implicit``,
and every constraint on): the figure earlier versions of this benchmark compared against, which flatters
ours. The three are timed interleaved (ours, like-for-like, shipped, ours, ...) so that load from other
processes hits all of them; the best of ``--repeats`` of each is reported. Ours runs the default engine
(worker pool over all cores, kernels specialised to the robot) with MuJoCo's servo model (no gravity
compensation, no velocity feed-forward), plus its in-kernel verdict statistics. Reported: world-steps/s, the
ratio to the like-for-like anchor (goal >= 8) and to the shipped model, and a profile line: nanoseconds per
world-step per core and what that is against the ~5 kflop articulated-body floor per world-step.

Interactive latency (Panda). 256 variants (speed x payload x gain x latency grid) x 1 sample x 1000 steps of
the pick-and-place command with verdicts, through `WhatIfEngine.run`: p50/p95 wall time over 20 warm
requests (goal p95 < 250 ms).

Start-up (Panda). Engine creation to "kernels ready" in a fresh process: cold (empty kernel cache: compiles)
and warm (cache filled).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .._paths import (
    default_program_file,
    default_robot_mjcf,
    default_robot_usd,
    package_import_root,
    robot_sources_dir,
    shipped_root,
)

PANDA_USD = default_robot_usd()
PANDA_MJCF = default_robot_mjcf()
PICK_PLACE = default_program_file()
GOAL_RATIO = 8.0
GOAL_P95_MS = 250.0
FLOOR_FLOPS = 5000.0
"""Nominal flops of one world-step at the articulated-body floor (Featherstone's ABA for 7-9 dof is ~3-4
kflop, plus the servo, integration and verdicts): the yardstick of the profile line."""
ANCHOR_NOTE = (
    "anchor: mujoco.rollout like-for-like (implicitfast; contacts, limit and equality constraints off; same dt; "
    "all cores)"
)

_START_SNIPPET = """
import json, sys, time
t0 = time.perf_counter()
from twin_ext.robot import load_robot
from twin_ext.whatif import WhatIfEngine, shutdown_workers
engine = WhatIfEngine(load_robot(sys.argv[1]))
info = engine.wait_ready()
info["process_seconds"] = time.perf_counter() - t0
shutdown_workers()
print(json.dumps(info))
"""


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m twin_ext.bench whatif", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--worlds", type=int, default=1024, help="worlds (batch size), default 1024")
    p.add_argument("--steps", type=int, default=1000, help="steps per world, default 1000")
    p.add_argument("--repeats", type=int, default=3, help="timed repeats of each throughput run (best is kept)")
    p.add_argument("--requests", type=int, default=20, help="warm interactive requests timed (default 20)")
    p.add_argument("--no-cold", action="store_true", help="skip the cold-start measurement (it compiles, ~15 s)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test, not a measurement)")
    p.add_argument(
        "--clearance-only",
        action="store_true",
        help="only the interactive request with and without clearance (its own anchor; --requests applies)",
    )
    names = ",".join(r.name for r in bench_robots())
    p.add_argument("--robots", default=names, help=f"comma-separated robots to time (default {names})")
    args = p.parse_args(argv)
    known = {r.name: r for r in bench_robots()}
    picked = [n.strip() for n in args.robots.split(",") if n.strip()]
    unknown = [n for n in picked if n not in known]
    if unknown or not picked:
        p.error(f"--robots: unknown {unknown or 'empty list'}; choose from {names}")
    args.robots = [known[n] for n in picked]
    if args.quick:
        args.worlds, args.steps, args.repeats, args.requests, args.no_cold = 64, 100, 1, 3, True
    return args


@dataclass(frozen=True)
class BenchRobot:
    """One robot of the throughput benchmark: our USD, MuJoCo's MJCF of the same robot, and its command."""

    name: str
    usd: Path
    mjcf: Path
    command: str  # "pick_place": the shipped program; "sine": a smooth move around the USD's home pose


def bench_robots() -> tuple[BenchRobot, ...]:
    """The Panda (9 dof), the UR5e (6) and the Kinova Gen3 (7): the shipped USD beside its MJCF source."""
    sources = robot_sources_dir()
    usd = shipped_root() / "usd"
    return (
        BenchRobot("panda", PANDA_USD, PANDA_MJCF, "pick_place"),
        BenchRobot("ur5e", usd / "ur5e" / "ur5e.usda", sources / "universal_robots_ur5e" / "ur5e_nomesh.xml", "sine"),
        BenchRobot(
            "kinova_gen3", usd / "kinova_gen3" / "gen3.usda", sources / "kinova_gen3" / "gen3_nomesh.xml", "sine"
        ),
    )


def _targets(robot, command: str, worlds: int, steps: int, dt: float):
    """``[worlds, steps, ndof]`` servo targets, rad|m.

    ``pick_place``: each world runs the pick-and-place program from its own offset. ``sine``: each joint moves
    ``0.3 sin(2 pi 0.5 t + phase)`` rad around the USD's home pose (kept 0.05 inside the limits), each world
    with its own phases -- a smooth, servo-trackable move for robots the program was not written for.
    """
    import numpy as np

    if command == "pick_place":
        from ..robot import JointTrajectory

        traj = JointTrajectory.from_toml(PICK_PLACE).select(robot.dof_names)
        offsets = np.linspace(0.0, traj.duration, worlds, endpoint=False)
        t = offsets[:, None] + np.arange(steps)[None, :] * dt
        q, _, _ = traj.sample(np.mod(t, traj.duration))
        return q
    rng = np.random.default_rng(17)
    phase = rng.uniform(0.0, 2.0 * np.pi, size=(worlds, 1, robot.ndof))
    t = np.arange(steps)[None, :, None] * dt
    q = robot.drive_target[None, None, :] + 0.3 * np.sin(2.0 * np.pi * 0.5 * t + phase)
    lo = np.where(np.isfinite(robot.lower), robot.lower + 0.05, -np.inf)
    hi = np.where(np.isfinite(robot.upper), robot.upper - 0.05, np.inf)
    return np.clip(q, lo, hi)


def _mujoco_model(mjcf: Path, dt: float, like_for_like: bool):
    """The MJCF as MuJoCo compiles it, at ``dt``; ``like_for_like``: set up the way our engine works.

    Like-for-like means: the ``implicitfast`` integrator (ours also treats the velocity derivative of the joint
    forces implicitly and leaves the Coriolis terms explicit), and no constraints our engine does not model --
    contacts (``mjDSBL_CONTACT``), joint-limit constraints (``mjDSBL_LIMIT``; ours has soft limit springs that
    act only beyond a limit, which these commands never reach) and equality constraints (``mjDSBL_EQUALITY``:
    the Panda's finger coupling, which our USD models as two servos). Friction loss, damping, armature, gravity
    and the actuators stay on. Otherwise the model is as shipped (its own integrator, every constraint on).
    """
    import mujoco

    model = mujoco.MjModel.from_xml_path(str(mjcf))
    model.opt.timestep = dt
    if like_for_like:
        model.opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
        model.opt.disableflags |= int(
            mujoco.mjtDisableBit.mjDSBL_CONTACT
            | mujoco.mjtDisableBit.mjDSBL_LIMIT
            | mujoco.mjtDisableBit.mjDSBL_EQUALITY
        )
    return model


def _mujoco_runner(mjcf: Path, dof_names, targets, dt: float, nthread: int, like_for_like: bool):
    """A closure running one timed ``mujoco.rollout`` of the whole batch; returns (run, info, close)."""
    import mujoco
    import numpy as np
    from mujoco import rollout

    model = _mujoco_model(mjcf, dt, like_for_like)
    worlds, steps, _ = targets.shape
    data = [mujoco.MjData(model) for _ in range(nthread)]
    column = {model.joint(j).name: dof_names.index(model.joint(j).name) for j in range(model.njnt)}
    qpos_of = {model.joint(j).name: int(model.jnt_qposadr[j]) for j in range(model.njnt)}
    # ctrl per position servo: kp*(ctrl*gain/kp - length) with length = gear*q on a joint and sum(c_i q_i) on a
    # fixed tendon (the Panda's fingers), so ctrl = (target length) * kp / gain.
    ctrl = np.zeros((worlds, steps, model.nu))
    for a in range(model.nu):
        gain, kp = model.actuator_gainprm[a, 0], -model.actuator_biasprm[a, 1]
        if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT:
            name = model.joint(model.actuator_trnid[a, 0]).name
            length = model.actuator_gear[a, 0] * targets[:, :, column[name]]
        else:
            tendon = model.actuator_trnid[a, 0]
            adr, num = model.tendon_adr[tendon], model.tendon_num[tendon]
            length = sum(
                model.wrap_prm[w] * targets[:, :, column[model.joint(model.wrap_objid[w]).name]]
                for w in range(adr, adr + num)
            )
        ctrl[:, :, a] = length * kp / gain
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    nstate = mujoco.mj_stateSize(model, spec)
    initial = np.zeros((worlds, nstate))
    scratch = mujoco.MjData(model)
    for w in range(worlds):
        mujoco.mj_resetData(model, scratch)
        for name, adr in qpos_of.items():
            scratch.qpos[adr] = targets[w, 0, column[name]]
        mujoco.mj_getState(model, scratch, initial[w], spec)
    state = np.zeros((worlds, steps, nstate))
    sensordata = np.zeros((worlds, steps, 0))
    runner = rollout.Rollout(nthread=nthread)
    runner.rollout(model, data, initial[:8], ctrl[:8, :10])  # start the thread pool

    def run() -> float:
        t0 = time.perf_counter()
        runner.rollout(model, data, initial, ctrl, state=state, sensordata=sensordata)
        return time.perf_counter() - t0

    def final_q() -> list[float]:
        q = np.zeros(len(dof_names))
        for name, adr in qpos_of.items():
            q[column[name]] = state[0, -1, 1 + adr]  # FULLPHYSICS state: [time, qpos, qvel, ...]
        return q.tolist()

    info = {
        "threads": nthread,
        "integrator": mujoco.mjtIntegrator(model.opt.integrator).name,
        "disabled": [
            name
            for name, bit in mujoco.mjtDisableBit.__members__.items()
            if name != "mjNDISABLE" and model.opt.disableflags & int(bit)
        ],
        "final_q_sample": final_q,
    }
    return run, info, runner.close


def _our_runner(engine, targets, dt: float):
    """A closure running one timed rollout of the whole batch on our engine; returns (run, info)."""
    worlds, steps, _ = targets.shape
    q0 = targets[:, 0].copy()
    kwargs = dict(dt=dt, record_every=1, gravity_compensation=False)
    engine.rollout(q0[:8], None, targets[:8, :10], **kwargs)  # first request: model upload, arena
    last = {}

    def run() -> float:
        t0 = time.perf_counter()
        out = engine.rollout(q0, None, targets, **kwargs)
        elapsed = time.perf_counter() - t0
        last["kernel_s"] = min(last.get("kernel_s", float("inf")), out.compute_seconds)
        last["final"] = out.q[0, -1].tolist()
        del out
        return elapsed

    info = {
        "workers": engine.wait_ready()["workers"],
        "precision": engine.settings.precision,
        "specialized": engine.settings.specialize,
    }
    return run, info, last


def _summary(times: list[float], worlds: int, steps: int) -> dict:
    import numpy as np

    return {
        "world_steps_per_s": worlds * steps / min(times),
        "best_s": min(times),
        "median_s": float(np.median(times)),
    }


def _throughput(bench: BenchRobot, engine, targets, dt: float, repeats: int, nthread: int) -> dict:
    """Ours, MuJoCo like-for-like and MuJoCo as shipped on the same batch, interleaved so load hits all three."""
    import numpy as np

    worlds, steps, _ = targets.shape
    names = list(engine.robot.dof_names)
    ours_run, ours_info, ours_last = _our_runner(engine, targets, dt)
    like_run, like_info, like_close = _mujoco_runner(bench.mjcf, names, targets, dt, nthread, like_for_like=True)
    ship_run, ship_info, ship_close = _mujoco_runner(bench.mjcf, names, targets, dt, nthread, like_for_like=False)
    times: dict[str, list[float]] = {"ours": [], "like": [], "shipped": []}
    try:
        for _ in range(repeats):
            times["ours"].append(ours_run())
            times["like"].append(like_run())
            times["shipped"].append(ship_run())
    finally:
        like_close()
        ship_close()
    ours = {
        **_summary(times["ours"], worlds, steps),
        "kernel_s": ours_last["kernel_s"],
        "final_q_sample": ours_last["final"],
        **ours_info,
    }
    anchors = {}
    for key, info in (("like", like_info), ("shipped", ship_info)):
        anchors[key] = {
            **_summary(times[key], worlds, steps),
            "threads": info["threads"],
            "integrator": info["integrator"],
            "disabled": info["disabled"],
            "final_q_sample": info["final_q_sample"](),
        }
    ratio = ours["world_steps_per_s"] / anchors["like"]["world_steps_per_s"]
    return {
        "robot": bench.name,
        "ndof": engine.robot.ndof,
        "command": bench.command,
        "ours": ours,
        "mujoco_rollout": anchors["like"],
        "mujoco_rollout_shipped": anchors["shipped"],
        "ratio": ratio,
        "ratio_vs_shipped": ours["world_steps_per_s"] / anchors["shipped"]["world_steps_per_s"],
        "goal_ratio": GOAL_RATIO,
        "ratio_goal_met": ratio >= GOAL_RATIO,
        "final_state_difference_rad": float(
            np.abs(np.array(ours["final_q_sample"]) - np.array(anchors["like"]["final_q_sample"])).max()
        ),
        "profile": _profile(ours, anchors["like"], nthread),
    }


def _cpu_mhz() -> float | None:
    """The first core's clock from /proc/cpuinfo (Linux), MHz; None when not reported."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("cpu mhz"):
                    return float(line.split(":", 1)[1])
    except (OSError, ValueError):
        pass
    return None


def _profile(ours: dict, anchor: dict, nthread: int) -> dict:
    """Per-step cost per core against the articulated-body floor (`FLOOR_FLOPS` per world-step).

    ``floor_gflops_per_core``: how many GFLOP/s a core would be doing if each world-step cost only the floor;
    with the clock, ``cycles_per_world_step`` and ``floor_flops_per_cycle`` (a scalar core without SIMD peaks at
    ~2-4 flop/cycle, so a figure near that means the remaining speed-ups are vectorisation or float32, not
    fewer passes). ``kernel_share``: the part of our wall time spent inside the kernels.
    """
    cores = max(1, min(int(ours["workers"]) or 1, nthread))
    mhz = _cpu_mhz()
    out = {"floor_flops_per_world_step": FLOOR_FLOPS, "cpu_mhz": mhz, "kernel_share": ours["kernel_s"] / ours["best_s"]}
    for key, rate, n in (("ours", ours["world_steps_per_s"], cores), ("mujoco", anchor["world_steps_per_s"], nthread)):
        ns = n / rate * 1e9
        out[f"{key}_ns_per_world_step_per_core"] = ns
        out[f"{key}_floor_gflops_per_core"] = FLOOR_FLOPS / ns
        if mhz:
            out[f"{key}_cycles_per_world_step"] = ns * mhz * 1e-3
            out[f"{key}_floor_flops_per_cycle"] = FLOOR_FLOPS / (ns * mhz * 1e-3)
    return out


def _interactive(engine, requests: int, steps: int, dt: float) -> dict:
    import numpy as np

    from ._whatif_clearance import interactive_scenario

    scenario = interactive_scenario(dt, steps)
    engine.run(scenario)  # warm
    wall, compute = [], []
    for _ in range(requests):
        report = engine.run(scenario)
        wall.append(report.total_seconds)
        compute.append(report.compute_seconds)
    statuses = [v.status for v in report.variants]
    return {
        "variants": len(scenario.variants),
        "steps": report.steps,
        "requests": requests,
        "p50_ms": float(np.percentile(wall, 50) * 1e3),
        "p95_ms": float(np.percentile(wall, 95) * 1e3),
        "kernel_p50_ms": float(np.percentile(compute, 50) * 1e3),
        "failing_variants": statuses.count("fail"),
        "goal_p95_ms": GOAL_P95_MS,
    }


def _start_up(cache: str | None) -> dict:
    env = dict(os.environ)
    if cache is not None:
        env["TWIN_EXT_CACHE_DIR"] = cache
    env["PYTHONPATH"] = os.pathsep.join(
        [str(package_import_root())] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    proc = subprocess.run(
        [sys.executable, "-c", _START_SNIPPET, str(PANDA_USD)], capture_output=True, text=True, env=env, timeout=900
    )
    if proc.returncode != 0:
        return {"error": proc.stderr[-2000:]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.clearance_only:
        from ._whatif_clearance import clearance_text, run_clearance_bench

        section = run_clearance_bench(requests=args.requests, steps=100 if args.quick else 1000)
        print(json.dumps({"interactive_clearance": section}, indent=2) if args.json else clearance_text(section))
        return 0
    from ..robot import load_robot
    from ..whatif import WhatIfEngine, WhatIfSettings

    dt = 0.002
    nthread = os.cpu_count() or 1
    result: dict = {
        "benchmark": "whatif",
        "dt": dt,
        "worlds": args.worlds,
        "steps": args.steps,
        "cpu_count": nthread,
        "quick": args.quick,
        "anchor_note": ANCHOR_NOTE,
    }
    start = {}
    if not args.no_cold:
        with tempfile.TemporaryDirectory(prefix="twin_ext_cold_cache_") as cold:
            start["cold"] = _start_up(cold)
    settings = WhatIfSettings(memory_budget_mb=4096.0)
    panda = WhatIfEngine(load_robot(PANDA_USD), settings=settings)
    panda.wait_ready()
    start["warm"] = _start_up(None)
    result["start_up"] = start

    robots = []
    for bench in args.robots:
        engine = panda if bench.usd == PANDA_USD else WhatIfEngine(load_robot(bench.usd), settings=settings)
        engine.wait_ready()
        targets = _targets(engine.robot, bench.command, args.worlds, args.steps, dt)
        robots.append(_throughput(bench, engine, targets, dt, args.repeats, nthread))
    result["robots"] = robots
    # The first robot's figures at the top level as well (the Panda by default; earlier documents had only it).
    for key in ("ours", "mujoco_rollout", "mujoco_rollout_shipped", "ratio", "goal_ratio", "ratio_goal_met"):
        result[key] = robots[0][key]
    result["final_state_difference_rad"] = robots[0]["final_state_difference_rad"]
    result["ratio_goal_met_on_all"] = all(r["ratio_goal_met"] for r in robots)
    inter = _interactive(panda, args.requests, args.steps, dt)
    inter["goal_met"] = inter["p95_ms"] < GOAL_P95_MS
    result["interactive"] = inter
    # issue 13: the interactive request (256 variants x 1 s at 1 kHz) with clearance against the demo cell
    from ._whatif_clearance import clearance_text, run_clearance_bench

    result["interactive_clearance"] = run_clearance_bench(requests=args.requests, steps=100 if args.quick else 1000)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(_text(result))
    print(clearance_text(result["interactive_clearance"]))
    return 0


def _text(r: dict) -> str:
    lines = (
        ["QUICK RUN (--quick): tiny sizes, a smoke test; the figures below are not measurements"] if r["quick"] else []
    )
    lines.append(
        f"what-if throughput: dt {r['dt'] * 1e3:g} ms, {r['worlds']} worlds x {r['steps']} steps, full trajectories; "
        f"{r['anchor_note']}"
    )
    for b in r["robots"]:
        o, m, s, p = b["ours"], b["mujoco_rollout"], b["mujoco_rollout_shipped"], b["profile"]
        lines += [
            f"  {b['robot']} ({b['ndof']} dof, {b['command']} command):",
            f"    ours (Warp, {o['workers']} worker processes, {o['precision']}, specialised={o['specialized']}): "
            f"{o['world_steps_per_s'] / 1e6:.3f} M world-steps/s  (best {o['best_s']:.3f} s, kernels {o['kernel_s']:.3f} s)",
            f"    mujoco.rollout like-for-like (nthread={m['threads']}, {m['integrator']}, off: "
            f"{', '.join(d.removeprefix('mjDSBL_').lower() for d in m['disabled'])}): "
            f"{m['world_steps_per_s'] / 1e6:.3f} M world-steps/s (best {m['best_s']:.3f} s)",
            f"    mujoco.rollout as shipped (nthread={s['threads']}, {s['integrator']}, all constraints on): "
            f"{s['world_steps_per_s'] / 1e6:.3f} M world-steps/s (best {s['best_s']:.3f} s)",
            f"    ratio {b['ratio']:.1f}x like-for-like (goal >= {b['goal_ratio']:g}x: "
            f"{'met' if b['ratio_goal_met'] else 'NOT met'}); {b['ratio_vs_shipped']:.1f}x vs the shipped model",
            f"    profile: ours {p['ours_ns_per_world_step_per_core']:.0f} ns per world-step per core "
            f"({p['ours_floor_gflops_per_core']:.1f} GFLOP/s at the {p['floor_flops_per_world_step'] / 1e3:g} kflop floor"
            + (
                f", {p['ours_cycles_per_world_step']:.0f} cycles = {p['ours_floor_flops_per_cycle']:.1f} floor-flop/cycle"
                if p["cpu_mhz"]
                else ""
            )
            + f"; kernels {p['kernel_share'] * 100:.0f} % of wall); MuJoCo {p['mujoco_ns_per_world_step_per_core']:.0f} ns",
            f"    world 0 final state, ours vs MuJoCo like-for-like: max |dq| = {b['final_state_difference_rad']:.2e} rad|m",
        ]
    i = r["interactive"]
    lines += [
        f"interactive (panda): {i['variants']} variants x {i['steps']} steps with verdicts, {i['requests']} warm "
        f"requests: p50 {i['p50_ms']:.0f} ms, p95 {i['p95_ms']:.0f} ms (kernels p50 {i['kernel_p50_ms']:.0f} ms); "
        f"goal p95 < {i['goal_p95_ms']:g} ms: {'met' if i['goal_met'] else 'NOT met'}",
    ]
    for name, s in r["start_up"].items():
        if "error" in s:
            lines.append(f"start-up ({name} cache): failed: {s['error']}")
        else:
            lines.append(
                f"start-up ({name} cache, fresh process): {s['process_seconds']:.2f} s to kernels ready "
                f"(kernel load/compile {s['kernel_seconds']:.2f} s, {s['workers']} workers)"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
