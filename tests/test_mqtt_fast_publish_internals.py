# SPDX-License-Identifier: Apache-2.0
"""The batched reader's fast PUBLISH path hands on exactly what paho would, and leaves everything else to paho."""

from __future__ import annotations

import socket
import struct
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from twin_ext.telemetry._mqtt_link import _RX_CHUNK, BatchedReadClient


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _publish(topic: str, payload: bytes, *, qos=0, mid=0, retain=False, v5=False, props=b"") -> bytes:
    raw = topic.encode()
    body = struct.pack("!H", len(raw)) + raw
    if qos:
        body += struct.pack("!H", mid)
    if v5:
        body += _varint(len(props)) + props
    body += payload
    return bytes([0x30 | qos << 1 | int(retain)]) + _varint(len(body)) + body


def _feed(stream: bytes, *, v5: bool, fast: bool):
    """Feed ``stream`` to a client over a socket pair; returns (messages, outcome, acks sent back)."""
    theirs, ours = socket.socketpair()
    ours.setblocking(False)
    protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
    client = BatchedReadClient(CallbackAPIVersion.VERSION2, protocol=protocol)
    got: list[tuple[str, bytes, bool]] = []
    client.on_message = lambda c, u, m: got.append((m.topic, bytes(m.payload), bool(m.retain)))
    taken = []
    if fast:

        def on_fast(topic: str, payload: bytes, retain: bool) -> None:
            taken.append(topic)
            got.append((topic, payload, retain))

        client.fast_on_message = on_fast
    client._sock = ours
    writer = threading.Thread(target=theirs.sendall, args=(stream,), daemon=True)
    writer.start()
    outcome = "ok"
    deadline = time.monotonic() + 20.0
    idle = 0
    try:
        while idle < 20 and time.monotonic() < deadline:  # until the writer is done and 20 reads found nothing
            before = len(got)
            rc = client.loop_read()
            if rc != mqtt.MQTT_ERR_SUCCESS:
                outcome = f"rc {int(rc)}"
                break
            idle = idle + 1 if len(got) == before and not writer.is_alive() else 0
            if len(got) == before:
                time.sleep(0.001)
    except Exception as exc:  # noqa: BLE001 - the outcome is compared between the two paths
        outcome = type(exc).__name__
    writer.join(5.0)
    theirs.setblocking(False)
    acks = b""
    try:
        while chunk := theirs.recv(65536):
            acks += chunk
    except BlockingIOError:
        pass
    theirs.close()
    ours.close()
    _feed.fast_taken = len(taken)
    return got, outcome, acks


def _mixed_stream(v5: bool) -> bytes:
    """Over 2 chunks of packets of odd sizes (some cut by a chunk's end), QoS 0 and 1, retained ones, QoS 2, and
    (MQTT 5) one with properties."""
    packets = []
    for k in range(1500):
        payload = bytes([k % 251]) * (37 + (k * 13) % 180)
        qos = 1 if k % 5 == 0 else 0
        packets.append(_publish(f"twin/v1/r{k % 7}/joint_states", payload, qos=qos, mid=k + 1 if qos else 0,
                                retain=k % 11 == 0, v5=v5))  # fmt: skip
        if k == 300:
            packets.append(_publish("twin/v1/r1/status", b"qos2", qos=2, mid=9999, v5=v5))
        if k == 400 and v5:
            packets.append(_publish("twin/v1/r2/birth", b"props", v5=True, props=b"\x02\x00\x00\x00\x3c"))
    stream = b"".join(packets)
    assert len(stream) > 2 * _RX_CHUNK
    return stream


@pytest.mark.parametrize("v5", [False, True], ids=["mqtt311", "mqtt5"])
def test_fast_path_delivers_what_paho_delivers_and_acks_every_qos1(v5):
    """Same messages in the same order (topic, payload, retain) and the same PUBACKs as paho's own parser."""
    stream = _mixed_stream(v5)
    slow, slow_outcome, slow_acks = _feed(stream, v5=v5, fast=False)
    quick, quick_outcome, quick_acks = _feed(stream, v5=v5, fast=True)
    assert slow_outcome == quick_outcome == "ok"
    assert len(slow) == 1500 + 1 * v5  # the QoS 2 message waits for its PUBREL (paho's part)
    assert quick == slow
    assert _feed.fast_taken > 1400  # the fast path took all but the few packets cut by a chunk's end
    puback = b"".join(struct.pack("!BBH", 0x40, 2, k + 1) for k in range(0, 1500, 5))
    assert quick_acks.replace(b"\x50\x02\x27\x0f", b"") == puback  # besides the QoS 2 packet's PUBREC
    assert slow_acks.replace(b"\x50\x02\x27\x0f", b"") == puback


@pytest.mark.parametrize(
    "bad",
    [
        b"\x30\x05\x00\x09twin",  # topic length beyond the packet
        b"\x30\xff\xff\xff\xff\x01",  # remaining length of five bytes
        b"\x32\x08\x00\x04twin\x00\x00",  # QoS 1 with packet id 0
        b"\x30\x06\x00\x02\xff\xfeok",  # topic not UTF-8
    ],
    ids=["topic-too-long", "length-5-bytes", "mid-0", "topic-not-utf8"],
)
def test_fast_path_leaves_malformed_packets_to_paho(bad):
    """After good packets, a malformed one ends the same way with the fast path as without (paho decides)."""
    good = b"".join(_publish(f"twin/v1/r{k}/joint_states", b"x" * 40) for k in range(5))
    slow = _feed(good + bad, v5=False, fast=False)
    quick = _feed(good + bad, v5=False, fast=True)
    assert quick[0][:5] == slow[0][:5] == [(f"twin/v1/r{k}/joint_states", b"x" * 40, False) for k in range(5)]
    assert quick == slow


def test_fast_path_takes_packets_that_arrive_one_read_at_a_time():
    """A twin that keeps up reads a packet or two per wake-up: the fast path takes those too, not paho."""
    theirs, ours = socket.socketpair()
    ours.setblocking(False)
    client = BatchedReadClient(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv311)
    slow: list[str] = []
    fast: list[str] = []
    client.on_message = lambda c, u, m: slow.append(m.topic)
    client.fast_on_message = lambda topic, payload, retain: fast.append(topic)
    client._sock = ours
    client._tw_sock = ours  # as after a connection's first read (its CONNACK, which is paho's)
    topics = [f"twin/v1/r{k}/joint_states" for k in range(60)]
    try:
        for topic in topics:
            theirs.sendall(_publish(topic, b"x" * 90))
            deadline = time.monotonic() + 5.0
            while topic not in fast and topic not in slow and time.monotonic() < deadline:
                assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
                time.sleep(0.0005)
    finally:
        theirs.close()
        ours.close()
    assert fast == topics
    assert slow == []


def test_packets_arrive_when_their_chunk_was_read_not_when_the_parser_reaches_them():
    """Through the link's own client: every joint state of one socket read gets the twin-clock time of that read
    (one clock reading per chunk), so handling the first packets of a 64 KiB chunk does not make the last ones look
    younger (the receive -> state latency and the clock sync's arrival times start at the read)."""
    import numpy as np

    from twin_ext.telemetry import BrokerSettings, JointState, TelemetryIngest, TelemetrySettings, Topics, encode_binary
    from twin_ext.telemetry._mqtt_link import MqttLink

    clock = [1_000_000_000]

    def now_ns() -> int:  # every reading of the twin clock is 1 ms later than the one before
        clock[0] += 1_000_000
        return clock[0]

    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="r1", state_buffer=1000), now_ns=now_ns)
    link = MqttLink(ingest, BrokerSettings(url="mqtt://127.0.0.1:1"), now_ns=now_ns)
    client = link._make_client()
    theirs, ours = socket.socketpair()
    ours.setblocking(False)
    client._sock = client._tw_sock = ours  # as after the connection's first read (its CONNACK)
    link._client = client
    topic = Topics("r1").joint_states
    names = tuple(f"j{i}" for i in range(7))

    def states(first: int, count: int) -> bytes:
        return b"".join(
            _publish(topic, encode_binary(JointState("r1", k, k * 5_000_000, names, np.zeros(7), np.zeros(7))))
            for k in range(first, first + count)
        )

    def read_all(expected: int) -> list[int]:
        deadline = time.monotonic() + 5.0
        got: list[int] = []
        while len(got) < expected and time.monotonic() < deadline:
            assert client.loop_read() == mqtt.MQTT_ERR_SUCCESS
            got += [r.arrival_ns for r in ingest.poll_states()]
        return got

    try:
        theirs.sendall(states(0, 40))
        first = read_all(40)
        read_at = client.read_ns
        theirs.sendall(states(40, 5))
        second = read_all(5)
    finally:
        theirs.close()
        ours.close()
    assert first == [read_at] * 40  # one chunk: one stamp, taken at the read
    assert len(set(second)) == 1 and second[0] > read_at
