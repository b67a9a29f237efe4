# SPDX-License-Identifier: Apache-2.0
"""The robot side of the command contract (docs/control.md), on the emulator offline: acks, one execution per id,
leases refused on arrival and enforced while moving."""

from __future__ import annotations

import json

import pytest

from twin_ext.control import decode_ack
from twin_ext.emulator import EmulatedRobot, EmulatorSettings, ImpairmentProfile
from twin_ext.telemetry import MoveTo, Stop, encode_command

PROFILE = ImpairmentProfile(offset_ms=0.0, drift_ppm=0.0)  # robot clock == the offline host clock (ns from 0)


def _run(commands, duration_s=3.0, **settings):
    robot = EmulatedRobot(EmulatorSettings(accept_commands=True, **settings), profile=PROFILE)
    sim = robot.simulate(duration_s, seed=0, commands=commands)
    acks = [decode_ack(d.payload) for d in sim.deliveries if d.topic.endswith("/command/ack")]
    return sim, acks


def test_a_re_delivered_command_id_is_answered_with_its_state_and_never_executed_twice():
    """The same move_to payload three times (a broker re-delivery, a twin re-sending): executed once, acked
    received/started/done, and each copy answered with the state it is in ('duplicate')."""
    payload = encode_command(MoveTo(("joint1",), (0.3,), 0.5, id="m-1"))
    sim, acks = _run([(0.1, payload), (0.3, payload), (1.5, payload)])
    assert sum(c.accepted for c in sim.commands) == 1
    assert [(a.state, a.reason) for a in acks] == [
        ("received", ""),
        ("started", ""),
        ("started", "duplicate"),
        ("done", ""),
        ("done", "duplicate"),
    ]


def test_a_command_after_its_lease_is_rejected_and_stop_never_is():
    """valid_until_ns already passed on arrival: move_to rejected 'lease_expired'; a stop with a passed lease is obeyed."""
    late = MoveTo(("joint1",), (0.3,), 1.0, id="late", valid_until_ns=50_000_000)
    stop = Stop(id="stop", valid_until_ns=50_000_000)
    sim, acks = _run([(0.1, encode_command(late)), (0.2, encode_command(stop))], duration_s=0.5)
    assert [(a.id, a.state, a.reason) for a in acks] == [
        ("late", "rejected", "lease_expired"),
        ("stop", "received", ""),
        ("stop", "started", ""),
        ("stop", "done", ""),
    ]


def test_a_move_still_running_when_its_lease_ends_is_held():
    """A 2 s move_to leased until 0.6 s: failed 'lease_expired' at the lease; the arm then stops (the plant's joint1
    velocity ramps to ~0 within ramp_time) well short of the target."""
    move = MoveTo(("joint1",), (0.8,), 2.0, id="hold", valid_until_ns=600_000_000)
    sim, acks = _run([(0.1, encode_command(move))], duration_s=2.5)
    assert [(a.state, a.reason) for a in acks] == [("received", ""), ("started", ""), ("failed", "lease_expired")]
    assert acks[-1].stamp_ns == pytest.approx(600_000_000, abs=2_000_000)  # within 2 plant steps of the lease
    truth = sim.truth
    j = list(truth.joint_names).index("joint1")
    assert abs(truth.qd[-1, j]) < 1e-2 and truth.q[-1, j] < 0.5
    assert json.loads(encode_command(move))["valid_until_ns"] == 600_000_000
