# SPDX-License-Identifier: Apache-2.0
"""EmbeddedBroker: a real MQTT round trip through amqtt with paho-mqtt clients, and a clean lifecycle."""

from __future__ import annotations

import queue
import threading
import time
from urllib.parse import urlsplit

import pytest

pytest.importorskip("amqtt")
mqtt = pytest.importorskip("paho.mqtt.client")

from twin_ext.telemetry import EmbeddedBroker, EmbeddedBrokerError  # noqa: E402

TIMEOUT_S = 10.0


def _client(url: str, client_id: str, *, will: tuple[str, bytes] | None = None, inbox: queue.Queue | None = None):
    parts = urlsplit(url)
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id)
    connected = threading.Event()
    c.on_connect = lambda *_: connected.set()
    if inbox is not None:
        c.on_message = lambda _c, _u, m: inbox.put((m.topic, bytes(m.payload), bool(m.retain)))
    if will is not None:
        c.will_set(will[0], will[1], qos=1, retain=True)
    c.connect(parts.hostname, parts.port, keepalive=5)
    c.loop_start()
    assert connected.wait(TIMEOUT_S), "no CONNACK from the embedded broker"
    return c


def _next(inbox: queue.Queue, topic: str) -> tuple[str, bytes, bool]:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            item = inbox.get(timeout=max(0.01, deadline - time.monotonic()))
        except queue.Empty:
            break
        if item[0] == topic:
            return item
    raise AssertionError(f"nothing arrived on {topic} within {TIMEOUT_S} s")


def _broker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("twin_ext-embedded-broker")]


def test_round_trip_retained_and_last_will():
    """Through the embedded broker: a live publish arrives, a retained message reaches a late subscriber
    (flagged retained), and an abruptly dropped client's last will is delivered."""
    with EmbeddedBroker() as broker:
        assert broker.url.startswith("mqtt://127.0.0.1:") and broker.port > 0
        inbox: queue.Queue = queue.Queue()
        robot = _client(broker.url, "robot", will=("r/status", b"offline"))
        robot.publish("r/birth", b"hello", qos=1, retain=True).wait_for_publish(TIMEOUT_S)

        twin = _client(broker.url, "twin", inbox=inbox)
        twin.subscribe("r/#", qos=1)
        assert _next(inbox, "r/birth") == ("r/birth", b"hello", True)  # retained, delivered on subscribe

        robot.publish("r/joint_states", b"\x00\x01", qos=0)
        assert _next(inbox, "r/joint_states") == ("r/joint_states", b"\x00\x01", False)

        robot.loop_stop()
        robot.socket().close()  # vanish without DISCONNECT: the broker must publish the will
        assert _next(inbox, "r/status") == ("r/status", b"offline", False)

        late: queue.Queue = queue.Queue()
        observer = _client(broker.url, "observer", inbox=late)
        observer.subscribe("r/status", qos=1)
        assert _next(late, "r/status") == ("r/status", b"offline", True)  # the will was retained
        for c in (twin, observer):
            c.disconnect()
            c.loop_stop()
    assert not broker.running


def test_stop_joins_the_thread_and_restart_works():
    """stop() leaves no broker thread behind; the broker can be started again (a new port) and stop is idempotent."""
    broker = EmbeddedBroker()
    first = broker.start()
    assert len(_broker_threads()) == 1
    broker.stop()
    assert _broker_threads() == []
    second = broker.start()
    assert second.startswith("mqtt://127.0.0.1:")
    c = _client(second, "probe")
    c.disconnect()
    c.loop_stop()
    broker.stop()
    broker.stop()
    assert _broker_threads() == []
    assert first != "" and not broker.running


def test_stop_with_connected_clients_does_not_hang():
    """Stopping while a client is still connected closes its connection and returns promptly."""
    broker = EmbeddedBroker()
    url = broker.start()
    c = _client(url, "lingering")
    broker.stop(timeout_s=TIMEOUT_S)
    assert _broker_threads() == []
    c.loop_stop()


def test_misuse_is_reported_clearly():
    """URL before start, double start and a bad port raise EmbeddedBrokerError with a clear message."""
    broker = EmbeddedBroker()
    with pytest.raises(EmbeddedBrokerError, match="not running"):
        _ = broker.url
    broker.start()
    try:
        with pytest.raises(EmbeddedBrokerError, match="already running"):
            broker.start()
    finally:
        broker.stop()
    with pytest.raises(EmbeddedBrokerError, match="port"):
        EmbeddedBroker(port=70000)


def test_a_busy_port_is_a_clear_error():
    """Asking for a port that is already taken fails at start with the reason, and leaves no thread."""
    with EmbeddedBroker() as first:
        other = EmbeddedBroker(port=first.port)
        with pytest.raises(EmbeddedBrokerError, match="failed to start"):
            other.start()
        assert len(_broker_threads()) == 1
