# SPDX-License-Identifier: Apache-2.0
"""A fleet session's batched estimation (one `FleetKalman` step over every robot) gives each robot what its own
per-robot `TwinEstimator` gives on the same samples."""

from __future__ import annotations

import dataclasses
import time

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


def _session(panda, batched: bool, clock: list[int], fusion_rate_hz: float = 0.0) -> FleetSession:
    config = load_config()
    config = dataclasses.replace(config, health=dataclasses.replace(config.health, enabled=False))
    fleet = FleetSettings(robots=ROBOTS, max_rate_hz=1e9, fuse_per_tick=3, batched_estimation=batched,
                          fusion_rate_hz=fusion_rate_hz)  # fmt: skip
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


def _assert_same_snapshots(batched, single, t_ns: int, tick: int) -> None:
    """Advance both sessions to ``t_ns``: every robot's snapshot agrees (health, age, q, qd, qdd, covariance)."""
    a, b = dict(batched.advance(t_ns)), dict(single.advance(t_ns))
    for rid in ROBOTS:
        sa, sb = a[batched.robots[rid]], b[single.robots[rid]]
        assert sa.health == sb.health and sa.age_s == pytest.approx(sb.age_s, rel=RTOL), (tick, rid)
        for name in ("q", "qd", "qdd", "covariance"):
            np.testing.assert_allclose(getattr(sa, name), getattr(sb, name), rtol=RTOL, atol=ATOL,
                                       err_msg=f"{rid} {name} tick {tick}")  # fmt: skip


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
        _assert_same_snapshots(batched, single, now + 5_000_000, tick)
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


def test_fusion_on_arrival_equals_the_per_robot_estimators_and_commits_each_sample_at_its_step(panda):
    """The same 7 robots with a fusion step (`fuse_arrivals`) after every third payload and the display tick at 30 Hz:
    the batched and the per-robot session agree within relative 1e-9 on every robot's committed state after every
    step (`FleetRobot.fused`: x, P, time, read-only) and on every tick's snapshot and counter; each committed state
    is at the estimator's newest fused sample; every recorded receive -> state latency is under a display period and
    most samples are committed by a step, not the tick (virtual clock); more samples are fused than the ticks take."""
    t0 = 10**12
    clocks = ([t0], [t0])
    batched, single = _session(panda, True, clocks[0], 500.0), _session(panda, False, clocks[1], 500.0)
    tick_ns = 33_333_333
    steps = 0
    for tick in range(120):
        now = t0 + tick * tick_ns
        payloads = sorted(_samples(panda, tick, t0, 3, tick_ns), key=lambda p: p[2])
        for k, (rid, payload, arrival) in enumerate(payloads):
            for session, clock in ((batched, clocks[0]), (single, clocks[1])):
                clock[0] = arrival
                session.router.on_payload(f"twin/v1/{rid}/joint_states", payload, arrival)
            if k % 3 == 2 and arrival < now + 5_000_000:
                step_ns = arrival + 200_000
                fused = [s.fuse_arrivals(step_ns) for s in (batched, single)]
                assert fused[0] == fused[1] > 0
                steps += 1
                for rid in ROBOTS:
                    fa, fb = batched.robots[rid].fused, single.robots[rid].fused
                    assert (fa is None) == (fb is None), (tick, rid)
                    if fa is None:
                        continue
                    assert fa.t_ns == fb.t_ns and fa.arrival_ns == fb.arrival_ns, (tick, rid)
                    np.testing.assert_allclose(fa.x, fb.x, rtol=RTOL, atol=ATOL, err_msg=f"{rid} x step {steps}")
                    np.testing.assert_allclose(fa.P, fb.P, rtol=RTOL, atol=ATOL, err_msg=f"{rid} P step {steps}")
                    assert not fa.x.flags.writeable and not fa.P.flags.writeable
                    est = batched.robots[rid].twin.estimator
                    assert fa.t_ns == est.filter_time_ns  # the newest fused sample's time, committed at once
        for clock in clocks:
            clock[0] = now + 5_000_000
        _assert_same_snapshots(batched, single, now + 5_000_000, tick)
    assert steps > 500 and batched.fusion_steps == single.fusion_steps == steps
    assert batched.batch_error == "" and batched.batched_samples > 0.9 * batched.fusion_steps
    for rid in ROBOTS:
        sa, sb = batched.robots[rid].twin.estimator.stats, single.robots[rid].twin.estimator.stats
        assert dataclasses.asdict(sa) == dataclasses.asdict(sb), rid
        lat = np.asarray(batched.robots[rid].latencies_ns)
        assert lat.size and (lat >= 0).all() and lat.max() < tick_ns, rid
    # Committed by the steps, not by the 30 Hz tick: with ticks only, calm samples wait 2-30 ms (median ~16 ms).
    assert np.percentile(np.asarray(batched.robots["calm-1"].latencies_ns), 50) < 12_000_000
    # More samples fused than the ticks alone take (fuse_per_tick = 3 of the burst robot's 9 per tick: 360).
    assert batched.robots["burst"].twin.estimator.stats.fused > 3 * 120


def test_a_running_fleet_commits_samples_between_display_ticks(panda, mosquitto_broker):
    """A running session ticking every 5 s: payloads routed as the network thread routes them are in the robots'
    committed state (`FleetRobot.fused`, newest arrival) without a display tick, by the fusion thread."""
    config = load_config()
    config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, url=mosquitto_broker.url),
                                 health=dataclasses.replace(config.health, enabled=False))  # fmt: skip
    fleet = FleetSettings(robots=ROBOTS[:2], max_rate_hz=1e9, display_rate_hz=0.2, fusion_rate_hz=500.0)
    session = FleetSession(config, fleet=fleet, models={"franka_panda": panda})
    session.run_in_background()
    try:
        time.sleep(0.2)  # the first tick (at start) is behind us
        ticks = session.ticks
        base = time.monotonic_ns()

        def route(rid: str, k: int) -> None:
            msg = JointState(
                rid, k, base + k * 100_000, tuple(panda.dof_names), np.zeros(panda.ndof), np.zeros(panda.ndof)
            )
            session.router.on_payload(f"twin/v1/{rid}/joint_states", encode_binary(msg), time.monotonic_ns())

        for k in range(3):
            for rid in ROBOTS[:2]:
                route(rid, k)
        last = {rid: session.robots[rid].ingest.latest.arrival_ns for rid in ROBOTS[:2]}

        def committed() -> dict:
            return {rid: getattr(session.robots[rid].fused, "arrival_ns", None) for rid in ROBOTS[:2]}

        end = time.monotonic() + 3.0
        while time.monotonic() < end and committed() != last:
            time.sleep(0.005)
        assert committed() == last
        assert session.ticks == ticks and session.fusion_steps >= 1 and session.batch_error == ""
    finally:
        session.stop()


def test_fusion_steps_and_display_ticks_racing_over_arrivals_never_raise(panda):
    """The network thread routes, a fusion thread fuses and the display thread advances, all at once for 1.5 s with
    a tiny switch interval (so the threads interleave inside every step): no step or tick raises (the tick once
    counted the arrivals outside the estimation lock and popped them after the fusion step had, IndexError), and
    every robot's newest routed sample ends up fused."""
    import sys
    import threading

    clock = [time.monotonic_ns()]
    session = _session(panda, batched=True, clock=clock, fusion_rate_hz=500.0)
    names, zeros = tuple(panda.dof_names), np.zeros(panda.ndof)
    errors: list[BaseException] = []
    stop = threading.Event()

    def guarded(body):
        def run() -> None:
            try:
                while not stop.is_set():
                    body()
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
                stop.set()

        return threading.Thread(target=run, daemon=True)

    seq = [0]

    def route() -> None:
        k = seq[0] = seq[0] + 1
        clock[0] += 100_000
        for rid in ROBOTS:
            msg = JointState(rid, k, clock[0], names, zeros, zeros)
            session.router.on_payload(f"twin/v1/{rid}/joint_states", encode_binary(msg), clock[0])

    threads = [guarded(route), guarded(session.fuse_arrivals), guarded(lambda: session.advance())]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        for thread in threads:
            thread.start()
        stop.wait(1.5)
        stop.set()
        for thread in threads:
            thread.join(5.0)
    finally:
        sys.setswitchinterval(interval)
    assert errors == [], errors
    assert seq[0] > 100 and session.fusion_steps > 10
    session.advance()
    for rid in ROBOTS:
        robot = session.robots[rid]
        assert robot.twin.estimator.stats.fused > 0 and robot.ingest.latest.message.seq == seq[0], rid


def test_a_failing_display_tick_does_not_stop_the_display_loop(panda):
    """A running session whose ticks raise twice goes on ticking; the failures are counted and the last is kept."""
    clock = [time.monotonic_ns()]
    config = load_config()
    config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, url="mqtt://127.0.0.1:1"))
    fleet = FleetSettings(robots=ROBOTS[:2], display_rate_hz=100.0)
    session = FleetSession(config, fleet=fleet, models={"franka_panda": panda}, now_ns=lambda: clock[0])
    real_advance, failures = session.advance, [2]

    def advance(now_ns=None, **kwargs):
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("a broken robot model")
        return real_advance(now_ns, **kwargs)

    session.advance = advance
    session.run_in_background()
    try:
        end = time.monotonic() + 5.0
        while time.monotonic() < end and session.ticks < 5:
            time.sleep(0.01)
    finally:
        session.stop()
    assert session.ticks >= 5
    assert session.tick_failures == 2
    assert session.tick_error.startswith("tick failed") and "a broken robot model" in session.tick_error
    assert any("2 display/health loop steps failed" in p and "a broken robot model" in p for p in session.problems())
