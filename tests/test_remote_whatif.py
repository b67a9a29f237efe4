# SPDX-License-Identifier: Apache-2.0
"""What-if over MQTT and the veto channel, against a real Mosquitto and a live emulated robot."""

from __future__ import annotations

import json
import queue
import time

import paho.mqtt.client as mqtt
import pytest

from twin_ext.emulator import EmulatedRobot, EmulatorSettings
from twin_ext.live import CommandGateClosed, TwinConfig, TwinSession

pytestmark = [pytest.mark.broker, pytest.mark.slow]


def _session(url: str, *, commands: bool) -> TwinSession:
    config = TwinConfig.from_mapping(
        {
            "broker": {"url": url, "client_id": f"twin-remote-{commands}"},
            "whatif": {"workers": 1},
            "twin": {"commands_enabled": commands},
        }
    )
    return TwinSession(config)


def _client(url: str, results: queue.Queue[dict]) -> mqtt.Client:
    host, port = url.split("//")[1].split(":")
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"asker-{time.monotonic_ns()}")
    client.on_message = lambda c, u, m: results.put(json.loads(m.payload))
    client.connect(host, int(port))
    client.subscribe("twin/v1/panda/whatif/result", qos=1)
    client.loop_start()
    return client


def _next(session: TwinSession, results: queue.Queue[dict], timeout: float) -> dict:
    """Tick the twin (requests are taken on its display tick) until a result arrives."""
    assert _wait(session, lambda: not results.empty(), timeout), "no what-if result arrived"
    return results.get_nowait()


def _wait(session: TwinSession, predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        session.tick()
        if predicate():
            return True
        time.sleep(1 / 60)
    return False


@pytest.mark.parametrize("commands", [True, False])
def test_whatif_requests_over_mqtt_get_results_and_a_failing_verdict_vetoes_only_when_allowed(
    mosquitto_broker, commands
):
    """A shipped-scenario request is answered on whatif/result with the report; a malformed one with an error;
    veto_if_fail sends Stop to a robot that accepts commands only when [twin] commands_enabled is true."""
    url = mosquitto_broker.url
    robot = EmulatedRobot(EmulatorSettings(accept_commands=True))
    robot.start(url, seed=0, progress_every_s=0)
    session = _session(url, commands=commands)
    results: queue.Queue[dict] = queue.Queue()
    client = _client(url, results)
    try:
        session.start()
        assert _wait(session, lambda: session.status().health.value == "ok", 20), session.twin.errors
        _wait(session, lambda: False, 1.2)  # requests run once the twin was ok for [remote_whatif] ready_after_s
        client.publish("twin/v1/panda/whatif/request", b"{not json", qos=1)
        bad = _next(session, results, 10)
        assert bad["ok"] is False and bad["id"] is None and "Expecting" in bad["error"]
        request = {"id": "r1", "name": "pick_place_payload", "veto_if_fail": True, "scenario_typo": 1}
        client.publish("twin/v1/panda/whatif/request", json.dumps(request).encode(), qos=1)
        typo = _next(session, results, 10)
        assert typo["id"] == "r1" and typo["ok"] is False and "scenario_typo" in typo["error"]
        del request["scenario_typo"]
        client.publish("twin/v1/panda/whatif/request", json.dumps(request).encode(), qos=1)
        answer = _next(session, results, 120)
        assert answer["id"] == "r1" and answer["ok"] is True, answer
        report = answer["report"]
        assert report["schema"] == "twin_ext.whatif.report/1" and report["base_health"] == "ok"
        assert report["status"] == "fail"  # the shipped scenario's x1.5 + 3 kg variant overloads the wrist
        if commands:
            assert answer["veto"] == "stop sent to the robot"
            assert _wait(session, lambda: any(c.accepted and "Stop" in c.detail for c in robot.commands), 10), (
                robot.commands
            )
        else:
            assert answer["veto"].startswith("not sent") and "commands_enabled" in answer["veto"]
            time.sleep(0.5)
            assert not robot.commands
            with pytest.raises(CommandGateClosed, match="commands_enabled"):
                from twin_ext.telemetry import Stop

                session.twin.send_command(Stop())
    finally:
        client.loop_stop()
        client.disconnect()
        session.stop()
        robot.stop()
