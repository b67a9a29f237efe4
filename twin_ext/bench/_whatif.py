# SPDX-License-Identifier: Apache-2.0
"""What-if benchmark: our Warp engine against ``mujoco.rollout`` on the same Panda, in one run.

    python -m twin_ext.bench whatif [--json] [--worlds 1024] [--steps 1000] [--repeats 5] [--no-cold] [--quick]

Throughput. Both simulate the Menagerie Panda (ours from ``usd/franka_panda/panda.usda``, MuJoCo from
``data/robots/franka_emika_panda/panda_nomesh.xml``) for ``worlds x steps`` at dt = 2 ms, float64, every
world following its own slice of the pick-and-place program through the position servos, and both return
the full trajectory of every world (MuJoCo: its state per step; ours: q, qd and tau per step). MuJoCo
runs as documented for speed: a persistent ``mujoco.rollout.Rollout(nthread=<cores>)`` with one
``MjData`` per thread and preallocated outputs. The two are timed alternately (ours, MuJoCo, ours, ...)
so that load from other processes hits both; the best of ``--repeats`` of each is reported. Ours runs the default engine (worker
pool over all cores, kernels specialised to the Panda) with the same servo model (no gravity
compensation, no velocity feed-forward: MuJoCo's ``general`` servo), limits on, plus its in-kernel
verdict statistics. Reported: world-steps/s of both and the ratio (goal >= 8).

Interactive latency. 256 variants (speed x payload x gain x latency grid) x 1 sample x 1000 steps of
the pick-and-place command with verdicts, through `WhatIfEngine.run`: p50/p95 wall time over 20 warm
requests (goal p95 < 250 ms).

Start-up. Engine creation to "kernels ready" in a fresh process: cold (empty kernel cache: compiles)
and warm (cache filled).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time

from .._paths import default_program_file, default_robot_mjcf, default_robot_usd, package_import_root

PANDA_USD = default_robot_usd()
PANDA_MJCF = default_robot_mjcf()
PICK_PLACE = default_program_file()
GOAL_RATIO = 8.0
GOAL_P95_MS = 250.0
ANCHOR_NOTE = "DESIGN.md anchor: mujoco.rollout ~158k world-steps/s on 2 threads"

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
    args = p.parse_args(argv)
    if args.quick:
        args.worlds, args.steps, args.repeats, args.requests, args.no_cold = 64, 100, 1, 3, True
    return args


def _targets(robot_names, worlds: int, steps: int, dt: float):
    """``[worlds, steps, ndof]`` servo targets: each world runs the pick-and-place program from its own offset."""
    import numpy as np

    from ..robot import JointTrajectory

    traj = JointTrajectory.from_toml(PICK_PLACE).select(robot_names)
    offsets = np.linspace(0.0, traj.duration, worlds, endpoint=False)
    t = offsets[:, None] + np.arange(steps)[None, :] * dt
    q, _, _ = traj.sample(np.mod(t, traj.duration))
    return q


def _mujoco_runner(targets, dt: float, nthread: int):
    """A closure running one timed ``mujoco.rollout`` of the whole batch; returns (run, info, close)."""
    import mujoco
    import numpy as np
    from mujoco import rollout

    model = mujoco.MjModel.from_xml_path(str(PANDA_MJCF))
    model.opt.timestep = dt
    worlds, steps, _ = targets.shape
    data = [mujoco.MjData(model) for _ in range(nthread)]
    names = [model.joint(j).name for j in range(model.njnt)]
    # ctrl per actuator: arm servos take the joint target; the finger tendon servo takes the mean finger target
    ctrl = np.zeros((worlds, steps, model.nu))
    for a in range(model.nu):
        gain, kp = model.actuator_gainprm[a, 0], -model.actuator_biasprm[a, 1]
        if model.actuator_trntype[a] == mujoco.mjtTrn.mjTRN_JOINT:
            ctrl[:, :, a] = targets[:, :, names.index(model.joint(model.actuator_trnid[a, 0]).name)] * kp / gain
        else:
            ctrl[:, :, a] = 0.5 * (targets[:, :, 7] + targets[:, :, 8]) * kp / gain
    spec = mujoco.mjtState.mjSTATE_FULLPHYSICS
    nstate = mujoco.mj_stateSize(model, spec)
    initial = np.zeros((worlds, nstate))
    scratch = mujoco.MjData(model)
    for w in range(worlds):
        mujoco.mj_resetData(model, scratch)
        scratch.qpos[:] = targets[w, 0]
        mujoco.mj_getState(model, scratch, initial[w], spec)
    state = np.zeros((worlds, steps, nstate))
    sensordata = np.zeros((worlds, steps, 0))
    runner = rollout.Rollout(nthread=nthread)
    runner.rollout(model, data, initial[:8], ctrl[:8, :10])  # start the thread pool

    def run() -> float:
        t0 = time.perf_counter()
        runner.rollout(model, data, initial, ctrl, state=state, sensordata=sensordata)
        return time.perf_counter() - t0

    info = {
        "threads": nthread,
        "integrator": mujoco.mjtIntegrator(model.opt.integrator).name,
        "final_q_sample": lambda: state[0, -1, 1:10].tolist(),
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


def _throughput(engine, targets, dt: float, repeats: int, nthread: int) -> tuple[dict, dict]:
    """Both engines on the same batch, runs interleaved (ours, MuJoCo, ours, ...) so load changes hit both."""
    import numpy as np

    worlds, steps, _ = targets.shape
    ours_run, ours_info, ours_last = _our_runner(engine, targets, dt)
    mj_run, mj_info, mj_close = _mujoco_runner(targets, dt, nthread)
    ours_t, mj_t = [], []
    try:
        for _ in range(repeats):
            ours_t.append(ours_run())
            mj_t.append(mj_run())
    finally:
        mj_close()
    ours = {
        "world_steps_per_s": worlds * steps / min(ours_t),
        "best_s": min(ours_t),
        "median_s": float(np.median(ours_t)),
        "kernel_s": ours_last["kernel_s"],
        "final_q_sample": ours_last["final"],
        **ours_info,
    }
    anchor = {
        "world_steps_per_s": worlds * steps / min(mj_t),
        "best_s": min(mj_t),
        "median_s": float(np.median(mj_t)),
        "threads": mj_info["threads"],
        "integrator": mj_info["integrator"],
        "final_q_sample": mj_info["final_q_sample"](),
    }
    return ours, anchor


def _interactive(engine, requests: int, steps: int, dt: float) -> dict:
    import numpy as np

    from ..robot import JointTrajectory
    from ..whatif import Payload, Scenario, TrajectoryCommand, Variant

    traj = JointTrajectory.from_toml(PICK_PLACE)
    grid = itertools.product([0.8, 1.0, 1.25, 1.5], [0.0, 1.0, 2.0, 3.0], [0.6, 0.8, 1.0, 1.2], [0.0, 0.01, 0.02, 0.05])
    variants = [
        Variant(
            f"speed {s:g} load {m:g} kp {k:g} lat {lat * 1e3:g}ms",
            speed_scale=s,
            kp_scale=k,
            latency=lat,
            payloads=(Payload("hand", m, (0.0, 0.0, 0.16)),) if m else (),
        )
        for s, m, k, lat in grid
    ]
    scenario = Scenario(
        "interactive",
        TrajectoryCommand(traj),
        variants=tuple(variants),
        samples=1,
        dt=dt,
        duration=steps * dt,
        record_every=0,
    )
    engine.run(scenario)  # warm
    wall, compute = [], []
    for _ in range(requests):
        report = engine.run(scenario)
        wall.append(report.total_seconds)
        compute.append(report.compute_seconds)
    statuses = [v.status for v in report.variants]
    return {
        "variants": len(variants),
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
    import numpy as np

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
    robot = load_robot(PANDA_USD)
    engine = WhatIfEngine(robot, settings=WhatIfSettings(memory_budget_mb=4096.0))
    engine.wait_ready()
    start["warm"] = _start_up(None)
    result["start_up"] = start

    targets = _targets(robot.dof_names, args.worlds, args.steps, dt)
    ours, anchor = _throughput(engine, targets, dt, args.repeats, nthread)
    ratio = ours["world_steps_per_s"] / anchor["world_steps_per_s"]
    result.update(
        {
            "ours": ours,
            "mujoco_rollout": anchor,
            "ratio": ratio,
            "goal_ratio": GOAL_RATIO,
            "ratio_goal_met": ratio >= GOAL_RATIO,
        }
    )
    result["final_state_difference_rad"] = float(
        np.abs(np.array(ours["final_q_sample"]) - np.array(anchor["final_q_sample"])).max()
    )
    inter = _interactive(engine, args.requests, args.steps, dt)
    inter["goal_met"] = inter["p95_ms"] < GOAL_P95_MS
    result["interactive"] = inter
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(_text(result))
    return 0


def _text(r: dict) -> str:
    o, m = r["ours"], r["mujoco_rollout"]
    lines = (
        ["QUICK RUN (--quick): tiny sizes, a smoke test; the figures below are not measurements"] if r["quick"] else []
    )
    lines += [
        f"what-if throughput: Panda, dt {r['dt'] * 1e3:g} ms, {r['worlds']} worlds x {r['steps']} steps, full trajectories",
        f"  ours (Warp, {o['workers']} worker processes, {o['precision']}, specialised={o['specialized']}): "
        f"{o['world_steps_per_s'] / 1e6:.3f} M world-steps/s  (best {o['best_s']:.3f} s, kernels {o['kernel_s']:.3f} s)",
        f"  mujoco.rollout (nthread={m['threads']}, {m['integrator']}): {m['world_steps_per_s'] / 1e6:.3f} M world-steps/s "
        f"(best {m['best_s']:.3f} s)",
        f"  ratio {r['ratio']:.1f}x  (goal >= {r['goal_ratio']:g}x: {'met' if r['ratio_goal_met'] else 'NOT met'}); "
        f"{r['anchor_note']}",
        f"  world 0 final state, ours vs MuJoCo: max |dq| = {r['final_state_difference_rad']:.2e} rad|m "
        "(MuJoCo keeps its finger equality and limit constraints, we do not: a sanity check, not an oracle)",
    ]
    i = r["interactive"]
    lines += [
        f"interactive: {i['variants']} variants x {i['steps']} steps with verdicts, {i['requests']} warm requests: "
        f"p50 {i['p50_ms']:.0f} ms, p95 {i['p95_ms']:.0f} ms (kernels p50 {i['kernel_p50_ms']:.0f} ms); goal p95 < "
        f"{i['goal_p95_ms']:g} ms: {'met' if i['goal_met'] else 'NOT met'}",
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
