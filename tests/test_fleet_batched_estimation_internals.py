# SPDX-License-Identifier: Apache-2.0
"""Internals of the fleet's batched estimation: robots of different models and without velocities share a batch
step, and a failing batch step leaves each robot to fuse on its own (same estimates)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import twin_ext.fleet._session as fleet_session
from twin_ext.emulator import LightFleet
from twin_ext.estimation import EstimatorSettings, TwinEstimator, TwinSnapshot
from twin_ext.fleet import FleetSession, FleetSettings
from twin_ext.fleet._batched_estimation import BatchedEstimator, fuse_deferred, prepare_snapshots
from twin_ext.live import load_config
from twin_ext.robot import default_robot_path, load_robot
from twin_ext.telemetry import JointState

REPO_UR5E = "usd/ur5e/ur5e.usda"


@pytest.fixture(scope="module")
def panda():
    return load_robot(default_robot_path())


def test_robots_of_two_models_with_and_without_velocity_are_batched_like_single_estimators(panda):
    """Two Pandas (9 joints), a UR5e (6) and a Panda that sends no velocity: grouped per model and measurement,
    each estimator's snapshot equals a plain `TwinEstimator`'s fed the same samples (relative 1e-9), and after
    the first sample every sample and snapshot goes through the batched steps."""
    from conftest import REPO

    ur5e = load_robot(str(REPO / REPO_UR5E))
    settings = EstimatorSettings()
    robots = [(panda, True), (panda, True), (ur5e, True), (panda, False)]
    batched = [BatchedEstimator(m, settings) for m, _ in robots]
    single = [TwinEstimator(m, settings) for m, _ in robots]
    t0 = 10**12
    for step in range(150):
        t_ns = t0 + step * 5_000_000
        for r, ((model, with_qd), b, s) in enumerate(zip(robots, batched, single, strict=True)):
            lower, upper = np.asarray(model.lower), np.asarray(model.upper)
            phase = 1.1 * t_ns * 1e-9 + r + np.arange(model.ndof)
            q = 0.5 * (lower + upper) + 0.15 * (upper - lower) * np.sin(phase)
            qd = 0.15 * (upper - lower) * 1.1 * np.cos(phase) if with_qd else None
            msg = JointState(f"r{r}", step, t_ns, tuple(model.dof_names), q, qd)
            b.deferring = True
            b.observe(msg.names, msg.position, msg.velocity, sample_ns=t_ns, arrival_ns=t_ns + 2_000_000)
            b.deferring = False
            s.observe(msg.names, msg.position, msg.velocity, sample_ns=t_ns, arrival_ns=t_ns + 2_000_000)
        fused = fuse_deferred(batched)
        shown = t_ns + 4_000_000
        prepared = prepare_snapshots(batched, shown)
        if step:
            assert fused == prepared == len(robots)
        for b, s in zip(batched, single, strict=True):
            sb, ss = b.snapshot(shown), s.snapshot(shown)
            assert sb.health == ss.health
            for name in ("q", "qd", "qdd", "covariance"):
                np.testing.assert_allclose(getattr(sb, name), getattr(ss, name), rtol=1e-9, atol=1e-12)
    for b, s in zip(batched, single, strict=True):
        assert dataclasses.asdict(b.stats) == dataclasses.asdict(s.stats)


def test_a_failing_batch_step_leaves_every_robot_fusing_on_its_own(panda, monkeypatch):
    """The batched fusion raises on every tick: the session says so in ``batch_error`` and each robot's estimate is
    still the per-robot session's (its deferred sample is fused in its own tick)."""
    ids = [f"f-{i}" for i in range(4)]
    clock = [10**12]
    config = load_config()
    config = dataclasses.replace(config, health=dataclasses.replace(config.health, enabled=False))

    def session(batched: bool) -> FleetSession:
        fleet = FleetSettings(robots=tuple(ids), max_rate_hz=1e9, batched_estimation=batched)
        return FleetSession(config, fleet=fleet, models={"franka_panda": panda}, now_ns=lambda: clock[0])

    def boom(estimators):
        raise RuntimeError("injected")

    monkeypatch.setattr(fleet_session, "fuse_deferred", boom)
    a, b = session(True), session(False)
    payloads = LightFleet(ids, panda, "mqtt://127.0.0.1:1", rate_hz=200.0)
    for tick in range(40):
        now = 10**12 + tick * 33_333_333
        for j in range(7):
            stamp = now + j * 4_761_904
            clock[0] = stamp + 1_000_000
            for rid in ids:
                for s in (a, b):
                    s.router.on_payload(
                        f"twin/v1/{rid}/joint_states", payloads.payload(rid, tick * 7 + j, stamp, j), clock[0]
                    )
        clock[0] = now + 36_000_000
        sa, sb = dict(a.advance(clock[0])), dict(b.advance(clock[0]))
        for rid in ids:
            x, y = sa[a.robots[rid]], sb[b.robots[rid]]
            np.testing.assert_allclose(x.q, y.q, rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(x.covariance, y.covariance, rtol=1e-9, atol=1e-12)
    assert "injected" in a.batch_error and a.batched_samples == 0
    assert all(a.robots[rid].twin.estimator.stats.fused == b.robots[rid].twin.estimator.stats.fused > 30 for rid in ids)


def test_a_robot_bridging_a_gap_with_its_reference_takes_the_per_robot_snapshot(panda):
    """In a gap beyond coast_after_s a robot with reference channels is not prepared by the batch (its reference
    would be ignored there): its snapshot equals a plain `TwinEstimator`'s; a robot without one is still batched."""
    settings = EstimatorSettings()
    batched = [BatchedEstimator(panda, settings) for _ in range(2)]
    single = TwinEstimator(panda, settings)
    n = panda.ndof
    t0 = 10**12
    for step in range(60):
        t_ns = t0 + step * 5_000_000
        q = 0.3 * np.sin(1.3 * t_ns * 1e-9 + np.arange(n)) * (np.arange(n) < 7)
        qd = 0.39 * np.cos(1.3 * t_ns * 1e-9 + np.arange(n)) * (np.arange(n) < 7)
        for est in (*batched, single):
            est.observe(panda.dof_names, q, qd, sample_ns=t_ns, arrival_ns=t_ns)
        for est in (batched[0], single):
            est.observe_reference(panda.dof_names, q, qd, sample_ns=t_ns)
    shown = t_ns + 600_000_000  # 0.6 s into a gap
    assert prepare_snapshots(batched, shown) == 1
    np.testing.assert_allclose(batched[0].snapshot(shown).q, single.snapshot(shown).q, rtol=0, atol=1e-12)


def test_prepared_snapshots_are_read_only_and_equal_to_ones_made_by_the_constructor(panda):
    """The batched step makes its snapshots without `TwinSnapshot`'s checks: each has the constructor's fields,
    shapes and values, and read-only arrays that no later batch step changes (the robots' rows are not shared)."""
    settings = EstimatorSettings()
    batched = [BatchedEstimator(panda, settings) for _ in range(3)]
    mid, t0 = 0.5 * (np.asarray(panda.lower) + np.asarray(panda.upper)), 10**12
    kept = []
    for step in range(4):
        t_ns = t0 + step * 5_000_000
        for r, e in enumerate(batched):
            e.deferring = True
            q = mid + 0.001 * r + 0.0001 * step
            e.observe(panda.dof_names, q, np.zeros(panda.ndof), sample_ns=t_ns, arrival_ns=t_ns + 1_000_000)
            e.deferring = False
        fuse_deferred(batched)
        assert prepare_snapshots(batched, t_ns + 2_000_000) == 3
        kept.append([e.snapshot(t_ns + 2_000_000) for e in batched])
    for snaps in kept:
        for snapshot in snaps:
            rebuilt = TwinSnapshot(**{f.name: getattr(snapshot, f.name) for f in dataclasses.fields(TwinSnapshot)})
            assert type(snapshot) is TwinSnapshot and vars(snapshot).keys() == vars(rebuilt).keys()
            for name in ("q", "qd", "qdd", "covariance"):
                array = getattr(snapshot, name)
                assert not array.flags.writeable
                with pytest.raises(ValueError):
                    array[0] = 1.0
    first, last = kept[1], kept[-1]  # the first sample initialises each robot on its own; then batched
    for r in range(3):  # each robot's own values (the same motion, offset), unchanged by the later steps
        np.testing.assert_allclose(first[r].q - first[0].q, 0.001 * r, atol=1e-9)
        np.testing.assert_allclose(last[r].q - last[0].q, 0.001 * r, atol=1e-9)
        assert first[r].q[0] < last[r].q[0]
