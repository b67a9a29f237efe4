# SPDX-License-Identifier: Apache-2.0
"""A fleet session's batched estimation (one `FleetKalman` step over every robot) gives each robot what its own
per-robot `TwinEstimator` gives on the same samples."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin_ext.fleet import FleetSession, FleetSettings
from twin_ext.live import load_config
from twin_ext.robot import default_robot_path, load_robot
from twin_ext.telemetry import JointState, encode_binary

RTOL, ATOL = 1e-9, 1e-12
"""Stated tolerance: the same per-joint arithmetic in another order (batched matmuls) differs only by rounding."""

ROBOTS = ("calm-1", "calm-2", "outlier", "step", "gap", "reorder", "burst")


@pytest.fixture(scope="module")
def panda():
    return load_robot(default_robot_path())


def _session(panda, batched: bool, clock: list[int]) -> FleetSession:
    config = load_config()
    config = dataclasses.replace(config, health=dataclasses.replace(config.health, enabled=False))
    fleet = FleetSettings(robots=ROBOTS, max_rate_hz=1e9, fuse_per_tick=3, batched_estimation=batched)
    return FleetSession(config, fleet=fleet, models={"franka_panda": panda}, now_ns=lambda: clock[0])


def _samples(panda, tick: int, t0_ns: int, per_tick: int, tick_ns: int):
    """(robot_id, payload, arrival ns) of one tick: 90 Hz sines; one robot sends an outlier, one a lasting step on a
    joint (gated until the joint restarts), one pauses 0.3 s (a gap beyond stale_after_s), one sends the middle
    sample of each tick one tick late (re-filtered), one sends 3x as many samples (several fused per tick)."""
    lower, upper = np.asarray(panda.lower), np.asarray(panda.upper)
    mid, amp = 0.5 * (lower + upper), 0.15 * (upper - lower)
    out = []
    for r, rid in enumerate(ROBOTS):
        count = 3 * per_tick if rid == "burst" else per_tick
        wanted = [(tick, k) for k in range(count)]
        if rid == "reorder":
            wanted = [(tick, 0), (tick, 2)] + ([(tick - 1, 1)] if tick else [])
        for at, k in wanted:
            seq = at * count + k
            stamp = t0_ns + at * tick_ns + (k + 1) * tick_ns // count - tick_ns
            t = stamp * 1e-9
            q = mid + amp * np.sin(1.3 * t + r + np.arange(panda.ndof))
            qd = amp * 1.3 * np.cos(1.3 * t + r + np.arange(panda.ndof))
            if rid == "outlier" and seq == 40:
                q[2] += 0.3
            if rid == "step" and seq >= 60:
                q[4] = np.clip(q[4] + 0.3, lower[4], upper[4])
            if rid == "gap" and 50 <= seq < 80:
                continue
            msg = JointState(rid, seq, stamp, tuple(panda.dof_names), q, qd)
            out.append(
                (rid, encode_binary(msg), t0_ns + tick * tick_ns - tick_ns + (k + 1) * tick_ns // count + 3_000_000)
            )
    return out


def test_batched_fleet_estimate_equals_the_per_robot_estimators_on_the_same_samples(panda):
    """7 robots, 120 ticks at 30 Hz, 3 samples each per tick (9 for one), the same payloads into a batched and a per-robot fleet session: every tick's
    snapshot (q, qd, qdd, covariance, health, age) agrees within relative 1e-9, and so do the estimators' counters
    (fused, late re-filtered, gated, joint restarts); the robots that misbehave exercised every path."""
    t0 = 10**12
    clocks = ([t0], [t0])
    batched, single = _session(panda, True, clocks[0]), _session(panda, False, clocks[1])
    assert all(r.batched for r in batched.robots.values()) and not any(r.batched for r in single.robots.values())
    tick_ns = 33_333_333
    for tick in range(120):
        now = t0 + tick * tick_ns
        for rid, payload, arrival in _samples(panda, tick, t0, 3, tick_ns):
            for session, clock in ((batched, clocks[0]), (single, clocks[1])):
                clock[0] = arrival
                session.router.on_payload(f"twin/v1/{rid}/joint_states", payload, arrival)
        for clock in clocks:
            clock[0] = now + 5_000_000
        a, b = dict(batched.advance(now + 5_000_000)), dict(single.advance(now + 5_000_000))
        for rid in ROBOTS:
            sa, sb = a[batched.robots[rid]], b[single.robots[rid]]
            assert sa.health == sb.health and sa.age_s == pytest.approx(sb.age_s, rel=RTOL), (tick, rid)
            for name in ("q", "qd", "qdd", "covariance"):
                np.testing.assert_allclose(getattr(sa, name), getattr(sb, name), rtol=RTOL, atol=ATOL,
                                           err_msg=f"{rid} {name} tick {tick}")  # fmt: skip
    assert batched.batch_error == "" and single.batched_samples == 0
    # The newest sample of each robot and tick and nearly every snapshot went through the batched steps (the
    # other samples of a tick, the first, the late ones and the one after the gap: each robot on its own).
    assert batched.batched_samples > 0.95 * 7 * 120 and batched.batched_snapshots > 0.95 * 7 * 120
    stats = {rid: (batched.robots[rid].twin.estimator.stats, single.robots[rid].twin.estimator.stats) for rid in ROBOTS}
    for rid, (sa, sb) in stats.items():
        assert dataclasses.asdict(sa) == dataclasses.asdict(sb), rid
    assert stats["outlier"][0].fused > 100 and sum(stats["outlier"][0].gated.values()) >= 1
    assert stats["step"][0].joint_resets >= 1
    assert stats["reorder"][0].fused_late > 10
    assert stats["burst"][0].fused == 360 and batched.robots["burst"].twin._thinned > 0  # 3 of 9 per tick
