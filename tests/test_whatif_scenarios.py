# SPDX-License-Identifier: Apache-2.0
"""Scenarios end to end: TOML files, base states from twin snapshots, Monte-Carlo sampling, verdicts and reports."""

from __future__ import annotations

import dataclasses
import json
import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from twin_ext.estimation import Health, TwinSnapshot
from twin_ext.robot import JointTrajectory, load_robot
from twin_ext.whatif import (
    BaseState,
    Scenario,
    TargetStream,
    TrajectoryCommand,
    Variant,
    WhatIfEngine,
    WhatIfService,
    load_scenario,
    wilson_interval,
)

REPO = Path(__file__).resolve().parents[1]
SCENARIOS = sorted((REPO / "config/scenarios").glob("*.toml"))
HOME = np.array([0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854, 0.04, 0.04])


@cache
def _engine() -> WhatIfEngine:
    """The default configuration the twin uses: worker pool, float64, specialised kernels."""
    return WhatIfEngine(load_robot(REPO / "usd/franka_panda/panda.usda"))


def _snapshot(health: Health, *, std: float = 1e-3, age: float = 0.01) -> TwinSnapshot:
    robot = _engine().robot
    cov = np.diag(np.full(2 * robot.ndof, std**2))
    return TwinSnapshot(t_ns=0, q=HOME.copy(), qd=np.zeros(robot.ndof), qdd=np.zeros(robot.ndof), covariance=cov,
                        health=health, model=robot, age_s=age)  # fmt: skip


def _small_scenario(**kwargs) -> Scenario:
    traj = JointTrajectory(["joint1", "joint2"], [0.0, 0.6], [[0.0, -0.7854], [0.3, -0.6]])
    return Scenario("small", TrajectoryCommand(traj), **kwargs)


@pytest.mark.parametrize("path", SCENARIOS, ids=[p.stem for p in SCENARIOS])
def test_every_shipped_scenario_parses_and_runs(path):
    """Each config/scenarios/*.toml parses, names only the Panda's joints and links, and runs to a report."""
    scenario = Scenario.from_toml(path)
    assert scenario.variants and scenario.robot in ("", "panda")
    report = _engine().run(dataclasses.replace(scenario, samples=2))
    assert [v.name for v in report.variants] == [v.name for v in scenario.variants]
    assert report.status in ("pass", "fail")
    assert all(v.samples >= 1 for v in report.variants)


def test_the_pick_and_place_what_if_finds_the_heavy_fast_variant_saturates_joint2():
    """The shipped pick-place scenario: the program as written passes; at x1.5 with a 3 kg part joint2's drive
    saturates in every sample (P = 1), reported with time-to-violation, the joint and a text summary."""
    report = _engine().run(load_scenario("pick_place_payload"))
    nominal = report.variant("as programmed")
    assert nominal.status == "pass" and nominal.violations == 0 and nominal.time_to_violation is None
    heavy = report.variant("x1.5 speed + 3 kg part")
    assert heavy.status == "fail" and heavy.p_violation == 1.0
    assert "joint2" in heavy.by_kind["effort"].joints
    assert 0.0 <= heavy.time_to_violation < report.horizon
    assert heavy.ci == pytest.approx(wilson_interval(heavy.violations, heavy.samples, 0.95))
    assert heavy.min_effort_margin["joint2"] < 0 < nominal.min_effort_margin["joint2"]
    text = report.summary()
    for v in report.variants:
        assert v.name[:27] in text
    assert "FAIL" in text and "joint2" in text


@pytest.mark.parametrize("health", [Health.STALE, Health.LOST])
def test_a_stale_or_lost_twin_answers_unknown_never_pass(health):
    """From a snapshot that is stale or lost every variant is 'unknown' (with the reason), even ones that would pass."""
    report = _engine().run(_small_scenario(samples=4), base=_snapshot(health, age=2.5))
    assert report.status == "unknown" and report.base_health == health.value
    for v in report.variants:
        assert v.status == "unknown"
        assert health.value in v.reason and "2.50 s ago" in v.reason
    ok = _engine().run(_small_scenario(samples=4), base=_snapshot(Health.OK))
    assert ok.status == "pass" and ok.base_health == "ok"


def test_monte_carlo_samples_start_at_the_mean_and_spread_with_the_covariance():
    """Sample 0 starts at the mean; the others follow the covariance; P(violation) and its Wilson interval count them.
    Here joint1 (drives off, so nothing brakes it) starts at 1.8 +- 0.5 rad/s against a 2.175 rad/s limit: about
    a quarter of the samples violate."""
    robot = _engine().robot
    qd = np.zeros(robot.ndof)
    qd[0] = 1.8
    std_qd = np.zeros(robot.ndof)
    std_qd[0] = 0.5
    base = BaseState.from_std(HOME, qd, std_q=0.0, std_qd=std_qd)
    scenario = _small_scenario(
        samples=200, seed=3, duration=0.05, base=base, variants=(Variant("coasting", kp_scale=0.0, kd_scale=0.0),)
    )
    report = _engine().run(scenario)
    v = report.variants[0]
    assert v.samples == 200 and 20 < v.violations < 80  # P(z > 0.75) = 0.23
    assert v.by_kind["velocity"].joints == ("joint1",)
    assert v.ci == pytest.approx(wilson_interval(v.violations, 200, 0.95))
    assert v.ci[0] < v.p_violation < v.ci[1]
    assert v.nominal == ()  # sample 0 starts at the mean (1.8 rad/s), inside the limit
    again = _engine().run(scenario)
    assert again.variants[0].violations == v.violations  # seeded: reproducible


def test_wilson_interval_matches_the_closed_form():
    """Wilson score intervals for 0/16, 16/16 and 5/20 at 95 %."""
    low, high = wilson_interval(0, 16)
    assert low == 0.0 and high == pytest.approx(0.19360, abs=1e-5)
    low, high = wilson_interval(16, 16)
    assert high == 1.0 and low == pytest.approx(0.80639, abs=1e-5)
    low, high = wilson_interval(5, 20)
    assert (low, high) == pytest.approx((0.11186, 0.46870), abs=1e-5)


def test_a_target_stream_command_is_resampled_to_the_rollout_step():
    """A 100 Hz target stream for two joints is interpolated to the 2 ms step; the arm follows it closely."""
    t = np.arange(51) * 0.01
    targets = np.stack([0.1 * (1 - np.cos(2 * np.pi * t)), -0.7854 + 0.05 * t**2], axis=1)  # starts at rest
    velocities = np.stack([0.1 * 2 * np.pi * np.sin(2 * np.pi * t), 0.1 * t], axis=1)
    stream = TargetStream(("joint1", "joint2"), targets, 0.01, velocities)
    report = _engine().run(Scenario("stream", stream, samples=1, base=BaseState(HOME, np.zeros(9))))
    v = report.variants[0]
    assert v.status == "pass"
    assert v.max_tracking_error["joint1"] < 0.01
    assert report.steps == int(round((0.5 + _engine().settings.settle_time) / 0.002))


def test_speed_scale_and_duration_follow_the_command():
    """The horizon covers the slowest variant's command plus the settle time; a faster variant tracks worse."""
    scenario = _small_scenario(samples=1, variants=(Variant("slow", speed_scale=0.5), Variant("fast", speed_scale=3.0)))
    report = _engine().run(scenario)
    assert report.horizon == pytest.approx(0.6 / 0.5 + _engine().settings.settle_time)
    slow, fast = report.variant("slow"), report.variant("fast")
    assert fast.max_tracking_error["joint1"] > slow.max_tracking_error["joint1"]


def test_the_report_json_is_complete_and_plain():
    """to_json gives plain JSON (non-finite numbers as null) with the schema tag, statuses and every variant."""
    report = _engine().run(_small_scenario(samples=3, variants=(Variant("a"), Variant("b", kp_scale=0.5))))
    doc = json.loads(report.to_json())
    assert doc["schema"] == "twin_ext.whatif.report/1" and doc["robot"] == "panda"
    assert [v["name"] for v in doc["variants"]] == ["a", "b"]
    v = doc["variants"][0]
    for key in (
        "status",
        "p_violation",
        "ci",
        "by_kind",
        "time_to_violation",
        "worst",
        "max_tracking_error",
        "min_position_margin",
        "min_velocity_margin",
        "min_effort_margin",
        "command_outside_limits",
    ):
        assert key in v
    assert v["time_to_violation"] is None
    json.dumps(doc, allow_nan=False)  # nothing non-finite left


def test_the_service_answers_json_requests_and_scenario_names():
    """WhatIfService.evaluate takes a JSON-like request (the whatif/request payload) or a shipped scenario name."""
    service = WhatIfService(_engine())
    request = {
        "name": "asked over MQTT", "samples": 2, "duration": 0.4,
        "command": {"joint_names": ["joint1"], "waypoint": [{"t": 0.0, "q": [0.0]}, {"t": 0.3, "q": [0.2]}]},
        "variant": [{"name": "as is"}, {"name": "heavy", "payload": [{"link": "hand", "mass": 2.0}]}],
    }  # fmt: skip
    report = service.evaluate(_snapshot(Health.OK), request)
    assert report.scenario == "asked over MQTT" and len(report.variants) == 2 and report.base_health == "ok"
    stale = service.evaluate(_snapshot(Health.STALE), request)
    assert stale.status == "unknown"
    with pytest.raises(Exception, match="no scenario named 'nope'"):
        service.evaluate(None, "nope")


def test_commands_outside_the_limits_are_flagged_in_the_verdict():
    """A trajectory that sends joint4 past its limit is run (not refused) and flagged; the limit violation is reported."""
    traj = JointTrajectory(["joint4"], [0.0, 0.5], [[-2.3562], [0.2]])
    report = _engine().run(Scenario("past the stop", TrajectoryCommand(traj), samples=1))
    v = report.variants[0]
    assert v.command_outside_limits == ("joint4",)
    assert v.status == "fail" and "joint4" in v.by_kind["position"].joints
    assert math.isfinite(v.time_to_violation)


def test_the_report_draws_itself_as_a_valid_svg_chart():
    """to_svg gives well-formed SVG with one labelled row per variant and a marker where a variant first fails."""
    import xml.dom.minidom

    report = _engine().run(load_scenario("speed_payload_check"))
    svg = report.to_svg()
    doc = xml.dom.minidom.parseString(svg)
    texts = [t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild]
    for v in report.variants:
        assert v.name in texts
    assert len(doc.getElementsByTagName("circle")) == sum(v.time_to_violation is not None for v in report.variants) == 1


def test_the_scenario_example_in_the_docs_is_valid():
    """The annotated TOML example in docs/whatif.md parses into a Scenario and runs on the Panda."""
    import tomllib

    text = (REPO / "docs/whatif.md").read_text()
    block = text.split("```toml\n", 1)[1].split("```", 1)[0]
    scenario = Scenario.from_mapping(
        tomllib.loads(block), source="docs/whatif.md", base_dir=REPO / "config" / "scenarios"
    )
    assert [v.name for v in scenario.variants] == ["as programmed", "x1.5 speed + 3 kg part"]
    report = _engine().run(dataclasses.replace(scenario, samples=2))
    assert report.variant("as programmed").status == "pass"
