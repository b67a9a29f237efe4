# SPDX-License-Identifier: Apache-2.0
"""Running one job of a suite and judging it: the twin over a recording or an emulated robot, or a what-if.

`run_job` never raises: a job that cannot run (a missing or foreign file, a bad scenario, a robot mismatch)
returns status ``error`` with the reason, so one broken job is one failed test case, not a stopped suite.
What-if engines are kept per robot and scene in the process (`warm`): a pool worker or Ray actor
compiles/loads its Warp kernels once, not per job. A sweep job (thousands of variants) is split into batches of
variants (`run_task`), which workers run on their warm engines; `finish_sweep` merges them and judges the job.
"""

from __future__ import annotations

import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["evaluate_checks", "finish_sweep", "run_job", "run_task", "sweep_scenario", "warm"]

_ROBOTS: dict[str, Any] = {}
_ENGINES: dict[str, Any] = {}
_WARMUP_S = 2.0  # clock sync and filter converging: not scored (as `evaluate_fidelity`)
_SERIES_POINTS = 400  # points kept per job for its page's plot


def _robot(path: str):
    from ..robot import default_robot_path, load_robot

    if path not in _ROBOTS:
        _ROBOTS[path] = load_robot(path or default_robot_path())
    return _ROBOTS[path]


def _engine(path: str, scene: str = ""):
    """This process's what-if engine for the robot and scene ("" = none; a USD file adds the collision and
    clearance verdicts), in-process Warp: the pool or Ray gives the parallelism."""
    from ..whatif import WhatIfEngine, WhatIfSettings

    key = (path, scene)
    if key not in _ENGINES:
        if scene and not Path(scene).is_file():
            raise FileNotFoundError(
                f"scene {scene!r} not found; fix: a USD file with collision prims (relative to the suite)"
            )
        settings = WhatIfSettings(use_process_pool=False, scene=scene)
        _ENGINES[key] = WhatIfEngine(_robot(path), settings=settings)
    return _ENGINES[key]


def warm(
    robots: list[str] | tuple[str, ...] = ("",), whatif: bool = True, scenes: list[str] | tuple[str, ...] = ("",)
) -> dict[str, float]:
    """Load robots and (``whatif``) their what-if kernels, per scene of ``scenes``, into this process once;
    returns seconds per robot."""
    seconds = {}
    for path in robots:
        t0 = time.perf_counter()
        _robot(path)
        if whatif:
            for scene in scenes:
                try:
                    _engine(path, scene).wait_ready()
                except FileNotFoundError:  # the jobs that need it fail with the reason
                    pass
        seconds[path or "default"] = time.perf_counter() - t0
    return seconds


def run_job(job: dict[str, Any], hooks: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``job`` (`Job.to_dict` plus ``key``) and judge it.

    ``hooks`` (in-process runs only, e.g. inside Isaac Sim): ``{"sinks": robot -> [sink], "on_tick": () -> None}``
    — extra sinks the twin feeds every display tick (an Isaac articulation driver) and a call after each tick
    (``simulation_app.update``: PhysX steps while the twin replays).

    Returns:
        ``{"name", "kind", "key", "status": pass|fail|error, "checks": [{"name", "ok", "detail"}], "metrics",
        "warnings", "error", "seconds", "series"}`` — JSON-able; ``series`` holds ``t_s`` and per-tick RMS
        errors over the joints (rad) for the job page's plot, when the run has the plant's truth.
    """
    t0 = time.perf_counter()
    result = _judged(job, lambda: _RUNNERS[job["kind"]](job["params"], hooks or {}))
    result["seconds"] = time.perf_counter() - t0
    return result


def _judged(job: dict[str, Any], produce: Callable[[], tuple[dict, list, dict]]) -> dict[str, Any]:
    """A `run_job` result (without ``seconds``) from ``produce() -> (metrics, notes, series)`` and the job's checks;
    an exception is the job's ``error`` status with its reason, never raised."""
    result: dict[str, Any] = {
        "name": job["name"],
        "kind": job["kind"],
        "key": job.get("key", ""),
        "checks": [],
        "metrics": {},
        "warnings": [],
        "error": "",
        "series": {},
    }
    try:
        metrics, notes, series = produce()
        result["metrics"], result["warnings"], result["series"] = metrics, notes, series
        result["checks"] = evaluate_checks(job["checks"], metrics, notes)
        result["status"] = "pass" if all(c["ok"] for c in result["checks"]) else "fail"
    except Exception as exc:  # noqa: BLE001 - a broken job is a failed test case with its reason
        result["status"] = "error"
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=8)
    return result


def evaluate_checks(checks: dict[str, Any], metrics: dict[str, Any], notes: list[str]) -> list[dict[str, Any]]:
    """Each check of ``checks`` (`CHECK_KEYS`) against a job's ``metrics``: ``[{"name", "ok", "detail"}]``.

    A check that the job has nothing to judge with (a fidelity bound on a recording without truth, a verdict on
    a job without what-if) fails, saying so: a suite that asks for it expects it.
    """
    out = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append({"name": name, "ok": bool(ok), "detail": detail})

    ratio = metrics.get("fidelity_ratio")
    if "max_fidelity_ratio" in checks:
        bound = float(checks["max_fidelity_ratio"])
        if ratio is None:
            add("max_fidelity_ratio", False, "no plant truth in this run to score against (ROS 2 bags have none)")
        else:
            add("max_fidelity_ratio", ratio <= bound, f"twin/last-sample-hold RMS {ratio:.3f} (limit {bound})")
    if "max_twin_rms_mrad" in checks:
        bound = float(checks["max_twin_rms_mrad"])
        rms = metrics.get("twin_rms_mrad")
        if rms is None:
            add("max_twin_rms_mrad", False, "no plant truth in this run to score against")
        else:
            add("max_twin_rms_mrad", rms <= bound, f"twin RMS {rms:.3f} mrad (limit {bound})")
    kinds = set(metrics.get("event_kinds", []))
    for kind in checks.get("expect_events", []):
        add(f"expect_events:{kind}", kind in kinds, f"raised: {sorted(kinds) or 'none'}")
    for kind in checks.get("forbid_events", []):
        add(f"forbid_events:{kind}", kind not in kinds, f"raised: {sorted(kinds) or 'none'}")
    verdict = metrics.get("verdict")
    expected = []
    if "expect_verdict" in checks:
        expected.append(("expect_verdict", str(checks["expect_verdict"])))
    scenario = metrics.get("scenario", "")
    verdicts = checks.get("verdicts", {})
    if isinstance(verdicts, dict) and scenario in verdicts:
        expected.append((f"verdicts:{scenario}", str(verdicts[scenario])))
    for name, want in expected:
        if verdict is None:
            add(name, False, f"no what-if verdict in this job ({metrics.get('whatif_error') or 'none asked'})")
        else:
            add(name, verdict == want, f"verdict {verdict} (expected {want})")
    rows = metrics.get("variants")
    if "max_fail_fraction" in checks:
        bound = float(checks["max_fail_fraction"])
        if not rows:
            add(
                "max_fail_fraction",
                False,
                f"no what-if verdicts in this job ({metrics.get('whatif_error') or 'none asked'})",
            )
        else:
            failed = sum(r["status"] == "fail" for r in rows)
            add(
                "max_fail_fraction",
                failed / len(rows) <= bound,
                f"{failed} of {len(rows)} variants fail (limit {bound:g})",
            )
    for spec in checks.get("clearance", []):
        if spec.get("scenario") and spec["scenario"] != scenario:
            continue
        for name, ok, detail in _clearance_checks(spec, metrics):
            add(name, ok, detail)
    if "max_warnings" in checks:
        bound = int(checks["max_warnings"])
        add("max_warnings", len(notes) <= bound, f"{len(notes)} warnings (limit {bound})")
    if not out:
        add("ran", True, "no checks configured: the job ran")
    return out


def _clearance_checks(spec: dict[str, Any], metrics: dict[str, Any]) -> list[tuple[str, bool, str]]:
    """One ``[[checks.clearance]]`` entry against a job's what-if verdicts: ``[(name, ok, detail)]``."""
    variant = spec.get("variant") or ""
    label = f"clearance:{variant or 'every variant'}"
    asked = [k for k in ("min_distance_m", "collision") if spec.get(k) is not None]
    rows = metrics.get("variants")
    if not rows:
        why = f"no what-if verdict in this job ({metrics.get('whatif_error') or 'none asked'})"
        return [(f"{label}:{k}", False, why) for k in asked]
    if not metrics.get("scene"):
        why = 'no scene in this job\'s what-if: set scene = "<USD file>" in the group (docs/batch.md)'
        return [(f"{label}:{k}", False, why) for k in asked]
    chosen = [r for r in rows if not variant or r["name"] == variant]
    if not chosen:
        names = [r["name"] for r in rows[:6]]
        return [(f"{label}:{k}", False, f"no variant named {variant!r} (variants: {names}...)") for k in asked]
    out = []
    if spec.get("min_distance_m") is not None:
        bound = float(spec["min_distance_m"])
        closest = [r["closest"] for r in chosen if r.get("closest") and r["closest"].get("distance_m") is not None]
        if not closest:
            out.append((f"{label}:min_distance_m", False, "no clearance figure in the verdicts"))
        else:
            c = min(closest, key=lambda x: x["distance_m"])
            where = f"{c['link']} to {c['obstacle'] or '?'} at {c['time']:.2f} s"
            out.append(
                (
                    f"{label}:min_distance_m",
                    c["distance_m"] >= bound,
                    f"closest {c['distance_m']:.4f} m ({where}); at least {bound:g} m asked",
                )
            )
    if spec.get("collision") is not None:
        want = bool(spec["collision"])
        link, obstacle = spec.get("link") or "", spec.get("obstacle") or ""
        hits = [
            r["name"]
            for r in chosen
            if r.get("collision")
            and (not link or link in r["collision"]["links"])
            and (not obstacle or obstacle in r["collision"]["obstacles"] or obstacle in r["collision"]["links"])
        ]
        what = "collision" + (f" of {link}" if link else "") + (f" with {obstacle}" if obstacle else "")
        seen = sorted(
            {
                f"{lk}->{ob}"
                for r in chosen
                if r.get("collision")
                for lk in r["collision"]["links"][:1]
                for ob in r["collision"]["obstacles"] or ["?"]
            }
        )
        detail = (f"a {what} predicted in {len(hits)} variant(s) {hits[:3]}" if hits else f"no {what} predicted") + (
            f"; collisions seen: {seen[:4]}" if seen else ""
        )
        out.append((f"{label}:collision", bool(hits) == want, f"{detail} ({'expected' if want else 'forbidden'})"))
    return out


# ---- the twin over a stream of payloads ---------------------------------------------------------------------
def _twin_over(
    robot,
    payloads,
    *,
    robot_id: str,
    truth_at,
    whatif: str,
    whatif_at_s,
    samples: int,
    robot_path: str,
    hooks,
    scene="",
):
    """Feed ``payloads`` ([(topic, bytes, arrival ns)]) into the real pipeline on a virtual clock, tick the twin
    at its display rate with the health monitor, ask a what-if once, and score against ``truth_at`` (a
    function ``ticks [T] ns -> q [T, ndof] rad|m`` or None)."""
    from dataclasses import replace

    from ..health import HealthMonitor, HealthSettings
    from ..live import HealthService, LiveTwin, TwinConfig
    from ..runs import VirtualClock, error_stats
    from ..telemetry import TelemetryIngest, decode

    settings = TwinConfig()
    start, end = payloads[0][2], payloads[-1][2]
    clock = VirtualClock(start)
    ingest = TelemetryIngest(
        settings=replace(settings.telemetry, robot_id=robot_id),
        clock_settings=settings.clock,
        model=robot,
        now_ns=clock,
    )
    extra_sinks = list(hooks["sinks"](robot)) if hooks.get("sinks") else []
    on_tick = hooks.get("on_tick")
    twin = LiveTwin(
        robot, ingest, estimator_settings=settings.estimator, settings=settings.twin, sinks=extra_sinks, now_ns=clock
    )
    health = HealthService(HealthMonitor(robot, HealthSettings(), robot_id=robot_id or "robot"), now_ns=clock)
    twin.sample_listeners.append(health.on_sample)
    twin.services.append(health)
    period = int(round(1e9 / settings.twin.display_rate_hz))
    ticks = np.arange(start + period, end + period, period, dtype=np.int64)
    n = robot.ndof
    q = np.full((len(ticks), n), np.nan)
    hold = np.full((len(ticks), n), np.nan)
    last = np.full(n, np.nan)
    order = {name: i for i, name in enumerate(robot.dof_names)}
    ask_at = start + int(((end - start) / 2e9 if whatif_at_s is None else float(whatif_at_s)) * 1e9)
    metrics: dict[str, Any] = {}
    k = 0
    for i, t in enumerate(ticks):
        while k < len(payloads) and payloads[k][2] <= t:
            topic, payload, arrival = payloads[k]
            clock.set(arrival)
            ingest.on_payload(topic, payload, arrival)
            if topic.endswith("/joint_states"):
                try:
                    msg = decode(payload)
                    last = last.copy()
                    for j, name in enumerate(msg.names):
                        if name in order:
                            last[order[name]] = msg.position[j]
                except Exception:  # noqa: BLE001, S110 - the ingest counts what it rejects
                    pass
            k += 1
        clock.set(int(t))
        snapshot = twin.tick(int(t))
        q[i], hold[i] = snapshot.q, last
        if on_tick is not None:
            on_tick()
        if whatif != "none" and "verdict" not in metrics and "whatif_error" not in metrics and t >= ask_at:
            metrics.update(_ask(robot_path, snapshot, whatif, samples, scene))
    health.poll()
    status = twin.status()
    for sink in extra_sinks:
        sink.close()
    events = [e.to_dict() for e in health.monitor.events]
    metrics.update(
        {
            "duration_s": (end - start) * 1e-9,
            "display_ticks": len(ticks),
            "accepted": ingest.stats.accepted,
            "rejected": dict(ingest.stats.rejected_by_reason),
            "events": events,
            "event_kinds": sorted({e["kind"] for e in events}),
            "twin_errors": list(status.errors),
            "health_error": health.error or "",
        }
    )
    series: dict[str, Any] = {}
    if truth_at is not None:
        truth = truth_at(ticks)
        scored = ticks >= start + int(_WARMUP_S * 1e9)
        twin_stats = error_stats(q[scored] - truth[scored])
        hold_stats = error_stats(hold[scored] - truth[scored])
        metrics["twin_rms_mrad"] = twin_stats["rms"] * 1e3
        metrics["hold_rms_mrad"] = hold_stats["rms"] * 1e3
        metrics["twin_p99_mrad"] = twin_stats["p99"] * 1e3
        ratio = twin_stats["rms"] / hold_stats["rms"] if hold_stats["rms"] > 0 else float("nan")
        metrics["fidelity_ratio"] = None if not np.isfinite(ratio) else float(ratio)
        step = max(1, len(ticks) // _SERIES_POINTS)
        with np.errstate(invalid="ignore"):
            series = {
                "t_s": ((ticks[::step] - start) * 1e-9).round(4).tolist(),
                "twin_rad": _rms_rows(q[::step] - truth[::step]),
                "hold_rad": _rms_rows(hold[::step] - truth[::step]),
            }
    else:
        metrics["fidelity_ratio"] = None
    return metrics, series


def _rms_rows(err: np.ndarray) -> list[float | None]:
    with warnings.catch_warnings():  # rows before the first sample are all NaN: None in the plot
        warnings.simplefilter("ignore", RuntimeWarning)
        rows = np.sqrt(np.nanmean(err * err, axis=1)) if err.size else np.zeros(0)
    return [None if not np.isfinite(x) else round(float(x), 7) for x in rows]


def _ask(robot_path: str, snapshot, scenario_path: str, samples: int, scene: str = "") -> dict[str, Any]:
    from dataclasses import replace

    from ..whatif import align_to_snapshot, load_scenario

    try:
        scenario, _phase = align_to_snapshot(load_scenario(scenario_path), snapshot)
        report = _engine(robot_path, scene).run(replace(scenario, samples=samples), base=snapshot)
    except Exception as exc:  # noqa: BLE001 - judged by the checks, shown in the report
        return {"whatif_error": f"{type(exc).__name__}: {exc}", "scenario": Path(scenario_path).stem}
    return _verdict_metrics([v.to_dict() for v in report.variants], scenario_path, scene)


def _verdict_metrics(verdicts: list[dict[str, Any]], scenario_path: str, scene: str = "") -> dict[str, Any]:
    """What a job keeps of a what-if: the scenario, the overall verdict (unknown > fail > pass, as
    `WhatIfReport.status`) and `variant_rows`; ``scene`` when one was checked."""
    from ._sweep import variant_rows

    statuses = {v["status"] for v in verdicts}
    verdict = "unknown" if "unknown" in statuses else "fail" if "fail" in statuses else "pass"
    metrics = {"scenario": Path(scenario_path).stem, "verdict": verdict, "variants": variant_rows(verdicts)}
    if scene:
        metrics["scene"] = scene
    return metrics


# ---- the three kinds ----------------------------------------------------------------------------------------
def _run_replay(p: dict[str, Any], hooks: dict[str, Any]):
    from ..runs import load_recording

    robot = _robot(p["robot"])
    source = load_recording(
        p["recording"], robot.dof_names, robot_id=p["robot_id"], joint_map=p["joint_map"], ros2_topic=p["ros2_topic"]
    )
    truth_at = None
    if source.truth_rows:
        rows = source.truth_rows
        names = list(rows[0]["names"])
        t_truth = np.array([r["host_ns"] for r in rows], dtype=np.float64)
        q_truth = np.array([r["position"] for r in rows], dtype=np.float64)

        def truth_at(ticks):
            out = np.full((len(ticks), robot.ndof), np.nan)
            for j, name in enumerate(robot.dof_names):
                if name in names:
                    out[:, j] = np.interp(ticks, t_truth, q_truth[:, names.index(name)], left=np.nan, right=np.nan)
            return out

    robot_id = p["robot_id"] if source.kind == "twin_ext" else (p["robot_id"] or "ros2")
    metrics, series = _twin_over(
        robot,
        source.payloads,
        robot_id=robot_id,
        truth_at=truth_at,
        whatif=p["whatif"],
        whatif_at_s=p["whatif_at_s"],
        samples=p["samples"],
        robot_path=p["robot"],
        hooks=hooks,
        scene=p.get("scene", ""),
    )
    metrics["source"] = source.kind
    return metrics, list(source.warnings), series


def _run_emulate(p: dict[str, Any], hooks: dict[str, Any]):
    from ..config import load_toml
    from ..emulator import EmulatedRobot, ImpairmentProfile

    robot = _robot(p["robot"])
    profile = ImpairmentProfile.from_toml(p["impairments"])
    if p["faults"] != "none":
        faults = load_toml(p["faults"], what="fault profile").get("faults")
        if not faults:
            raise ValueError(f"fault profile {p['faults']} has no [faults] table; see config/faults/ for examples")
        mapping = profile.to_mapping()
        mapping["faults"] = faults
        profile = ImpairmentProfile.from_mapping(mapping, source=f"{Path(p['impairments']).name} + {p['faults']}")
    sim = EmulatedRobot(profile=profile).simulate(float(p["duration_s"]), seed=int(p["seed"]))
    names = list(sim.truth.joint_names)
    missing = [n for n in robot.dof_names if n not in names]
    if missing:
        raise ValueError(f"the emulated robot has no joints {missing} of {robot.source}; emulate jobs need a Panda USD")
    cols = [names.index(n) for n in robot.dof_names]
    payloads = [(d.topic, d.payload, d.arrival_ns) for d in sim.deliveries]

    def truth_at(ticks):
        q, _ = sim.truth.interpolate(ticks)
        return q[:, cols]

    metrics, series = _twin_over(
        robot,
        payloads,
        robot_id=sim.settings.robot_id,
        truth_at=truth_at,
        whatif=p["whatif"],
        whatif_at_s=p["whatif_at_s"],
        samples=p["samples"],
        robot_path=p["robot"],
        hooks=hooks,
        scene=p.get("scene", ""),
    )
    metrics["fault_truth"] = [getattr(f, "name", "") for f in getattr(sim.faults, "faults", ())] if sim.faults else []
    return metrics, [], series


def _run_whatif(p: dict[str, Any], hooks: dict[str, Any]):
    from dataclasses import replace

    from ..whatif import load_scenario

    scenario = load_scenario(p["scenario"])
    if p.get("samples") is not None:
        scenario = replace(scenario, samples=int(p["samples"]))
    if p.get("seed") is not None:
        scenario = replace(scenario, seed=int(p["seed"]))
    scene = p.get("scene", "")
    report = _engine(p["robot"], scene).run(scenario)
    return _verdict_metrics([v.to_dict() for v in report.variants], p["scenario"], scene), [], {}


# ---- sweeps: thousands of variants in batches --------------------------------------------------------------
def sweep_scenario(p: dict[str, Any]):
    """The whole sweep of a sweep job's params as one `Scenario`: the scenario file's command, base state and
    dt with every grid variant (`sweep_variants`), ``samples``/``seed``/``duration`` when given, and no
    recorded trajectories (``record_every = 0``: the verdicts come from the kernel; a scene records what the
    clearance check needs)."""
    from ._sweep import sweep_variants

    return _base_scenario(p).with_variants(sweep_variants(p))


def _base_scenario(p: dict[str, Any]):
    from dataclasses import replace

    from ..whatif import load_scenario

    changes: dict[str, Any] = {"record_every": 0}
    for key in ("samples", "seed"):
        if p.get(key) is not None:
            changes[key] = int(p[key])
    if p.get("duration") is not None:
        changes["duration"] = float(p["duration"])
    return replace(load_scenario(p["scenario"]), **changes)


def _sweep_duration(p: dict[str, Any], scenario, engine) -> float:
    """The simulated time of the whole sweep, s: fixed before splitting so that every batch runs as long as the
    whole sweep would (its slowest variant), which keeps each variant's verdict independent of its batch."""
    from ..whatif import Variant, plan_request

    slowest = min(p["grid"].get("speed_scale", [1.0]))
    one = scenario.with_variants([Variant("slowest", speed_scale=float(slowest))])
    return plan_request(one, ndof=engine.robot.ndof, settings=engine.settings, uncertain=False).duration


def _sweep_batch(p: dict[str, Any], index: int) -> dict[str, Any]:
    """Batch ``index`` of a sweep on this process's warm engine: ``{"index", "variants": [VariantVerdict dicts]}``."""
    from dataclasses import replace

    from ._sweep import sweep_variants

    engine = _engine(p["robot"], p.get("scene", ""))
    base = _base_scenario(p)
    size = int(p["batch"])
    part = sweep_variants(p, index * size, (index + 1) * size)  # only this slice is built
    if not part:
        raise ValueError(f"sweep batch {index} is beyond the sweep's variants")
    report = engine.run(replace(base, variants=tuple(part), duration=_sweep_duration(p, base, engine)))
    return {"index": index, "variants": [v.to_dict() for v in report.variants]}


def run_task(task: dict[str, Any]) -> dict[str, Any]:
    """One task of a pool worker or Ray actor: a whole job (``{"job": ...}``: `run_job`) or one batch of a sweep
    job (``{"job": ..., "batch": i}``: ``{"key", "index", "variants", "seconds"}`` or ``{"key", "index",
    "error"}``). Never raises."""
    job = task["job"]
    if "batch" not in task:
        return run_job(job)
    t0 = time.perf_counter()
    try:
        part = _sweep_batch(job["params"], int(task["batch"]))
    except Exception as exc:  # noqa: BLE001 - the sweep job fails with the reason
        return {"key": job.get("key", ""), "index": task["batch"], "error": f"{type(exc).__name__}: {exc}"}
    return {"key": job.get("key", ""), **part, "seconds": time.perf_counter() - t0}


def finish_sweep(job: dict[str, Any], parts: list[dict[str, Any]], seconds: float = 0.0) -> dict[str, Any]:
    """Merge a sweep job's batch results (`run_task`, any order) and judge the job: a `run_job` result."""
    errors = [f"batch {p['index']}: {p['error']}" for p in parts if p.get("error")]

    def merged() -> tuple[dict, list, dict]:
        if errors:
            raise RuntimeError("; ".join(errors[:3]) + (f" (+{len(errors) - 3} more)" if len(errors) > 3 else ""))
        return _sweep_metrics(job["params"], parts), [], {}

    result = _judged(job, merged)
    result["seconds"] = seconds or sum(p.get("seconds", 0.0) for p in parts)
    return result


def _sweep_metrics(p: dict[str, Any], parts: list[dict[str, Any]]) -> dict[str, Any]:
    from ._sweep import batch_count, merge_verdicts, verdicts_digest

    verdicts = merge_verdicts(parts, batch_count(p))
    metrics = _verdict_metrics(verdicts, p["scenario"], p.get("scene", ""))
    counts = {s: sum(v["status"] == s for v in verdicts) for s in ("pass", "fail", "unknown")}
    metrics.update(
        {
            "sweep_variants": len(verdicts),
            "batches": batch_count(p),
            "batch": int(p["batch"]),
            "counts": counts,
            "fail_fraction": counts["fail"] / len(verdicts) if verdicts else None,
            "verdicts_sha256": verdicts_digest(verdicts),
        }
    )
    return metrics


def _run_sweep(p: dict[str, Any], hooks: dict[str, Any]):
    """A sweep in this process: its batches one after another, merged (pool and Ray run them in parallel)."""
    from ._sweep import batch_count

    parts = [_sweep_batch(p, i) for i in range(batch_count(p))]
    return _sweep_metrics(p, parts), [], {}


_RUNNERS = {"replay": _run_replay, "emulate": _run_emulate, "whatif": _run_whatif, "sweep": _run_sweep}
