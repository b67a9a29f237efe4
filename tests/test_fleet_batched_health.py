# SPDX-License-Identifier: Apache-2.0
"""`[fleet] batched_health`: a fleet session that judges its robots' health in batched passes gives every robot
the health events and summaries the robot-by-robot session gives it, and one robot's broken monitor or garbage
telemetry stays its own.

Oracle: the same `FleetSession` with ``batched_health = false`` (each robot's `HealthService.poll`, itself the
per-robot `HealthMonitor`), fed the same payloads at the same twin-clock instants (a simulated clock: no
real-time thinning; health every tick, so both judge the same samples at the same ticks — with a longer
``health_every_s`` the two stagger the robots differently, by design). Tolerance: relative 1e-9, as tests/test_health_batched.py
(rounding of stacked matrix products; a wrong step is off by far more).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from test_health_batched import _close, _event_doc

from twin_ext.emulator import LightFleet
from twin_ext.fleet import FleetSession, FleetSettings
from twin_ext.live import load_config

RATE_HZ = 200.0


def _sessions(panda, ids, clock):
    fleet = FleetSettings(robots=tuple(ids), max_rate_hz=1e9, health_every_s=1 / 30, fusion_rate_hz=0.0)
    make = lambda f: FleetSession(load_config(), fleet=f, models={"franka_panda": panda}, now_ns=lambda: clock[0])  # noqa: E731
    return make(fleet), make(dataclasses.replace(fleet, batched_health=False))


def _feed(sessions, ids, payloads, clock, seconds, *, garbage=()):
    tick_ns = int(1e9 / 30.0)
    period_ns = int(1e9 / RATE_HZ)
    base = 10**12
    j = 0
    for tick in range(int(seconds * 30)):
        end = base + (tick + 1) * tick_ns
        while base + j * period_ns < end:
            stamp = base + j * period_ns
            for r, rid in enumerate(ids):
                body = b"\x00garbage" * 5 if rid in garbage else payloads.payload(rid, j, stamp, j + 37 * r)
                for session in sessions:
                    session.router.on_payload(f"twin/v1/{rid}/joint_states", body, stamp + 10**6)
            j += 1
        clock[0] = end + 2 * 10**6
        for session in sessions:
            session.tick(clock[0])


def test_batched_fleet_health_equals_robot_by_robot(panda):
    """Eight robots on different phases of the program, 200 Hz for 8 s, health every tick: each robot's summary
    (external torque, z, thresholds, friction, bias, payload, notes) and events are equal within relative 1e-9
    with and without [fleet] batched_health, the batched session judged in passes of several robots, and no
    batched step fell back."""
    ids = [f"bh-{i}" for i in range(8)]
    clock = [10**12]
    batched, alone = _sessions(panda, ids, clock)
    _feed((batched, alone), ids, LightFleet(ids, panda, "mqtt://127.0.0.1:1", rate_hz=RATE_HZ), clock, 8.0)
    assert batched.health_engine.batched_calls > 0 and batched.health_engine.fallbacks == 0
    for rid in ids:
        a, b = alone.robots[rid].health, batched.robots[rid].health
        assert a.error is None and b.error is None
        assert a.monitor.samples == b.monitor.samples > 1000
        _close(a.monitor.summary().to_dict(), b.monitor.summary().to_dict(), rid)
        _close([_event_doc(e) for e in a.events], [_event_doc(e) for e in b.events], f"{rid} events")
        np.testing.assert_allclose(b.monitor.identifier.rls.theta, a.monitor.identifier.rls.theta, rtol=1e-9, atol=1e-9)


def test_a_broken_monitor_or_garbage_robot_does_not_disturb_the_fleets_batched_health(panda):
    """One robot's monitor raises on every judgement and another sends garbage: the broken robot's health stops
    with its error (as robot by robot), the garbage robot is never judged, and the other robots' summaries are
    those of a session without the two (relative 1e-9)."""
    ids = [f"ok-{i}" for i in range(4)]
    bad = ["broken", "garbage"]
    clock = [10**12]
    batched, _ = _sessions(panda, ids + bad, clock)
    reference, _ = _sessions(panda, ids, clock)

    def explode(*_args, **_kwargs):
        raise RuntimeError("a defect in this robot's monitor")

    batched.robots["broken"].health.monitor._begin = explode
    payloads = LightFleet(ids + bad, panda, "mqtt://127.0.0.1:1", rate_hz=RATE_HZ)
    for session, names in ((batched, ids + bad), (reference, ids)):
        _feed((session,), names, payloads, clock, 5.0, garbage={"garbage"})
    assert "a defect in this robot's monitor" in batched.robots["broken"].health.error
    assert batched.robots["garbage"].health.monitor.samples == 0
    for rid in ids:
        ref, got = reference.robots[rid].health, batched.robots[rid].health
        assert got.error is None
        _close(ref.monitor.summary().to_dict(), got.monitor.summary().to_dict(), rid)


def test_batched_health_staggers_the_robots_in_groups_of_health_batch(panda):
    """20 robots, health every 1 s at 30 ticks/s, health_batch 8: over one second every robot is judged exactly
    once, in 3 passes of at most 8 robots (7, 7, 6) on different ticks (robot by robot: 20 passes of one)."""
    ids = [f"st-{i:02d}" for i in range(20)]
    for batched, passes_expected, most in ((True, 3, 8), (False, 20, 1)):
        fleet = FleetSettings(robots=tuple(ids), health_batch=8, batched_health=batched)
        session = FleetSession(load_config(), fleet=fleet, models={"franka_panda": panda}, now_ns=lambda: 0)
        passes = []
        session.judge_health_now = lambda robots, passes=passes: passes.append([r.robot_id for r in robots]) or {}
        robots = list(session.robots.values())
        for tick in range(30):
            session._judge_health(robots, tick)
        assert sorted(r for p in passes for r in p) == sorted(ids)
        assert len(passes) == passes_expected and max(map(len, passes)) <= most


def test_health_passes_yield_the_gil_only_when_health_yield_ms_says_so(panda):
    """[fleet] health_yield_ms reaches the batched health engine (0 = never yield, the default); negative refused."""
    for yield_ms, expected in ((0.0, None), (2.5, 0.0025)):
        fleet = FleetSettings(robots=("hy-1",), health_yield_ms=yield_ms)
        session = FleetSession(load_config(), fleet=fleet, models={"franka_panda": panda}, now_ns=lambda: 0)
        assert session.health_engine.yield_every_s == expected
    with pytest.raises(ValueError, match="health_yield_ms"):
        FleetSettings(health_yield_ms=-1.0)


@pytest.mark.parametrize("health_thread", [True, False], ids=["health-thread", "in-the-tick"])
def test_a_running_fleet_judges_health_on_its_health_thread_and_every_sample_reaches_it(panda, health_thread):
    """A running 4-robot session fed 200 Hz for ~1.5 s: with ``[fleet] health_thread`` every judgement runs on the
    health thread and none in the display tick (without it, all in the tick), and each robot's monitor has taken
    the samples the robot drained — none lost between the threads."""
    import threading
    import time

    ids = [f"ht-{i}" for i in range(4)]
    config = load_config()
    config = dataclasses.replace(config, broker=dataclasses.replace(config.broker, url="mqtt://127.0.0.1:1"))
    fleet = FleetSettings(robots=tuple(ids), max_rate_hz=1e9, health_every_s=0.1, health_thread=health_thread)
    session = FleetSession(config, fleet=fleet, models={"franka_panda": panda})
    threads: set[str] = set()
    judge = session.judge_health_now

    def judge_recording(robots):
        threads.add(threading.current_thread().name)
        return judge(robots)

    session.judge_health_now = judge_recording
    drained = {rid: [] for rid in ids}  # every sample each robot's twin drained (its health service is offered all)
    for rid in ids:
        session.robots[rid].twin.sample_listeners.append(drained[rid].append)
    payloads = LightFleet(ids, panda, "mqtt://127.0.0.1:1", rate_hz=RATE_HZ)
    session.run_in_background()
    try:
        base = time.monotonic_ns()
        for j in range(300):
            stamp = base + j * 5_000_000
            for r, rid in enumerate(ids):
                body = payloads.payload(rid, j, stamp, j + 37 * r)
                session.router.on_payload(f"twin/v1/{rid}/joint_states", body, time.monotonic_ns())
            time.sleep(max(0.0, (stamp + 5_000_000 - time.monotonic_ns()) * 1e-9))
        time.sleep(0.3)  # the last samples are drained by a tick and taken by a judgement
    finally:
        session.stop()
    assert threads == ({"twin_ext-fleet-health"} if health_thread else {"twin_ext-fleet"})
    assert session.tick_failures == 0 and session.ticks > 20
    assert (session.health_ticks > 20) == health_thread
    for rid in ids:
        robot = session.robots[rid]
        assert robot.health.monitor.samples > 50, rid  # judged while running, by the thread that judges
        robot.feed_health()  # what the last tick drained after the last health step
        robot.judge_health()
        health = robot.health
        assert health.error is None and health.monitor.samples > 0, rid
        assert len(drained[rid]) > 250, rid
        assert health.monitor.samples + health.thinned + len(health._pending) == len(drained[rid]), rid


@pytest.mark.parametrize("batched", [True, False], ids=["batched", "robot-by-robot"])
def test_a_fleet_robot_that_reboots_keeps_its_health_judged(panda, batched):
    """A robot restarts mid-stream (a birth with a new boot id, then numbering and its clock start over, ~16 min
    earlier): its health monitor is told, in order with the samples, so it goes on judging the new boot's samples
    instead of waiting for their stamps to pass the old boot's last one; the other robot is not disturbed."""
    from twin_ext.telemetry import Birth, Topics, encode_birth

    ids = ["reboots", "calm"]
    clock = [10**12]
    fleet = FleetSettings(robots=tuple(ids), max_rate_hz=1e9, health_every_s=1 / 30, batched_health=batched)
    session = FleetSession(load_config(), fleet=fleet, models={"franka_panda": panda}, now_ns=lambda: clock[0])
    payloads = LightFleet(ids, panda, "mqtt://127.0.0.1:1", rate_hz=RATE_HZ)

    def birth(rid: str, boot: str) -> None:
        doc = Birth(rid, "franka_panda", tuple(panda.dof_names), RATE_HZ, boot, "binary")
        session.router.on_payload(Topics(rid).birth, encode_birth(doc), clock[0])

    def stream(seconds: float, first: dict, robot_t0: dict) -> None:
        """``seconds`` of 200 Hz samples and 30 Hz ticks; sample k of robot r is stamped robot_t0[r] + k x 5 ms."""
        period_ns, tick_ns = int(1e9 / RATE_HZ), int(1e9 / 30)
        start, k = clock[0], 0
        for tick in range(int(seconds * 30)):
            end = start + (tick + 1) * tick_ns
            while start + k * period_ns < end:
                for r, rid in enumerate(ids):
                    seq = first[rid] + k
                    body = payloads.payload(rid, seq, robot_t0[rid] + seq * period_ns, seq + 37 * r)
                    session.router.on_payload(f"twin/v1/{rid}/joint_states", body, start + k * period_ns + 10**6)
                k += 1
            clock[0] = end + 2 * 10**6
            session.tick(clock[0])
        for rid in ids:
            first[rid] += k

    first = dict.fromkeys(ids, 0)
    robot_t0 = {"reboots": 10**12, "calm": 10**12}
    for rid in ids:
        birth(rid, "boot-1")
    stream(2.0, first, robot_t0)
    judged = {rid: session.robots[rid].health.monitor.samples for rid in ids}
    birth("reboots", "boot-2")
    first["reboots"] = 0
    robot_t0["reboots"] = 0  # its clock starts over: 1000 s before the old boot's stamps
    stream(2.0, first, robot_t0)
    robots = session.robots
    assert robots["reboots"].ingest.stats.restarts == 1 and robots["calm"].ingest.stats.restarts == 0
    for rid in ids:
        health = robots[rid].health
        assert health.error is None and robots[rid].error == "", rid
        assert health.monitor.samples - judged[rid] > 200, (rid, judged[rid], health.monitor.samples)
