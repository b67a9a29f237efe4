# SPDX-License-Identifier: Apache-2.0
"""Who may ask, with the broker's help: Mosquitto with a password file and the shipped ACL (config/mosquitto_acl.conf).

The twin's user may publish commands, an operator may ask what-ifs (and so vetoes) but not command, the robot
may not ask what-ifs, and anonymous clients cannot connect at all. And a real twin and emulator work under it.
"""

from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt
import pytest

from twin_ext.emulator import EmulatedRobot, EmulatorSettings
from twin_ext.live import TwinConfig, TwinSession
from twin_ext.telemetry import Stop, encode_command

pytestmark = [pytest.mark.broker, pytest.mark.slow]

USERS = {"twin": "twin-pw-1", "operator": "operator-pw-1", "robot": "robot-pw-1"}


@pytest.fixture(scope="module")
def broker(tmp_path_factory, repo):
    from mosquitto import Mosquitto, require_mosquitto

    require_mosquitto()
    acl = repo / "config" / "mosquitto_acl.conf"
    b = Mosquitto(tmp_path_factory.mktemp("acl"), users=USERS, extra_conf=f"acl_file {acl}").start()
    yield b
    b.stop()


def _client(broker, user, name, seen=None, subscribe=()):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{name}-{time.monotonic_ns()}")
    if user is not None:
        client.username_pw_set(user, USERS[user])
    result: queue.Queue = queue.Queue()
    client.on_connect = lambda c, u, f, rc, p: result.put(rc)
    if seen is not None:
        client.on_message = lambda c, u, m: seen.put((m.topic, bytes(m.payload)))
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    rc = result.get(timeout=5)
    if not rc.is_failure:
        for topic in subscribe:
            client.subscribe(topic, qos=1)
        time.sleep(0.2)
    return client, rc


def _drain(seen: queue.Queue, wait_s: float = 0.5) -> list[tuple[str, bytes]]:
    time.sleep(wait_s)
    out = []
    while not seen.empty():
        out.append(seen.get_nowait())
    return out


def test_anonymous_clients_cannot_connect(broker):
    """No user name: the broker refuses the connection (neither commands nor what-if requests can be sent)."""
    client, rc = _client(broker, None, "anonymous")
    client.loop_stop()
    assert rc.is_failure


def test_only_the_twin_user_reaches_the_robot_with_commands(broker):
    """The robot's command subscription receives the twin user's stop and not the operator's."""
    seen: queue.Queue = queue.Queue()
    robot, _ = _client(broker, "robot", "robot", seen, ["twin/v1/panda/command"])
    twin, _ = _client(broker, "twin", "twin")
    operator, _ = _client(broker, "operator", "operator")
    try:
        operator.publish("twin/v1/panda/command", encode_command(Stop(id="from-operator")), qos=1).wait_for_publish(2)
        twin.publish("twin/v1/panda/command", encode_command(Stop(id="from-twin")), qos=1).wait_for_publish(2)
        got = [payload for _, payload in _drain(seen)]
        assert got == [encode_command(Stop(id="from-twin"))]
    finally:
        for c in (robot, twin, operator):
            c.loop_stop()
            c.disconnect()


def test_only_operators_reach_the_twin_with_whatif_requests(broker):
    """The twin's request subscription receives the operator's request, not the robot's."""
    seen: queue.Queue = queue.Queue()
    twin, _ = _client(broker, "twin", "twin", seen, ["twin/v1/panda/whatif/request"])
    operator, _ = _client(broker, "operator", "operator")
    robot, _ = _client(broker, "robot", "robot")
    try:
        robot.publish("twin/v1/panda/whatif/request", b'{"id": "r", "name": "x"}', qos=1).wait_for_publish(2)
        operator.publish("twin/v1/panda/whatif/request", b'{"id": "o", "name": "x"}', qos=1).wait_for_publish(2)
        assert [payload for _, payload in _drain(seen)] == [b'{"id": "o", "name": "x"}']
    finally:
        for c in (robot, twin, operator):
            c.loop_stop()
            c.disconnect()


def test_a_twin_and_an_emulated_robot_work_under_the_acl(broker):
    """The emulator as 'robot' and the twin as 'twin': no subscription is refused, the twin gets ok with a synced
    clock, and its stop is acknowledged done (commands and acks pass the ACL)."""
    robot = EmulatedRobot(EmulatorSettings(accept_commands=True))
    robot.start(f"mqtt://robot:{USERS['robot']}@127.0.0.1:{broker.port}", seed=0, progress_every_s=0)
    config = TwinConfig.from_mapping(
        {
            "broker": {"url": broker.url, "client_id": "twin-acl", "username": "twin", "password": USERS["twin"]},
            "twin": {"commands_enabled": True},
        }
    )
    session = TwinSession(config, with_whatif=False)
    try:
        session.start()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            session.tick()
            status = session.status()
            if status.health.value == "ok" and status.clock_ready:
                break
            time.sleep(1 / 60)
        assert status.health.value == "ok" and status.clock_ready, session.twin.errors
        stop = session.twin.send_command(Stop())
        deadline = time.monotonic() + 5
        while not stop.ended and time.monotonic() < deadline:
            session.tick()
            time.sleep(1 / 60)
        assert stop.state == "done", stop.history
        assert not [e for e in session.twin.errors if "refused" in e], session.twin.errors
    finally:
        session.stop()
        robot.stop()
