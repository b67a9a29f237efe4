# SPDX-License-Identifier: Apache-2.0
"""The ingest's steady lane changes nothing but the cost: a hostile stream gives the same states, refusals, events
and clock estimate with the lane as with every sample decoded in full."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from twin_ext.robot import default_robot_path, load_robot
from twin_ext.telemetry import (
    Birth,
    JointState,
    Status,
    TelemetryIngest,
    TelemetrySettings,
    Topics,
    encode_binary,
    encode_birth,
    encode_json,
    encode_status,
)

ROBOT = "panda-7"
TOPICS = Topics(ROBOT)
PERIOD_NS = 5_000_000  # 200 Hz
LATENCY_NS = 7_000_000_000  # arrival - stamp: the twin clock runs 7 s ahead of the robot's


@pytest.fixture(scope="module")
def model():
    return load_robot(default_robot_path())


def _hostile_stream(model, seed: int = 7, samples: int = 3000) -> list[tuple[str, bytes, int]]:
    """(topic, payload, arrival_ns) of a 200 Hz Panda stream with, now and then, every kind of trouble the lane must
    leave to the full path: loss, duplicates, reordering, non-finite values, values beyond the limits, jumps (lone
    and confirmed), stamps of 0 and an hour ahead, a real clock step, a stray far-ahead number, other layouts
    (no effort, JSON, joints in another order, reference arrays), another robot's id, births and statuses."""
    rng = np.random.default_rng(seed)
    names = tuple(model.dof_names)
    mid = 0.5 * (np.asarray(model.lower) + np.asarray(model.upper))
    span = np.asarray(model.upper) - np.asarray(model.lower)
    vmax = np.asarray(model.velocity_limit)
    out: list[tuple[str, bytes, int]] = []
    boot = "boot-a"
    out.append((TOPICS.birth, encode_birth(Birth(ROBOT, "franka_panda", names, 200.0, boot, "binary")), 10**9))
    clock_shift = 0
    late: list[tuple[str, bytes, int]] = []
    offset = np.zeros(len(names))  # where the robot really is, on top of its motion (a confirmed jump moves it)

    def state(seq, stamp, q, **kw):
        qd = kw.pop("qd", 0.3 * vmax * np.cos(seq * 0.01))
        tau = kw.pop("tau", rng.normal(0.0, 2.0, len(names)))
        return JointState(kw.pop("robot_id", ROBOT), seq % 2**32, stamp, kw.pop("names", names), q, qd, tau, **kw)

    for k in range(samples):
        stamp = 10**12 + k * PERIOD_NS
        arrival = stamp + LATENCY_NS + clock_shift + int(rng.exponential(400_000))
        q = mid + offset + 0.2 * span * np.sin(k * 0.01 + np.arange(len(names)))
        roll = rng.random()
        msg = state(k, stamp + clock_shift, q)
        payload = encode_binary(msg)
        topic = TOPICS.joint_states
        if roll < 0.02:
            continue  # lost
        if roll < 0.04:
            out.append((topic, payload, arrival))  # duplicate: sent twice
        elif roll < 0.06:
            late.append((topic, payload, arrival + 3 * PERIOD_NS))  # overtaken by the next ones
            continue
        elif roll < 0.065:
            # a value the message type would refuse, written into the bytes (positions, then velocities, efforts)
            raw = bytearray(payload)
            at = len(raw) - 8 * 3 * len(names) + 8 * int(rng.integers(3 * len(names)))
            raw[at : at + 8] = np.float64(rng.choice([np.nan, np.inf, 1e300])).tobytes()
            payload = bytes(raw)
        elif roll < 0.07:
            payload = encode_binary(state(k, stamp + clock_shift, q, qd=3.0 * vmax))
        elif roll < 0.075:
            payload = encode_binary(state(k, stamp + clock_shift, q + 0.25 * span))  # a lone jump
        elif roll < 0.08:
            payload = encode_binary(state(k, int(rng.choice([0, stamp + 3600 * 10**9])), q))
        elif k in (700, 2600):
            payload = encode_binary(state(k + 5000, stamp + clock_shift, q))  # a stray far-ahead number (held 1 s)
        elif roll < 0.09:
            payload = encode_binary(dataclasses.replace(msg, effort=None))
        elif roll < 0.095:
            payload = encode_json(msg)
        elif roll < 0.097:
            order = list(range(len(names)))[::-1]
            payload = encode_binary(
                state(k, stamp + clock_shift, q[order], qd=msg.velocity[order], tau=msg.effort[order],
                      names=tuple(names[i] for i in order))
            )  # fmt: skip
        elif roll < 0.099:
            payload = encode_binary(dataclasses.replace(msg, reference_position=q))
        elif roll < 0.100:
            payload = encode_binary(state(k, stamp + clock_shift, q, robot_id="panda-8"))
        out.append((topic, payload, arrival))
        if k in (900, 2200):  # the robot really moves at once (the next samples confirm it)
            offset = offset + (0.2 if k == 900 else -0.2) * span
        if k == 1500:  # the robot clock steps forward by 5 s
            clock_shift -= 5 * 10**9
        if k == 1200:  # a spoofed offline of the running boot while data flow; later the real robot is back
            out.append((TOPICS.status, encode_status(Status(ROBOT, "offline", boot)), arrival + 1))
        if k == 1800:  # a restart: new boot, numbers go on (the data decide)
            boot = "boot-b"
            out.append(
                (TOPICS.birth, encode_birth(Birth(ROBOT, "franka_panda", names, 200.0, boot, "binary")), arrival)
            )
        if late and rng.random() < 0.5:
            out.append(late.pop(0))
    return out + late


def _run(model, stream, lane: bool):
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id=ROBOT, state_buffer=10**6), model=model)
    ingest.steady_lane = lane
    took = [0]
    steady = ingest._steady_state

    def counted(*args):
        ok = steady(*args)
        took[0] += ok
        return ok

    ingest._steady_state = counted
    clock = []
    for topic, payload, arrival in stream:
        ingest.on_payload(topic, payload, arrival)
        clock.append((ingest.clock.offset_ns, ingest.clock.drift, ingest.clock.latency_ns, ingest.clock.samples))
    states = [
        (r.message.seq, r.message.stamp_ns, r.arrival_ns, r.late, r.message.names, r.message.position.tobytes(),
         r.message.velocity.tobytes(), None if r.message.effort is None else r.message.effort.tobytes())
        for r in ingest.poll_states()
    ]  # fmt: skip
    events = [(e.kind, e.message) for e in ingest.poll_events()]
    return states, ingest.stats, events, clock, took[0]


def test_the_steady_lane_gives_what_the_full_path_gives_on_a_hostile_stream(model):
    """Same accepted samples (values, order, late flags), counters, refusals by reason, events and clock estimate
    after every payload, with the lane on and off; and the lane took most of the samples."""
    stream = _hostile_stream(model)
    full = _run(model, stream, lane=False)
    fast = _run(model, stream, lane=True)
    assert full[4] == 0
    assert fast[4] > 0.7 * len(stream)
    assert len(fast[0]) == len(full[0]) and fast[0] == full[0]
    assert fast[1] == full[1]
    reasons = full[1].rejected_by_reason
    for reason in ("duplicate", "non_finite", "out_of_limits", "implausible_jump", "implausible_stamp", "seq_jump"):
        assert reasons.get(reason, 0) > 0, (reason, reasons)  # the stream did exercise the full path's refusals
    assert fast[2] == full[2]
    assert fast[3] == full[3]
