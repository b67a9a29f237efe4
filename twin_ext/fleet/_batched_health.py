# SPDX-License-Identifier: Apache-2.0
"""Health judged for many fleet robots in one batched pass (`BatchedHealthMonitor`) instead of one after another.

Each robot keeps its own `HealthService` (samples, thinning, cost per sample, publishing, summaries) and its own
`HealthMonitor` (all health state); only the monitors' arithmetic runs batched across the robots that share a
model. What one robot gets — events, summaries, MQTT messages — is what `FleetRobot.judge_health` would have
given it (to rounding), and a robot whose judgement fails stops judging alone, as it would there. Between the
robots it hands in and takes back the pass lets other threads run now and then (`BatchedHealthMonitor.
let_others_run`), as the engine does inside.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..health import BatchedHealthMonitor

__all__ = ["judge_fleet_health"]


def judge_fleet_health(robots: Sequence[Any], engine: BatchedHealthMonitor) -> dict[str, list[dict]]:
    """Judge the buffered samples of every robot in ``robots`` (`FleetRobot`) in one batched pass.

    Returns:
        ``{robot_id: new events (dicts, as FleetRobot.judge_health returns them)}`` for every robot given.
    """
    out: dict[str, list[dict]] = {}
    judged: list[Any] = []
    samples: list[Any] = []
    for robot in robots:
        engine.let_others_run()
        out[robot.robot_id] = []
        if robot.health is None:
            continue
        try:
            batch = robot.health.take_samples()
        except Exception as exc:  # noqa: BLE001 - one robot's failure must not stop the others' health
            robot.failures += 1
            robot.error = f"health failed: {exc!r}"
            continue
        if batch is None:
            out[robot.robot_id] = robot.new_health_events()
        else:
            judged.append(robot)
            samples.append(batch)
    if not judged:
        return out
    monitors = [robot.health.monitor for robot in judged]
    started = time.perf_counter()
    try:
        results = engine.observe(monitors, samples)
    except Exception as exc:  # noqa: BLE001 - a defect of the batch itself: judge each robot alone
        engine.last_error = f"the batched health judgement failed, judged robot by robot: {exc!r}"
        results = []
        for monitor, batch in zip(monitors, samples, strict=True):
            try:
                results.append(monitor.observe(*batch))
            except Exception as robot_exc:  # noqa: BLE001
                results.append(robot_exc)
    seconds = time.perf_counter() - started
    total = sum(len(batch[0]) for batch in samples)
    for robot, batch, result in zip(judged, samples, results, strict=True):
        engine.let_others_run()
        try:
            if isinstance(result, Exception):
                robot.health.judgement_failed(result)
            else:  # each robot is charged its share of the batch's time (its tick budget learns from it)
                n = len(batch[0])
                robot.health.judged(result, samples=n, seconds=seconds * n / max(total, 1))
        except Exception as exc:  # noqa: BLE001
            robot.failures += 1
            robot.error = f"health failed: {exc!r}"
            continue
        out[robot.robot_id] = robot.new_health_events()
    return out
