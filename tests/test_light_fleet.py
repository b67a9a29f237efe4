# SPDX-License-Identifier: Apache-2.0
"""`LightFleet`'s raw-packet stream is well-formed MQTT: a paho subscriber gets every joint state, decodable and in
order, after each robot's retained birth and status."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from twin_ext.emulator import LightFleet
from twin_ext.telemetry import decode, decode_birth


def test_every_streamed_joint_state_reaches_a_paho_subscriber_intact(mosquitto_broker, panda):
    """3 robots x 100 Hz for 1.5 s (plus a 12 s run through a keep-alive ping): all published joint states arrive,
    each decodes to its robot's next sequence number, and births and statuses arrive before them."""
    ids = ["lf-a", "lf-b", "lf-c"]
    got: dict[str, list[int]] = {rid: [] for rid in [*ids, "lf-d"]}
    births: set[str] = set()
    errors: list[str] = []
    lock = threading.Lock()

    def on_message(client, userdata, message):
        rid, kind = message.topic.split("/")[2], message.topic.split("/")[-1]
        with lock:
            if kind == "birth" and message.payload:
                births.add(decode_birth(message.payload).robot_id)
            elif kind == "joint_states":
                if rid not in births:
                    errors.append(f"{rid}: joint state before its birth")
                try:
                    got[rid].append(decode(message.payload, model=panda).seq)
                except Exception as exc:  # noqa: BLE001 - collected, asserted below
                    errors.append(repr(exc))

    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="lf-sub")
    sub.on_message = on_message
    sub.connect("127.0.0.1", mosquitto_broker.port)
    sub.subscribe("twin/v1/+/#")
    sub.loop_start()
    try:
        time.sleep(0.5)
        fleet = LightFleet(ids, panda, mosquitto_broker.url, rate_hz=100.0)
        stats = fleet.run(1.5, forget=True)
        long_stats = LightFleet(["lf-d"], panda, mosquitto_broker.url, rate_hz=20.0).run(12.0, forget=True)
        end = time.monotonic() + 10
        while time.monotonic() < end:
            with lock:
                if sum(map(len, got.values())) >= stats.published + long_stats.published:
                    break
            time.sleep(0.05)
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert not errors, errors[:5]
    assert stats.published >= 3 * 100 * 1.4
    for rid in ids:
        assert got[rid] == list(range(len(got[rid]))) and got[rid], rid
    assert sum(len(got[r]) for r in ids) == stats.published
    assert (
        got["lf-d"] == list(range(long_stats.published)) and long_stats.published >= 20 * 11
    )  # the stream outlived a ping
