# SPDX-License-Identifier: Apache-2.0
"""The command channel's pure core: pre-flight checks, the gate (ids, leases, stop first), acks and timeouts."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from twin_ext.control import (
    AckError,
    CommandAck,
    CommandGate,
    CommandLog,
    CommandRefused,
    ControlSettings,
    Preflight,
    decode_ack,
    encode_ack,
)
from twin_ext.estimation import Health, TwinSnapshot
from twin_ext.telemetry import CommandError, MoveTo, SpeedOverride, Stop, decode_command, encode_command


def _snapshot(model, health=Health.OK, q=None) -> TwinSnapshot:
    n = model.ndof
    q = np.clip(np.zeros(n), model.lower, model.upper) if q is None else np.asarray(q, dtype=float)
    return TwinSnapshot(0, q, np.zeros(n), np.zeros(n), np.eye(2 * n) * 1e-8, health, model, age_s=0.01)


def _report(status="pass", p=0.0, samples=32):
    variant = SimpleNamespace(
        p_violation=p, samples=samples, violations=round(p * samples), worst=(), reason="base state stale"
    )
    return SimpleNamespace(status=status, variants=[variant], summary=lambda: f"what-if {status}")


class _Evaluator:
    def __init__(self, report):
        self.report, self.calls = report, 0

    def __call__(self, snapshot, scenario):
        self.calls += 1
        return self.report


class _Clock:
    ready = True
    offset_ns = 5_000_000_000  # robot clock = twin clock + 5 s

    def to_robot_ns(self, twin_ns):
        return int(twin_ns) + self.offset_ns


def _move(model, joint=0, target=0.1, duration=1.0, **kw) -> MoveTo:
    return MoveTo((model.dof_names[joint],), (target,), duration, **kw)


@pytest.fixture
def preflight(panda):
    return Preflight(panda, ControlSettings(), evaluate=_Evaluator(_report()))


def test_an_out_of_limit_move_to_is_refused_naming_the_limits_and_is_not_simulated(panda, preflight):
    """A target beyond a joint's limit (less the margin) fails the 'limits' check, the fix gives the allowed range,
    and the what-if engine is never asked."""
    upper = float(panda.upper[0])
    verdict = preflight.check(_move(panda, target=upper + 0.1), _snapshot(panda))
    assert not verdict.allowed and verdict.check == "limits"
    assert panda.dof_names[0] in verdict.message and f"{upper - 0.02:.4g}" in verdict.fix
    verdict = preflight.check(_move(panda, target=upper - 0.01), _snapshot(panda))  # inside, but within the margin
    assert verdict.check == "limits"
    assert preflight.evaluate.calls == 0


@pytest.mark.parametrize(
    ("command", "check"),
    [
        (MoveTo(("elbow_of_a_ur5",), (0.1,), 1.0), "joints"),
        (MoveTo(("joint1",), (0.1,), 0.05), "duration"),
        (MoveTo(("joint1",), (0.1,), 60.0), "duration"),
        (SpeedOverride(1.5), "speed_override"),
    ],
)
def test_bad_commands_fail_the_check_that_names_them(panda, preflight, command, check):
    """Unknown joints, durations outside [min, max] and a speed override above the bound each name their check."""
    verdict = preflight.check(command, _snapshot(panda))
    assert (verdict.allowed, verdict.check) == (False, check), verdict
    assert verdict.fix


def test_a_move_faster_than_the_speed_bound_is_refused_with_the_duration_that_would_pass(panda, preflight):
    """Peak minimum-jerk speed 1.875 x distance / duration above max_speed_fraction x limit: refused ('speed') and the
    fix names a duration that is then accepted."""
    limit = float(panda.velocity_limit[0])
    distance = 1.0
    fast = 1.875 * distance / (0.8 * limit) * 0.5
    verdict = preflight.check(_move(panda, target=distance, duration=fast), _snapshot(panda))
    assert verdict.check == "speed", verdict
    need = float(verdict.fix.split(">=")[1])
    assert preflight.check(_move(panda, target=distance, duration=need), _snapshot(panda)).allowed


def test_a_move_to_during_a_telemetry_gap_is_refused_as_state_not_simulated(panda, preflight):
    """Health still ok but the newest sample 0.2 s old (> max_state_age_s 0.1) with the grown velocity spread: refused
    'state' naming the age and the widest joint, and the engine is not asked; a speed override is still allowed, and
    the same move from a fresh snapshot is simulated and passes."""
    n = panda.ndof
    spread = np.eye(2 * n) * 1e-8
    spread[n + 7, n + 7] = 1.5**2  # a finger's velocity std after a gap, m/s
    gap = TwinSnapshot(0, _snapshot(panda).q, np.zeros(n), np.zeros(n), spread, Health.OK, panda, age_s=0.2)
    verdict = preflight.check(_move(panda), gap)
    assert (verdict.allowed, verdict.check) == (False, "state"), verdict
    assert "200 ms" in verdict.message and panda.dof_names[7] in verdict.message and "max_state_age_s" in verdict.fix
    assert preflight.evaluate.calls == 0
    assert preflight.check(SpeedOverride(0.5), gap).allowed
    assert preflight.check(_move(panda), _snapshot(panda)).allowed and preflight.evaluate.calls == 1


@pytest.mark.parametrize("health", [Health.STALE, Health.LOST])
def test_a_command_while_the_twin_is_not_ok_is_refused_but_stop_is_always_allowed(panda, preflight, health):
    """A stale or lost twin refuses move_to and speed override ('health'); stop passes with no snapshot at all and
    without simulation."""
    for command in (_move(panda), SpeedOverride(0.5)):
        verdict = preflight.check(command, _snapshot(panda, health))
        assert (verdict.allowed, verdict.check) == (False, "health")
    assert preflight.check(Stop(), None).allowed
    assert preflight.check(Stop(), _snapshot(panda, health), health="lost").allowed
    assert preflight.evaluate.calls == 0


def test_without_clock_sync_leased_commands_are_refused(panda, preflight):
    """No clock sync, no lease in the robot's clock: refused ('clock')."""
    verdict = preflight.check(_move(panda), _snapshot(panda), clock_ready=False)
    assert verdict.check == "clock" and "clock" in verdict.fix


@pytest.mark.parametrize(
    ("status", "p", "allowed"), [("pass", 0.0, True), ("fail", 1 / 32, False), ("unknown", 0.0, False)]
)
def test_the_simulation_decides_a_move_to_that_passes_the_bounds(panda, status, p, allowed):
    """A move_to within bounds is simulated; P(violation) above max_violation_probability or an unknown verdict refuse
    it ('simulation'), and the verdict carries the what-if summary and P."""
    evaluate = _Evaluator(_report(status, p))
    verdict = Preflight(panda, ControlSettings(), evaluate=evaluate).check(_move(panda), _snapshot(panda))
    assert evaluate.calls == 1 and verdict.simulated and verdict.whatif_status == status
    assert verdict.allowed is allowed and verdict.check == ("" if allowed else "simulation")
    assert verdict.summary == f"what-if {status}" and verdict.p_violation == p
    assert "P(violation)" in verdict.justification()


def test_without_a_whatif_engine_a_move_to_is_refused(panda):
    """No engine to simulate with: refused ('simulation'), never sent unsimulated."""
    verdict = Preflight(panda, ControlSettings()).check(_move(panda), _snapshot(panda))
    assert verdict.check == "simulation" and "what-if" in verdict.message


def _gate(panda, report=None, now=None):
    clock = now or [1_000_000_000]
    gate = CommandGate(
        Preflight(panda, ControlSettings(), evaluate=_Evaluator(report or _report())),
        audit=CommandLog(),
        now_ns=lambda: clock[0],
    )
    return gate, clock


def test_a_sent_move_to_carries_an_id_a_lease_in_the_robot_clock_and_its_justification(panda):
    """The gate gives an id, a lease = robot now + duration + lease_margin_s, and the pre-flight line; the audit
    log records the command, the verdict and the requester."""
    gate, clock = _gate(panda)
    sent = []
    tracked = gate.send(
        _move(panda, duration=1.5), snapshot=_snapshot(panda), publish=lambda p: sent.append(p) or True,
        clock=_Clock(), requester="operator",
    )  # fmt: skip
    wire = decode_command(sent[0])
    assert wire.id == tracked.id and wire.id
    assert wire.valid_until_ns == clock[0] + _Clock.offset_ns + round(2.5e9)
    assert "pre-flight pass" in wire.justification
    entry = gate.audit.entries()[-1]
    assert entry["event"] == "sent" and entry["requester"] == "operator" and entry["verdict"]["allowed"]


def test_a_refused_command_is_not_published_and_is_audited_with_its_check(panda):
    """Refusal raises CommandRefused (check and fix), publishes nothing, and the audit log has the refusal."""
    gate, _ = _gate(panda)
    sent = []
    with pytest.raises(CommandRefused, match="limits") as info:
        gate.send(_move(panda, target=99.0), snapshot=_snapshot(panda), publish=sent.append, clock=_Clock())
    assert info.value.check == "limits" and info.value.fix and sent == []
    assert gate.audit.entries()[-1]["event"] == "refused" and gate.audit.entries()[-1]["check"] == "limits"


def test_stop_is_published_before_anything_is_recorded(panda):
    """A stop is sent first (the audit log is still empty when it is published), even with a lost twin."""
    gate, _ = _gate(panda)
    seen = []
    gate.send(Stop(), snapshot=None, health="lost", publish=lambda p: seen.append(len(gate.audit.entries())) or True)
    assert seen == [0] and gate.audit.entries()[-1]["event"] == "sent"


def test_the_same_id_is_the_same_command_and_another_command_under_it_is_refused(panda):
    """Re-sending an id re-publishes the identical payload (the robot executes it once); a different command under a
    used id is refused ('id')."""
    gate, _ = _gate(panda)
    sent = []

    def publish(payload):
        sent.append(payload)
        return True

    first = gate.send(_move(panda, id="c-1"), snapshot=_snapshot(panda), publish=publish, clock=_Clock())
    again = gate.send(_move(panda, id="c-1"), snapshot=_snapshot(panda), publish=publish, clock=_Clock())
    assert again is first and sent[0] == sent[1]
    with pytest.raises(CommandRefused) as info:
        gate.send(_move(panda, target=0.2, id="c-1"), snapshot=_snapshot(panda), publish=publish, clock=_Clock())
    assert info.value.check == "id" and len(sent) == 2


def test_acks_take_a_command_to_done_and_never_backwards(panda):
    """received -> started -> done through the ack topic; a re-delivered 'received' after 'started' changes nothing;
    acks of unknown ids and malformed ones are counted."""
    gate, clock = _gate(panda)
    t = gate.send(_move(panda), snapshot=_snapshot(panda), publish=lambda p: True, clock=_Clock())
    for state in ("received", "started", "received"):
        gate.on_ack_payload(encode_ack(CommandAck(t.id, state)))
    gate.on_ack_payload(encode_ack(CommandAck("someone-else", "done")))
    gate.on_ack_payload(b'{"v": 1, "id": "x", "state": "exploded"}')
    gate.poll()
    assert t.state == "started" and gate.tracker.unknown_acks == 1 and gate.bad_acks == 1
    gate.on_ack_payload(encode_ack(CommandAck(t.id, "done")))
    gate.poll()
    assert t.state == "done" and [h[1] for h in t.history] == ["sent", "received", "started", "received", "done"]


def test_a_command_without_acks_fails_after_its_lease_and_a_late_robot_answer_wins(panda):
    """No ack before the lease ran out (and ack_timeout_s): failed 'no_ack'. If the robot's 'done' still arrives, it
    replaces the twin's guess (the robot says what it did)."""
    gate, clock = _gate(panda)
    t = gate.send(_move(panda, duration=1.0), snapshot=_snapshot(panda), publish=lambda p: True, clock=_Clock())
    clock[0] += round(1.9e9)  # before the lease (1 s + 1 s margin) ends: still waiting
    gate.poll()
    assert t.state == "sent"
    clock[0] += round(0.2e9)
    gate.poll()
    assert (t.state, t.reason) == ("failed", "no_ack")
    assert gate.audit.entries()[-1]["event"] == "timeout"
    gate.on_ack_payload(encode_ack(CommandAck(t.id, "done")))
    gate.poll()
    assert t.state == "done"


def test_ack_and_command_wire_formats_are_strict():
    """Acks: unknown keys, states and types are refused; commands: the lease is an integer of ns, round-trips."""
    for bad in (b"[]", b'{"v":1,"id":"a","state":"done","extra":1}', b'{"v":2,"id":"a","state":"done"}',
                b'{"v":1,"id":"","state":"done"}', b'{"v":1,"id":"a","state":"done","stamp_ns":1.5}'):  # fmt: skip
        with pytest.raises(AckError):
            decode_ack(bad)
    assert decode_ack(encode_ack(CommandAck("a", "rejected", "lease_expired", "late"))).reason == "lease_expired"
    cmd = MoveTo(("j",), (0.1,), 1.0, id="x", valid_until_ns=123, justification="why")
    assert decode_command(encode_command(cmd)) == cmd
    payload = json.loads(encode_command(cmd))
    payload["valid_until_ns"] = 1.5
    with pytest.raises(CommandError, match="valid_until_ns"):
        decode_command(json.dumps(payload).encode())


def test_the_ack_examples_in_control_md_are_schema_v1():
    """Every line of docs/control.md's ack example decodes (a robot adapter's author copies them)."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "control.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```json\n(.*?)\n```", page, flags=re.S) if '"state"' in b]
    states = [decode_ack(line.encode()).state for line in block.splitlines()]
    assert states == ["received", "rejected", "started", "done", "failed"]
