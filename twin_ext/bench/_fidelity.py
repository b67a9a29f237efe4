# SPDX-License-Identifier: Apache-2.0
"""Fidelity benchmark: the twin against the emulator's plant, beside naive bridges from the same run.

    python -m twin_ext.bench fidelity [--json] [--impairments FILE] [--duration 30] [--seeds 3] [--no-forecast]
    python -m twin_ext.bench fidelity --matrix [--seeds 3] [--duration 30]   # every shipped profile, one row each

The emulator (MuJoCo Panda running its pick-and-place program) publishes under an impairment profile
(default ``config/impairments/standard.toml``: 200 Hz over one TCP connection, latency 20 ± 10 ms, 5 % bursty
loss, clock offset 250 ms, drift 50 ppm, encoder noise 1e-4 rad). Its delivery schedule goes through the twin's real pipeline
(decode, validate, order, clock sync, Kalman) on a virtual clock (`twin_ext.fidelity`), and at every 60 Hz
display tick the displayed joint positions are compared with the plant's ground truth at that instant:

- **twin**: the estimate predicted to display time;
- **last-sample-hold**: the message that arrived last (what a raw joint-state bridge shows) — the anchor;
- **newest-message**: the message with the newest source stamp so far (reorder-aware, no clock sync).

Reported per seed and as the median over seeds: RMS, p99 and max joint error (rad, after a 2 s warm-up),
and the ratio twin RMS / last-sample-hold RMS (goal <= 1/3); the worst 1-second window ratio (twin RMS / hold
RMS within the window, worst over seeds; goal <= 1: never worse than hold in any second); the fraction of the
distinct delivered samples within the lag window that the estimator fused (goal >= 99 %; a sample is within the
window when, by the emulator's ground truth, it is at most ``estimator.max_lag_ms`` older than the newest sample
delivered before it; older ones are counted apart as beyond the lag window) with how many of them were late and
how many were dropped as too late; and the clock sync's offset error (beyond the unobservable minimum latency) and
drift error at the end of the run. Also the errors over the ticks where the twin
reported health ``ok``: profiles with pauses and restarts have windows no estimator can know (the twin says
``stale``/``lost`` there), which dominate the overall RMS.

Forecast: every second, the twin's snapshot seeds a 0.5 s what-if rollout of the robot's program (aligned to
where the robot is in it, mean state, the engine's servo model) and the predicted positions are compared with
what the plant then did; beside it, the same error for "hold the current estimate" and constant-velocity
extrapolation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from .._paths import default_program_file, impairments_dir

STANDARD = impairments_dir() / "standard.toml"
GOAL_RATIO = 1.0 / 3.0
GOAL_WORST_WINDOW = 1.0
GOAL_FUSED = 0.99


def _parse(argv):
    p = argparse.ArgumentParser(prog="python -m twin_ext.bench fidelity", description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print one JSON document instead of text")
    p.add_argument("--impairments", default=str(STANDARD), help="impairment profile TOML (default: standard)")
    p.add_argument("--duration", type=float, default=30.0, help="simulated seconds per seed (default 30)")
    p.add_argument("--seeds", type=int, default=3, help="emulator seeds (default 3; figures are medians)")
    p.add_argument("--no-forecast", action="store_true", help="skip the 0.5 s what-if forecast check")
    p.add_argument("--horizon", type=float, default=0.5, help="forecast horizon, s (default 0.5)")
    p.add_argument(
        "--matrix",
        action="store_true",
        help="run every shipped profile (config/impairments/*.toml) and print one row each (no forecast)",
    )
    return p.parse_args(argv)


def forecast_errors(
    model, sim, result, *, horizon_s: float = 0.5, every_s: float = 1.0, warmup_s: float = 2.0, engine=None
) -> dict[str, float]:
    """Error of ``horizon_s`` forecasts from the twin's snapshots against the plant (rad, arm joints).

    Returns RMS over the horizon and the mean error at its end for: the what-if rollout, holding the estimate,
    and constant-velocity extrapolation.
    """
    from ..live import LiveTwin
    from ..robot import JointTrajectory
    from ..runs import OfflineFeed, VirtualClock
    from ..telemetry import TelemetryIngest, TelemetrySettings
    from ..whatif import Scenario, TrajectoryCommand, Variant, WhatIfEngine, align_to_snapshot

    program = JointTrajectory.from_toml(default_program_file())
    truth_cols = [sim.truth.joint_names.index(n) for n in model.dof_names]
    own_engine = engine is None
    engine = engine or WhatIfEngine(model)
    clock = VirtualClock(sim.start_ns)
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id=sim.settings.robot_id), model=model, now_ns=clock)
    twin = LiveTwin(model, ingest, now_ns=clock)
    arm = slice(0, 7)
    errs = {"whatif": [], "hold": [], "constant_velocity": []}
    ends = {"whatif": [], "hold": [], "constant_velocity": []}
    feed = OfflineFeed(sim.deliveries, ingest, clock)
    t = sim.start_ns + int(warmup_s * 1e9)
    while t + int(horizon_s * 1e9) < sim.end_ns:
        feed.advance(t)
        snap = twin.tick(t)
        scenario, _ = align_to_snapshot(
            Scenario(
                name="forecast",
                command=TrajectoryCommand(program),
                variants=(Variant(name="as programmed"),),
                samples=1,
                duration=horizon_s,
                record_every=5,
            ),
            snap,
        )
        report = engine.run(scenario, base=snap)
        times = np.asarray(report.rollout.t)
        predicted = np.asarray(report.rollout.q[0])
        truth, _ = sim.truth.interpolate(t + (times * 1e9).astype(np.int64))
        truth = truth[:, truth_cols]
        hold = np.broadcast_to(snap.q, predicted.shape)
        cv = snap.q[None, :] + times[:, None] * snap.qd[None, :]
        for name, pred in (("whatif", predicted), ("hold", hold), ("constant_velocity", cv)):
            e = pred[:, arm] - truth[:, arm]
            errs[name].append(e)
            ends[name].append(np.abs(e[-1]).mean())
        t += int(every_s * 1e9)
    if own_engine:
        engine.close()
    out = {}
    for name in errs:
        stacked = np.concatenate(errs[name]) if errs[name] else np.full((1, 7), np.nan)
        out[f"{name}_rms"] = float(np.sqrt(np.mean(stacked**2)))
        out[f"{name}_end_mean_abs"] = float(np.mean(ends[name])) if ends[name] else float("nan")
    out["forecasts"] = len(ends["whatif"])
    return out


def _run_profile(path, args, model, engine_box) -> dict:
    """Every seed of one profile: per-seed figures and their medians (see the module docstring)."""
    from ..emulator import EmulatedRobot, ImpairmentProfile
    from ..runs import evaluate_fidelity

    profile = ImpairmentProfile.from_toml(path)
    runs = []
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        sim = EmulatedRobot(profile=profile).simulate(args.duration, seed=seed)
        r = evaluate_fidelity(model, profile, simulation=sim)
        run = {
            "seed": seed,
            "twin": r.twin,
            "last_sample_hold": r.last_sample_hold,
            "newest_message": r.newest_message,
            "twin_when_ok": r.twin_when_ok,
            "hold_when_ok": r.hold_when_ok,
            "ratio_to_hold": r.ratio_to_hold,
            "worst_window_ratio": r.worst_window_ratio,
            "worst_window_s": r.worst_window_s,
            "fused_fraction": r.fused_fraction,
            "fused_late": r.fused_late,
            "too_late": r.too_late,
            "delivered": r.delivered,
            "beyond_lag": r.beyond_lag,
            "offset_error_ms": r.offset_error_ms,
            "drift_error_ppm": r.drift_error_ppm,
            "ticks": r.display_ticks,
            "rejected": r.telemetry["rejected"],
            "accepted": r.telemetry["accepted"],
        }
        if not args.no_forecast and not args.matrix:
            if engine_box[0] is None:
                from ..whatif import WhatIfEngine

                engine_box[0] = WhatIfEngine(model)
            run["forecast"] = forecast_errors(model, sim, r, horizon_s=args.horizon, engine=engine_box[0])
        runs.append(run)
        if not args.json and not args.matrix:
            print(
                f"  seed {seed}: twin RMS {r.twin['rms'] * 1e3:.3f} mrad | last-sample-hold {r.last_sample_hold['rms'] * 1e3:.3f}"
                f" | newest-message {r.newest_message['rms'] * 1e3:.3f} | ratio {r.ratio_to_hold:.3f}"
                f" | worst 1 s window {r.worst_window_ratio:.2f} (at {r.worst_window_s:g} s)",
                flush=True,
            )

    def med(path):
        values = [run for run in runs]
        for key in path:
            values = [v[key] for v in values]
        return float(statistics.median(values))

    summary = {
        "benchmark": "fidelity",
        "profile": str(path),
        "profile_description": profile.description,
        "duration_s": args.duration,
        "seeds": args.seeds,
        "twin_rms_rad": med(("twin", "rms")),
        "twin_p99_rad": med(("twin", "p99")),
        "hold_rms_rad": med(("last_sample_hold", "rms")),
        "hold_p99_rad": med(("last_sample_hold", "p99")),
        "newest_rms_rad": med(("newest_message", "rms")),
        "newest_p99_rad": med(("newest_message", "p99")),
        "ratio_to_hold": med(("ratio_to_hold",)),
        "worst_window_ratio": max(run["worst_window_ratio"] for run in runs),
        "fused_fraction": min(run["fused_fraction"] for run in runs),
        "fused_late": med(("fused_late",)),
        "too_late": med(("too_late",)),
        "beyond_lag": med(("beyond_lag",)),
        "offset_error_ms": max(abs(run["offset_error_ms"]) for run in runs),
        "drift_error_ppm": max(abs(run["drift_error_ppm"]) for run in runs),
        "twin_when_ok_rms_rad": med(("twin_when_ok", "rms")),
        "hold_when_ok_rms_rad": med(("hold_when_ok", "rms")),
        "goal_ratio": GOAL_RATIO,
        "wall_s": time.perf_counter() - t0,
        "runs": runs,
    }
    summary["goal_met"] = summary["ratio_to_hold"] <= GOAL_RATIO
    summary["worst_window_goal_met"] = summary["worst_window_ratio"] <= GOAL_WORST_WINDOW
    summary["fused_goal_met"] = summary["fused_fraction"] >= GOAL_FUSED
    if not args.no_forecast and not args.matrix:
        for key in (
            "whatif_rms",
            "hold_rms",
            "constant_velocity_rms",
            "whatif_end_mean_abs",
            "hold_end_mean_abs",
            "constant_velocity_end_mean_abs",
        ):
            summary[f"forecast_{key}_rad"] = med(("forecast", key))
    return summary


def _print_profile(summary: dict, args) -> None:
    m = 1e3
    print(
        f"fidelity under {Path(summary['profile']).name} ({summary['profile_description']}); {args.seeds} seeds x "
        f"{args.duration:g} s, medians"
    )
    print(f"  {'display-time error vs plant':<34}{'RMS mrad':>10}{'p99 mrad':>10}")
    print(
        f"  {'twin (Kalman, clock-synced)':<34}{summary['twin_rms_rad'] * m:>10.3f}{summary['twin_p99_rad'] * m:>10.3f}"
    )
    print(
        f"  {'last-sample-hold (anchor)':<34}{summary['hold_rms_rad'] * m:>10.3f}{summary['hold_p99_rad'] * m:>10.3f}"
    )
    print(f"  {'newest-message':<34}{summary['newest_rms_rad'] * m:>10.3f}{summary['newest_p99_rad'] * m:>10.3f}")
    print(
        f"  ratio twin / last-sample-hold RMS: {summary['ratio_to_hold']:.3f} (goal <= {GOAL_RATIO:.3f}: "
        f"{'met' if summary['goal_met'] else 'NOT met'}); worst 1 s window over all seeds "
        f"{summary['worst_window_ratio']:.2f} (goal <= {GOAL_WORST_WINDOW:g}: "
        f"{'met' if summary['worst_window_goal_met'] else 'NOT met'})"
    )
    print(
        f"  fused {summary['fused_fraction'] * 100:.2f} % of the distinct samples delivered (fewest over seeds; goal >= "
        f"{GOAL_FUSED * 100:g} %), {summary['fused_late']:g} of them late (median); too late {summary['too_late']:g}, "
        f"{summary['beyond_lag']:g} delivered beyond the lag window (not in the goal's denominator)"
    )
    print(
        f"  clock sync at the end, worst over seeds: offset error {summary['offset_error_ms']:.3f} ms (beyond the "
        f"unobservable minimum latency), drift error {summary['drift_error_ppm']:.1f} ppm"
    )
    print(
        f"  while the twin reports 'ok': twin RMS {summary['twin_when_ok_rms_rad'] * m:.3f} mrad vs last-sample-hold "
        f"{summary['hold_when_ok_rms_rad'] * m:.3f} mrad (gaps, restarts and stalls excluded: no one knows the state then)"
    )
    if "forecast_whatif_rms_rad" in summary:
        print(f"  {args.horizon:g} s forecast vs what the plant then did (arm joints):")
        for name, label in (
            ("whatif", "what-if rollout of the program"),
            ("constant_velocity", "constant velocity"),
            ("hold", "hold the estimate"),
        ):
            print(
                f"    {label:<32} RMS {summary[f'forecast_{name}_rms_rad'] * m:8.3f} mrad, mean |error| at "
                f"{args.horizon:g} s {summary[f'forecast_{name}_end_mean_abs_rad'] * m:8.3f} mrad"
            )
    print(f"  ({summary['wall_s']:.1f} s)")


def _print_matrix(summaries: list[dict], args) -> None:
    m = 1e3
    print(
        f"fidelity matrix: every shipped profile, {args.seeds} seeds x {args.duration:g} s; RMS/p99 medians over seeds "
        f"(mrad), worst window / fused / clock errors: worst seed"
    )
    head = (
        f"{'profile':<16}{'twin rms/p99':>15}{'hold rms/p99':>16}{'newest rms/p99':>16}{'ratio':>7}{'worst1s':>8}"
        f"{'fused%':>8}{'late':>7}{'too late':>9}{'off ms':>8}{'drift ppm':>10}  goals"
    )
    print(head)
    for s in summaries:
        goals = "".join(
            (
                "R" if s["goal_met"] else "r",
                "W" if s["worst_window_goal_met"] else "w",
                "F" if s["fused_goal_met"] else "f",
            )
        )
        print(
            f"{Path(s['profile']).stem:<16}"
            f"{s['twin_rms_rad'] * m:>7.2f}/{s['twin_p99_rad'] * m:<7.1f}"
            f"{s['hold_rms_rad'] * m:>8.2f}/{s['hold_p99_rad'] * m:<7.1f}"
            f"{s['newest_rms_rad'] * m:>8.2f}/{s['newest_p99_rad'] * m:<7.1f}"
            f"{s['ratio_to_hold']:>7.3f}{s['worst_window_ratio']:>8.2f}{s['fused_fraction'] * 100:>8.2f}"
            f"{s['fused_late']:>7.0f}{s['too_late']:>9.0f}{s['offset_error_ms']:>8.2f}{s['drift_error_ppm']:>10.1f}  {goals}"
        )
    print(
        f"goals: R ratio <= {GOAL_RATIO:.3f}, W worst 1 s window <= {GOAL_WORST_WINDOW:g}, F fused >= "
        f"{GOAL_FUSED * 100:g} % (upper case: met). Anchor: last-sample-hold from the same runs."
    )


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv if argv is not None else sys.argv[1:])
    from ..emulator import ImpairmentError
    from ..robot import default_robot_path, load_robot

    paths = sorted(impairments_dir().glob("*.toml")) if args.matrix else [Path(args.impairments)]
    model = load_robot(default_robot_path())
    engine_box = [None]
    summaries = []
    try:
        for path in paths:
            try:
                summary = _run_profile(path, args, model, engine_box)
            except ImpairmentError as exc:  # names the file and the key or value at fault
                print(f"error: {exc}", file=sys.stderr)
                return 2
            summaries.append(summary)
            if args.matrix and not args.json:
                print(f"  {path.stem}: done in {summary['wall_s']:.1f} s", flush=True)
    finally:
        if engine_box[0] is not None:
            engine_box[0].close()
    if args.json:
        print(json.dumps({"matrix": summaries} if args.matrix else summaries[0], indent=2))
    elif args.matrix:
        _print_matrix(summaries, args)
    else:
        _print_profile(summaries[0], args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
