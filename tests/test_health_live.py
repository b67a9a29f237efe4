# SPDX-License-Identifier: Apache-2.0
"""Health monitoring in the live twin, as a user runs it: `twin-ext run` against a real Mosquitto, fed by the
emulated robot with a fault profile; events reach MQTT, the retained summary and the status file."""

from __future__ import annotations

import json
import queue

import paho.mqtt.client as mqtt
import pytest
from conftest import REPO
from paho.mqtt.enums import CallbackAPIVersion
from twin_process import Emulator, TwinProcess, wait_for

pytestmark = [pytest.mark.broker, pytest.mark.slow]


class HealthWatcher:
    """Subscribes to the robot's health topics; collects events and the latest retained summary."""

    def __init__(self, url: str) -> None:
        host, port = url.split("//")[1].split(":")
        self.events: queue.SimpleQueue = queue.SimpleQueue()
        self.summary: dict | None = None
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="health-watcher")
        self.client.on_message = self._on_message
        self.client.connect(host, int(port))
        self.client.subscribe([("twin/v1/panda/health/events", 1), ("twin/v1/panda/health", 1)])
        self.client.loop_start()

    def _on_message(self, client, userdata, message) -> None:
        doc = json.loads(message.payload)
        if message.topic.endswith("/events"):
            self.events.put(doc)
        else:
            self.summary = doc

    def event(self, kind: str, timeout_s: float) -> dict | None:
        seen = []

        def find():
            while not self.events.empty():
                seen.append(self.events.get())
            return next((e for e in seen if e["kind"] == kind), None)

        return wait_for(find, timeout_s)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def test_a_collision_on_the_robot_is_published_as_a_health_event_with_its_joint(mosquitto_broker, tmp_path):
    """The emulator hits joint 2 with a 30 N·m impulse 6 s after it starts: the twin publishes a `collision`
    event naming joint2 on .../health/events, keeps a retained summary on .../health, and its status file carries
    the same summary; nothing else is raised on the healthy robot before the hit."""
    twin = TwinProcess(tmp_path, mosquitto_broker.url).start()
    watcher = HealthWatcher(mosquitto_broker.url)
    robot = Emulator(
        mosquitto_broker.url, "--impairments", str(REPO / "config/faults/collision_joint2.toml"), "--duration", "30"
    )
    try:
        robot.start()
        collision = watcher.event("collision", timeout_s=40)
        assert collision is not None, "no collision event"
        assert collision["joints"][0] == "joint2" and collision["magnitude"] > 1.0, collision  # at detection
        assert collision["time_base"] == "robot" and collision["detected_unix_s"] > 0
        assert wait_for(lambda: watcher.summary, 10), "no retained health summary"
        assert [j["name"] for j in watcher.summary["joints"]][:2] == ["joint1", "joint2"]
        doc = twin.wait(lambda d: "robot_health" in d and d["robot_health"]["last_episode"] is not None)
        kinds = [e["kind"] for e in doc["robot_health"]["events"]]
        assert kinds[0] == "collision", kinds  # the first thing the monitor said was the hit
        episode = doc["robot_health"]["last_episode"]
        assert episode["joints"][0] == "joint2" and episode["peak_nm"] > 10.0, episode  # the impulse's peak: 30 N·m
        assert episode["explained_as"] == "collision" and episode["duration_s"] < 0.5
    finally:
        watcher.close()
        robot.stop()
        twin.stop()
