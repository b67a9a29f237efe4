# SPDX-License-Identifier: Apache-2.0
"""The command channel end to end: the twin's pre-flight, the emulator's acks and leases, a real Mosquitto.

One broker, one emulated Panda holding its home pose (a two-waypoint hold program, so move_to starts from rest)
and one twin with ``commands_enabled`` are shared by the tests of this module, in file order; the broker restart
comes last.
"""

from __future__ import annotations

import json
import queue
import time
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import pytest

from twin_ext.control import CommandRefused, ControlSettings
from twin_ext.emulator import EmulatedRobot, EmulatorSettings
from twin_ext.live import TwinConfig, TwinSession
from twin_ext.telemetry import MoveTo, Resume, Stop, encode_command

pytestmark = [pytest.mark.broker, pytest.mark.slow]

HOME = [0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854, 0.04, 0.04]
JOINTS = ["joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7", "finger_joint1", "finger_joint2"]


class Rig:
    def __init__(self, broker, robot, session, spy, seen):
        self.broker, self.robot, self.session, self.spy, self.seen = broker, robot, session, spy, seen

    @property
    def twin(self):
        return self.session.twin

    def wait(self, predicate, timeout: float) -> bool:
        """Tick the twin (acks are applied on its display tick) until ``predicate()`` or ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.session.tick()
            if predicate():
                return True
            time.sleep(1 / 60)
        return False

    def ready(self, timeout: float = 30.0) -> None:
        """Wait for health ok, clock sync and a settled velocity covariance (the pre-flight samples from it)."""
        n = self.twin.model.ndof

        def settled():
            status = self.session.status()
            cov = status.snapshot.covariance
            return status.health.value == "ok" and status.clock_ready and np.sqrt(np.diag(cov)[n:]).max() < 0.05

        assert self.wait(settled, timeout), (self.twin.errors, self.session.status().health)

    def messages(self, kind: str) -> list[dict]:
        out = []
        while True:
            try:
                topic, payload = self.seen.get_nowait()
            except queue.Empty:
                break
            self._all.append((topic, payload))
        for topic, payload in self._all:
            if topic.endswith("/" + kind):
                out.append(json.loads(payload))
        return out

    _all: list = []


@pytest.fixture(scope="module")
def rig(tmp_path_factory):
    from mosquitto import Mosquitto, require_mosquitto

    require_mosquitto()
    folder = tmp_path_factory.mktemp("control")
    program = folder / "hold.toml"
    rows = "\n".join(f"[[waypoint]]\nt = {t}\nq = {HOME}\n" for t in (0.0, 10.0))
    program.write_text(f"joint_names = {json.dumps(JOINTS)}\n{rows}")
    broker = Mosquitto(Path(folder) / "mosquitto").start()
    robot = EmulatedRobot(EmulatorSettings(accept_commands=True, program=str(program)))
    session = None
    seen: queue.Queue = queue.Queue()
    spy = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="control-spy")
    try:
        robot.start(broker.url, seed=0, progress_every_s=0)
        config = {
            "broker": {"url": broker.url, "client_id": "twin-control-test"},
            "whatif": {"workers": 1},
            "twin": {"commands_enabled": True},
        }
        session = TwinSession(TwinConfig.from_mapping(config))
        spy.on_message = lambda c, u, m: seen.put((m.topic, bytes(m.payload)))
        host, port = broker.url.split("//")[1].split(":")
        spy.connect(host, int(port))
        spy.subscribe([("twin/v1/panda/command", 1), ("twin/v1/panda/command/ack", 1)])
        spy.loop_start()
        session.start()
        rig = Rig(broker, robot, session, spy, seen)
        rig._all = []
        rig.ready()
        yield rig
    finally:
        spy.loop_stop()
        spy.disconnect()
        if session is not None:
            session.stop()
        robot.stop()
        broker.stop()


def test_an_out_of_limit_move_to_is_refused_before_anything_is_published(rig):
    """joint1 beyond its limit: CommandRefused('limits') and no message on the command topic, no robot command."""
    before = len(rig.robot.commands)
    with pytest.raises(CommandRefused) as info:
        rig.twin.send_command(MoveTo(("joint1",), (3.5,), 2.0))
    assert info.value.check == "limits" and "joint1" in info.value.fix
    time.sleep(0.3)
    assert rig.messages("command") == [] and len(rig.robot.commands) == before
    assert rig.twin.commands.audit.entries()[-1]["check"] == "limits"


def test_a_move_to_passes_preflight_and_the_emulator_acknowledges_it_to_done_once(rig):
    """A 1 s move of joint1 by 0.2 rad is simulated (pass), sent with a lease, executed once, and acknowledged
    received -> started -> done; the twin's estimate ends at the target (within 5 mrad: estimator noise plus the
    drive's steady-state error)."""
    rig.ready()
    tracked = rig.twin.send_command(MoveTo(("joint1",), (0.2,), 1.0), requester="test")
    assert tracked.verdict.simulated and tracked.verdict.whatif_status == "pass" and tracked.lease_ns is not None
    assert rig.wait(lambda: tracked.ended, 10), tracked.history
    assert tracked.state == "done" and [h[1] for h in tracked.history] == ["sent", "received", "started", "done"]
    assert sum(1 for c in rig.robot.commands if c.accepted and tracked.id in c.detail) == 1
    assert rig.wait(lambda: abs(rig.session.status().joints[0].estimated_q - 0.2) < 5e-3, 3)
    sent = [m for m in rig.messages("command") if m.get("id") == tracked.id]
    assert sent and sent[0]["valid_until_ns"] == tracked.lease_ns and "pre-flight pass" in sent[0]["justification"]


def test_a_move_to_whose_simulation_violates_a_limit_is_refused(rig):
    """With the speed bound relaxed to the datasheet limit, a joint1 move commanded at 99.99 % of its speed limit
    passes the bounds but its simulation overshoots the limit in every sample (the drive overshoots the commanded
    speed by ~0.1 %): refused ('simulation'), nothing published."""
    rig.ready()
    gate = rig.twin.commands
    saved = gate.preflight.settings
    gate.preflight.settings = ControlSettings(max_speed_fraction=1.0)
    try:
        q = rig.session.status().joints[0].estimated_q
        duration = 1.875 * abs(2.0 - q) / 2.175 * 1.0001
        published = len(rig.messages("command"))
        with pytest.raises(CommandRefused) as info:
            rig.twin.send_command(MoveTo(("joint1",), (2.0,), duration))
    finally:
        gate.preflight.settings = saved
    assert info.value.check == "simulation" and "velocity joint1" in info.value.message, info.value
    assert info.value.verdict.p_violation > 0.5
    time.sleep(0.2)
    assert len(rig.messages("command")) == published


def test_a_command_that_arrives_after_its_lease_is_rejected_and_an_expiring_lease_makes_the_robot_hold(rig):
    """Published straight to the command topic (as a delayed delivery would arrive): a move_to whose lease has
    passed is rejected ('lease_expired'); a 3 s move with a 0.5 s lease starts, is held when the lease runs out
    (failed 'lease_expired'), and the arm stops short of its target."""
    rig.ready()
    clock, topic = rig.session.ingest.clock, "twin/v1/panda/command"
    now_robot = clock.to_robot_ns(time.monotonic_ns())
    late = MoveTo(("joint1",), (0.0,), 1.0, id="late-1", valid_until_ns=now_robot - 10**8)
    rig.session.link.publish(topic, encode_command(late), qos=1)
    q0 = rig.session.status().joints[0].estimated_q
    short = MoveTo(("joint1",), (q0 - 0.6,), 3.0, id="short-lease-1", valid_until_ns=now_robot + 5 * 10**8)
    rig.session.link.publish(topic, encode_command(short), qos=1)

    def acks(command_id):
        return [(m["state"], m.get("reason", "")) for m in rig.messages("ack") if m["id"] == command_id]

    assert rig.wait(lambda: acks("late-1") and acks("short-lease-1")[-1:] == [("failed", "lease_expired")], 10), (
        acks("late-1"),
        acks("short-lease-1"),
    )
    assert acks("late-1") == [("rejected", "lease_expired")]
    assert acks("short-lease-1") == [("received", ""), ("started", ""), ("failed", "lease_expired")]
    rig.wait(lambda: False, 1.0)  # the controlled stop ramps down ([emulator] ramp_time 0.3 s)
    status = rig.session.status()
    assert abs(status.joints[0].estimated_qd) < 0.02 and status.joints[0].estimated_q > q0 - 0.5
    resumed = rig.twin.send_command(Resume())  # the robot holds until told to continue
    assert rig.wait(lambda: resumed.ended, 5) and resumed.state == "done"


def test_a_stale_twin_refuses_commands_but_still_sends_stop(rig):
    """While the robot is offline (an emulated restart) the twin is not ok: a move_to is refused ('health'), the
    gate reports 'blocked', and a stop is still published."""
    rig.ready()
    rig.robot.request_restart(down_s=2.0)
    assert rig.wait(lambda: rig.session.status().health.value != "ok", 10)
    with pytest.raises(CommandRefused) as info:
        rig.twin.send_command(MoveTo(("joint1",), (0.1,), 1.0))
    assert info.value.check == "health"
    assert rig.twin.gate_state()[0] == "blocked"
    stop = rig.twin.send_command(Stop())
    assert stop.state == "sent"
    assert rig.wait(lambda: any(m.get("id") == stop.id for m in rig.messages("command")), 5)
    rig.ready()
    rig.twin.send_command(Resume())


def test_a_broker_restart_between_command_and_ack_ends_done_or_failed_never_executed_twice(rig):
    """The broker restarts (SIGTERM, persistence on) right after a move_to is sent: the command ends done or failed
    (the twin's timeouts), and the robot executed its id at most once (re-deliveries are answered, not obeyed)."""
    rig.wait(lambda: False, 1.0)
    rig.ready()  # right before sending: the pre-flight samples initial states from the velocity covariance
    q0 = rig.session.status().joints[0].estimated_q
    tracked = rig.twin.send_command(MoveTo(("joint1",), (q0 + 0.2,), 1.0))
    rig.broker.restart(down_s=0.3)
    assert rig.wait(lambda: tracked.ended, 15), tracked.history
    assert tracked.state in ("done", "failed"), tracked.history
    executed = [c for c in rig.robot.commands if c.accepted and tracked.id in c.detail]
    assert len(executed) <= 1
    again = rig.twin.send_command(tracked.command)  # the same command again: the same id, not a new move
    assert again is tracked
