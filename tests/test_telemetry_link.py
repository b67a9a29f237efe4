# SPDX-License-Identifier: Apache-2.0
"""MqttLink against a real Mosquitto: reconnects, persistent sessions, dead brokers, TLS, passwords, bad input.

All brokers listen on 127.0.0.1 free ports (tests/mosquitto.py); every wait is bounded.
"""

from __future__ import annotations

import threading
import time

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from mosquitto import Mosquitto, free_port, make_tls_files, require_mosquitto
from paho.mqtt.enums import CallbackAPIVersion

from twin_ext.config import ConfigError
from twin_ext.telemetry import (
    Birth,
    BrokerSettings,
    EventKind,
    JointState,
    LinkState,
    MqttLink,
    RejectReason,
    Status,
    TelemetryIngest,
    TelemetrySettings,
    Topics,
    decode,
    encode_binary,
    encode_birth,
    encode_json,
    encode_status,
)

pytestmark = pytest.mark.broker

ROBOT = "panda-7"
NAMES = tuple(f"panda_joint{i}" for i in range(1, 8))
TOPICS = Topics(ROBOT)


def wait_until(predicate, timeout_s: float = 10.0, interval_s: float = 0.01) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return predicate()


def _state(seq: int, size: int = 7) -> JointState:
    names = NAMES if size == 7 else tuple(f"j{i}" for i in range(size))
    return JointState(ROBOT, seq, time.monotonic_ns(), names, np.full(size, seq * 1e-3), np.zeros(size))


class Robot:
    """A robot-side paho client: persistent session, QoS1, retained birth/status and an offline will."""

    def __init__(self, broker: Mosquitto, *, client_id: str = "robot-7", boot: str = "boot-1", **tls) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(0.05, 0.5)
        self.client.will_set(TOPICS.status, encode_status(Status(ROBOT, "offline", boot)), qos=1, retain=True)
        self.connected = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.connected.set() if not rc.is_failure else None
        self.client.on_disconnect = lambda c, u, f, rc, p: self.connected.clear()
        self.client.connect_async("127.0.0.1", broker.port)
        self.client.loop_start()
        assert self.connected.wait(10), "robot client could not connect"
        self.boot = boot

    def announce(self) -> None:
        self.client.publish(
            TOPICS.birth,
            encode_birth(Birth(ROBOT, "franka_panda", NAMES, 500.0, self.boot, "binary")),
            qos=1,
            retain=True,
        )
        self.client.publish(TOPICS.status, encode_status(Status(ROBOT, "online", self.boot)), qos=1, retain=True)

    def send(self, payload: bytes, qos: int = 1):
        return self.client.publish(TOPICS.joint_states, payload, qos=qos)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _link(
    url: str, *, client_id: str = "twin-under-test", model=None, recorder=None, **settings
) -> tuple[TelemetryIngest, MqttLink]:
    settings.setdefault("reconnect_min_s", 0.05)
    settings.setdefault("reconnect_max_s", 0.5)
    ingest = TelemetryIngest(
        settings=TelemetrySettings(robot_id=ROBOT, state_buffer=100_000), model=model, recorder=recorder
    )
    return ingest, MqttLink(ingest, BrokerSettings(url=url, client_id=client_id, **settings))


class SeqSpy:
    """Stands in for a recorder: every sequence number that reached the ingest, accepted or refused as late/duplicate."""

    def __init__(self) -> None:
        self.accepted: set[int] = set()
        self.late: set[int] = set()
        self.seqs: set[int] = set()

    def record_accepted(self, topic, payload, arrival_ns, *, message=None) -> None:
        if isinstance(message, JointState):
            self.accepted.add(message.seq)
            self.seqs.add(message.seq)

    def record_rejected(self, topic, payload, arrival_ns, reason, detail="") -> None:
        if reason in (RejectReason.DUPLICATE, RejectReason.OUT_OF_ORDER):
            seq = decode(payload).seq
            self.seqs.add(seq)
            if reason is RejectReason.OUT_OF_ORDER:
                self.late.add(seq)


class Collector:
    """Drains an ingest from the test thread, keeping every accepted sample and event."""

    def __init__(self, ingest: TelemetryIngest) -> None:
        self.ingest = ingest
        self.seqs: list[int] = []
        self.in_order: list[int] = []  # those not flagged late (arrived after a newer one)
        self.events = []

    def drain(self) -> Collector:
        for r in self.ingest.poll_states():
            self.seqs.append(r.message.seq)
            if not r.late:
                self.in_order.append(r.message.seq)
        self.events += self.ingest.poll_events()
        return self

    def kinds(self) -> list[EventKind]:
        return [e.kind for e in self.drain().events]

    def has(self, n: int) -> bool:
        return len(set(self.drain().seqs)) >= n


def test_link_receives_birth_status_and_states(mosquitto_broker):
    """Birth, status and QoS1 joint states flow robot -> Mosquitto -> link -> ingest; the robot's will marks it offline."""
    ingest, link = _link(mosquitto_broker.url, model=Birth(ROBOT, "m", NAMES, 1.0, "x", "json"))
    robot = Robot(mosquitto_broker)
    link.start()
    try:
        assert link.wait_connected(10)
        robot.announce()
        for seq in range(200):
            robot.send(encode_binary(_state(seq)) if seq % 2 else encode_json(_state(seq)))
        got = Collector(ingest)
        assert wait_until(lambda: got.has(200))
        assert got.seqs == list(range(200))
        assert wait_until(lambda: ingest.robot_online is True and ingest.birth is not None)
        robot.client.socket().close()  # the robot dies without DISCONNECT: the broker publishes its will
        assert wait_until(lambda: ingest.robot_online is False, 15)
        kinds = got.kinds()
        assert kinds[:2] == [EventKind.CONNECTING, EventKind.CONNECTED]
        assert {EventKind.BIRTH, EventKind.ROBOT_ONLINE, EventKind.ROBOT_OFFLINE} <= set(kinds)
        assert ingest.clock.samples == 200 and ingest.clock.jumps == 0 and 0 <= ingest.clock.latency_ns < 1e9
    finally:
        link.stop()
        robot.client.loop_stop()


def test_broker_restarts_mid_stream_lose_no_qos1_message(tmp_path):
    """Two broker restarts (SIGTERM, persistence on) during a 1 kHz QoS1 stream: the link reconnects and resubscribes,
    and every sequence number reaches the ingest. What the robot's client resends out of order after reconnecting is
    accepted flagged late (or counted as a duplicate), never silently lost; the rest stays in order."""
    require_mosquitto()
    with Mosquitto(tmp_path / "broker") as broker:
        spy = SeqSpy()
        ingest, link = _link(broker.url, recorder=spy)
        link.start()
        robot = Robot(broker)
        got = Collector(ingest)
        try:
            assert link.wait_connected(10)
            robot.announce()
            for seq in range(900):
                robot.send(encode_binary(_state(seq)))
                if seq in (300, 600):
                    broker.restart()
                time.sleep(0.001)
            assert wait_until(lambda: len(spy.seqs) == 900, 30), (
                f"never reached the twin: {sorted(set(range(900)) - spy.seqs)[:20]}"
            )
            got.drain()
            # What the robot's client resends after a reconnect may arrive after newer samples: it is handed on
            # flagged late (the estimator fuses it at its own time); everything else stays in order.
            assert got.in_order == sorted(set(got.in_order)), "samples not flagged late are in sequence order"
            assert len(got.seqs) == len(set(got.seqs)), "no sample is accepted twice"
            assert max(got.seqs) == 899 and set(got.seqs) == spy.accepted
            assert spy.accepted.isdisjoint(spy.late) and spy.accepted | spy.late == set(range(900))
            stats = ingest.stats
            assert stats.rejected == stats.duplicates + stats.out_of_order and stats.internal_errors == 0
            assert link.health.connects >= 3 and link.health.state is LinkState.CONNECTED
            kinds = got.kinds()
            assert kinds.count(EventKind.DISCONNECTED) >= 2
            resumed = [e for e in got.events if e.kind is EventKind.CONNECTED and e.detail.get("session_present")]
            assert len(resumed) >= 2, [e.message for e in got.events]
        finally:
            link.stop()
            robot.close()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_telemetry_sent_while_the_twin_is_away_arrives_on_return(mosquitto_broker, protocol):
    """With the persistent session (3.1.1 clean_session=False / 5 clean_start=False + expiry), QoS1 telemetry
    published while the twin is stopped is delivered when it starts again with the same client id."""
    ingest, link = _link(mosquitto_broker.url, protocol=protocol)
    robot = Robot(mosquitto_broker)
    try:
        link.start()
        assert link.wait_connected(10)
        link.stop()
        for seq in range(300):
            robot.send(encode_binary(_state(seq)))
        robot.client.publish("sync/probe", b"").wait_for_publish(5)
        link.start()
        got = Collector(ingest)
        assert wait_until(lambda: got.has(300))
        assert got.seqs == list(range(300)) and link.health.session_present
    finally:
        link.stop()
        robot.close()


def test_dead_broker_at_start_is_reported_then_connects(tmp_path):
    """start() never raises for a dead broker: it reports 'unreachable' naming the URL and the fix, retries with
    back-off, connects once the broker is up, and stop() leaves no thread behind."""
    require_mosquitto()
    threads_before = set(threading.enumerate())
    port = free_port()
    ingest, link = _link(f"mqtt://127.0.0.1:{port}", reconnect_min_s=0.05, reconnect_max_s=0.4)
    got = Collector(ingest)
    started = time.monotonic()
    link.start()
    assert time.monotonic() - started < 0.5
    try:
        assert wait_until(lambda: EventKind.UNREACHABLE in got.kinds(), 5)
        event = next(e for e in got.events if e.kind is EventKind.UNREACHABLE)
        assert (
            f"127.0.0.1:{port}" in event.message
            and "connection refused" in event.message
            and "broker.url" in event.message
        )
        assert link.health.state is LinkState.UNREACHABLE and not link.connected
        time.sleep(0.5)
        assert got.kinds().count(EventKind.UNREACHABLE) == 1  # repeated identical failures are one event
        assert link.health.failed_attempts >= 2
        with Mosquitto(tmp_path / "late", port=port):
            assert link.wait_connected(5)
            assert link.health.state is LinkState.CONNECTED
            link.stop()
    finally:
        link.stop()
    assert link.health.state is LinkState.STOPPED
    assert wait_until(lambda: set(threading.enumerate()) <= threads_before, 2), [
        t.name for t in set(threading.enumerate()) - threads_before
    ]


def test_tls_with_a_test_ca_client_certificates_and_wrong_ca(tmp_path, tls_files):
    """TLS: a CA generated in the test verifies the broker; a foreign CA is refused with a message naming
    broker.tls_ca_file; tls_insecure accepts it; mqtt:// to a TLS port is explained; a broker requiring client
    certificates takes ours and explains the missing one."""
    require_mosquitto()
    other = make_tls_files(tmp_path / "other-pki", ca_name="someone else")
    with Mosquitto(tmp_path / "tls", tls=tls_files) as broker:
        assert broker.url.startswith("mqtts://")
        ingest, link = _link(broker.url, tls_ca_file=str(tls_files.ca_cert))
        try:
            link.start()
            assert link.wait_connected(10)
            link.publish(TOPICS.joint_states, encode_binary(_state(1)))  # loop back through the broker
            assert wait_until(lambda: ingest.stats.accepted == 1)
        finally:
            link.stop()
        ingest, link = _link(broker.url, tls_ca_file=str(other.ca_cert), client_id="twin-wrong-ca")
        got = Collector(ingest)
        try:
            link.start()
            assert wait_until(lambda: EventKind.UNREACHABLE in got.kinds(), 10)
            message = next(e for e in got.events if e.kind is EventKind.UNREACHABLE).message
            assert "certificate" in message and "broker.tls_ca_file" in message, message
            assert not link.connected
        finally:
            link.stop()
        ingest, link = _link(broker.url, tls_ca_file=str(other.ca_cert), tls_insecure=True, client_id="twin-insecure")
        try:
            link.start()
            assert link.wait_connected(10)
        finally:
            link.stop()
        ingest, link = _link(broker.url.replace("mqtts://", "mqtt://"), client_id="twin-plain-to-tls")
        got = Collector(ingest)
        try:
            link.start()
            assert wait_until(lambda: EventKind.UNREACHABLE in got.kinds(), 10)
            assert "mqtts://" in next(e for e in got.events if e.kind is EventKind.UNREACHABLE).message
        finally:
            link.stop()
    with Mosquitto(tmp_path / "mtls", tls=tls_files, require_certificate=True) as broker:
        ingest, link = _link(
            broker.url,
            tls_ca_file=str(tls_files.ca_cert),
            tls_cert_file=str(tls_files.client_cert),
            tls_key_file=str(tls_files.client_key),
        )
        try:
            link.start()
            assert link.wait_connected(10)
        finally:
            link.stop()
        ingest, link = _link(broker.url, tls_ca_file=str(tls_files.ca_cert), client_id="twin-no-cert")
        got = Collector(ingest)
        try:
            link.start()
            assert wait_until(lambda: EventKind.UNREACHABLE in got.kinds(), 10)
            assert "tls_cert_file" in next(e for e in got.events if e.kind is EventKind.UNREACHABLE).message
            assert not link.connected
        finally:
            link.stop()


def test_password_authentication(tmp_path, monkeypatch):
    """Right credentials connect (also from the variable named by password_env); wrong ones are 'refused' with a hint."""
    require_mosquitto()
    with Mosquitto(tmp_path / "auth", users={"twin": "s3cret", "robot": "r0b0t"}) as broker:
        ingest, link = _link(broker.url, username="twin", password="s3cret")
        try:
            link.start()
            assert link.wait_connected(10)
        finally:
            link.stop()
        monkeypatch.setenv("TWIN_TEST_MQTT_PASSWORD", "s3cret")
        ingest, link = _link(
            broker.url, username="twin", password="wrong", password_env="TWIN_TEST_MQTT_PASSWORD", client_id="twin-env"
        )
        try:
            link.start()
            assert link.wait_connected(10)
        finally:
            link.stop()
        ingest, link = _link(broker.url, username="twin", password="wrong", client_id="twin-wrong")
        got = Collector(ingest)
        try:
            link.start()
            assert wait_until(lambda: EventKind.REFUSED in got.kinds(), 10)
            message = next(e for e in got.events if e.kind is EventKind.REFUSED).message
            assert "broker.username" in message and broker.url in message, message
            assert link.health.state is LinkState.REFUSED and not link.connected
        finally:
            link.stop()
        assert "password" not in link.health.message.lower().replace("broker.password", "")


def test_password_file_fallback_format_is_accepted_by_mosquitto(tmp_path, monkeypatch):
    """The password file written without mosquitto_passwd ($6$ salted SHA-512) is one mosquitto accepts."""
    require_mosquitto()
    import mosquitto as helper

    monkeypatch.setattr(helper.shutil, "which", lambda name: None if name == "mosquitto_passwd" else "/usr/bin/" + name)
    with Mosquitto(tmp_path / "auth6", users={"twin": "pa55"}) as broker:
        assert "$6$" in (tmp_path / "auth6" / "passwd").read_text()
        ingest, link = _link(broker.url, username="twin", password="pa55")
        try:
            link.start()
            assert link.wait_connected(10)
        finally:
            link.stop()


def test_malformed_payloads_through_the_link_are_refused_and_counted(mosquitto_broker):
    """A corpus of bad payloads interleaved with good ones, through Mosquitto: every good one is accepted in order,
    every bad one refused with a reason, nothing crashes and the link stays up."""
    corpus = [
        b"", b"\x00", b"null", b"[]", b"{}", b"{" * 50_000, b"TWJS", b"TWJS" + bytes(40), b"\x80\x04\x95pickle.",
        b'{"version":1,"robot_id":"panda-7","seq":1,"stamp_ns":1,"name":["a"],"position":[NaN]}',
        b'{"version":99}', b'{"version":1,"robot_id":"panda-7"}', bytes(range(256)) * 300,
    ]  # fmt: skip
    rng = np.random.default_rng(1)
    good = encode_binary(_state(0))
    for _ in range(250):  # deterministic mutations of a good payload: truncations and header corruption
        cut = int(rng.integers(0, len(good)))
        corpus.append(good[:cut])
        corrupt = bytearray(good)
        corrupt[int(rng.integers(4, 23))] ^= 0xFF
        if bytes(corrupt[8:20]) == good[8:20]:  # corruption of seq/stamp bytes would be a valid message
            corpus.append(bytes(corrupt))
    ingest, link = _link(mosquitto_broker.url, model=Birth(ROBOT, "m", NAMES, 1.0, "x", "json"))
    robot = Robot(mosquitto_broker)
    got = Collector(ingest)
    try:
        link.start()
        assert link.wait_connected(10)
        for seq, bad in enumerate(corpus):
            robot.send(bad)
            robot.send(encode_binary(_state(seq)))
        assert wait_until(lambda: ingest.stats.received == 2 * len(corpus), 20), (
            ingest.stats,
            link.health,
            len(robot.client._out_messages),
            mosquitto_broker.log()[-1500:],
        )
        stats = ingest.stats
        assert got.drain().seqs == list(range(len(corpus)))
        assert stats.rejected == len(corpus) and stats.internal_errors == 0
        assert all(reason not in ("duplicate", "out_of_order") for reason in stats.rejected_by_reason)
        assert link.health.state is LinkState.CONNECTED and link.health.connects == 1
    finally:
        link.stop()
        robot.close()


@pytest.mark.parametrize("batched", [True, False])
def test_batched_and_stock_reads_deliver_identical_streams(mosquitto_broker, batched):
    """Packets from 60 bytes to 8 kB, and 300 kB ones straddling several 64 KiB read chunks, arrive intact and in order in both read modes."""
    ingest, link = _link(mosquitto_broker.url, batched_reads=batched, client_id=f"twin-batched-{batched}")
    robot = Robot(mosquitto_broker)
    sizes = [1, 7, 250, 1, 256, 3, 100] * 12
    big = bytes(300_000)  # bigger than the size cap: crosses several chunks, then refused as too_large
    try:
        link.start()
        assert link.wait_connected(10)
        sent = [_state(seq, size) for seq, size in enumerate(sizes)]
        for msg in sent:
            robot.send(encode_binary(msg) if msg.seq % 2 else encode_json(msg))
            if msg.seq % 10 == 0:
                robot.send(big)
        assert wait_until(lambda: ingest.stats.accepted == len(sent) and ingest.stats.rejected == 9, 20), ingest.stats
        received = [r.message for r in ingest.poll_states()]
        assert received == sent and ingest.stats.rejected_by_reason == {"too_large": 9}
        assert max(len(encode_json(m)) for m in sent) > 8_000
    finally:
        link.stop()
        robot.close()


def test_impossible_settings_fail_fast_with_the_key_named(tmp_path):
    """Settings that cannot work raise ConfigError at construction, naming the key; network trouble never raises."""
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id=ROBOT))
    with pytest.raises(ConfigError, match="tls_ca_file"):
        MqttLink(ingest, BrokerSettings(url="mqtts://127.0.0.1:8883", tls_ca_file=str(tmp_path / "missing.pem")))
    with pytest.raises(ConfigError, match="mqtts://"):
        MqttLink(ingest, BrokerSettings(url="mqtt://127.0.0.1:1883", tls_ca_file=str(tmp_path)))
    bad = tmp_path / "bad.pem"
    bad.write_text("not a certificate")
    with pytest.raises(ConfigError, match="not a PEM CA"):
        MqttLink(ingest, BrokerSettings(url="mqtts://127.0.0.1:8883", tls_ca_file=str(bad)))


def test_reconnect_resubscribes_when_the_broker_forgot_the_session(tmp_path):
    """A broker restarted WITHOUT persistence has no session for the twin: the link resubscribes in on_connect,
    says the queued telemetry of the gap is lost, and receives what is published afterwards."""
    require_mosquitto()
    with Mosquitto(tmp_path / "volatile", persistence=False) as broker:
        ingest, link = _link(broker.url)
        got = Collector(ingest)
        try:
            link.start()
            assert link.wait_connected(10)
            broker.restart()
            assert wait_until(lambda: link.health.connects == 2 and link.connected, 10)
            robot = Robot(broker)
            for seq in range(50):
                robot.send(encode_binary(_state(seq)))
            assert wait_until(lambda: got.has(50))
            warning = [e for e in got.events if e.kind is EventKind.CONNECTED][-1].message
            assert "NO session" in warning and "lost" in warning
            robot.close()
        finally:
            link.stop()


def test_a_consumer_that_never_polls_does_not_stall_the_network_thread(mosquitto_broker):
    """With a 100-sample buffer and nobody polling, 3000 QoS1 samples are all received and acknowledged; the
    oldest are dropped and counted, the newest kept, and the link stays connected."""
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id=ROBOT, state_buffer=100, event_buffer=10))
    link = MqttLink(
        ingest, BrokerSettings(url=mosquitto_broker.url, client_id="twin-no-consumer", reconnect_min_s=0.05)
    )
    robot = Robot(mosquitto_broker)
    try:
        link.start()
        assert link.wait_connected(10)
        for seq in range(3000):
            robot.send(encode_binary(_state(seq)))
        assert wait_until(lambda: ingest.stats.accepted == 3000, 20), ingest.stats
        stats = ingest.stats
        assert stats.states_dropped == 2900 and [r.message.seq for r in ingest.poll_states()] == list(range(2900, 3000))
        assert link.connected and link.health.disconnects == 0
    finally:
        link.stop()
        robot.close()
