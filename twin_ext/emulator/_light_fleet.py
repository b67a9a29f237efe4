# SPDX-License-Identifier: Apache-2.0
"""`LightFleet`: many emulated robots from one process — cheap publishers for fleet tests and benchmarks.

No plant: each robot replays a smooth periodic trajectory (sinusoids inside the joint limits, velocities that
match, efforts from the model's inverse dynamics so a health monitor sees a healthy robot), precomputed once
per fleet. Paho connects and sends the QoS 1 births and statuses; the QoS 0 joint states are then written as
ready-made MQTT PUBLISH packets, all that are due in one system call, on the connection paho opened (its network
loop paused meanwhile, the publisher sending its own keep-alive pings). A message costs one ``struct.pack`` and a
few byte joins (~4 µs on a slow core) instead of a paho publish (~50 µs there): on a 2-core machine the load
generator of a 20k msg/s benchmark would otherwise take a whole core from the twin it measures.
Every robot announces itself with a retained ``birth`` and ``status``; some can misbehave:

* ``garbage``: every other message is random bytes (and one birth is not JSON);
* ``flood``: publishes ``flood_factor`` x its rate;
* ``clock_jump``: its clock jumps ``clock_jump_s`` forward half-way through the run.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import parse_broker_url
from ..telemetry import BINARY_MAGIC, SCHEMA_VERSION, Birth, Status, Topics, encode_birth, encode_status

__all__ = ["MISBEHAVIOURS", "LightFleet", "LightFleetStats"]

MISBEHAVIOURS = ("garbage", "flood", "clock_jump")
_HEADER = struct.Struct("<4sBBHIqBH")
_PINGREQ = b"\xc0\x00"
_PING_EVERY_S = 10.0  # the connection's keep-alive is 30 s


def _publish_packet(topic: bytes, payload: bytes) -> bytes:
    """One MQTT PUBLISH packet, QoS 0, not retained (3.1.1 and 5 alike without properties; 5 is not used here)."""
    length = 2 + len(topic) + len(payload)
    head = bytearray([0x30])
    while True:
        byte, length = length & 0x7F, length >> 7
        head.append(byte | (0x80 if length else 0))
        if not length:
            break
    return bytes(head) + struct.pack("!H", len(topic)) + topic + payload


class _RawStream:
    """Writes QoS 0 PUBLISH packets on the socket of a connected paho client whose network loop is stopped; sends a
    PINGREQ every ``_PING_EVERY_S`` and drops what the broker sends back (PINGRESPs: nothing is subscribed)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending: list[bytes] = []
        self._next_ping = time.monotonic() + _PING_EVERY_S
        sock.settimeout(5.0)  # paho left it non-blocking; a full buffer now waits (the publisher falls behind)

    def publish(self, topic: str, payload: bytes, qos: int = 0) -> None:
        self.pending.append(_publish_packet(topic.encode(), payload))

    def flush(self) -> None:
        if self.pending:
            self.sock.sendall(b"".join(self.pending))
            self.pending.clear()
        now = time.monotonic()
        if now >= self._next_ping:
            self._next_ping = now + _PING_EVERY_S
            self.sock.sendall(_PINGREQ)
            while select.select([self.sock], [], [], 0)[0]:
                if not self.sock.recv(4096):
                    raise ConnectionError("the broker closed the connection")

    def close(self) -> None:
        self.flush()
        self.sock.setblocking(False)


@dataclass(frozen=True)
class LightFleetStats:
    """What a `LightFleet` run published."""

    robots: int
    published: int
    seconds: float
    rate_hz: float
    """Achieved messages per second over the run (all robots)."""
    behind_s: float
    """How far the publisher fell behind its schedule at the end, s (0: it kept up)."""


class LightFleet:
    """Publishes joint states of ``robot_ids`` at ``rate_hz`` each over one MQTT connection.

    Args:
        robot_ids: the robots.
        model: a `RobotModel` (joint names, limits; inverse dynamics for the efforts).
        url: broker URL (``mqtt://127.0.0.1:1883``).
        rate_hz: joint states per second per robot, Hz.
        misbehave: ``{robot_id: one of MISBEHAVIOURS}``.
        model_id: the ``model_id`` the births announce.
        prefix: topic prefix.
        flood_factor: a flooding robot's rate multiple.
        clock_jump_s: a jumping robot's clock step, s.
    """

    def __init__(
        self,
        robot_ids: Sequence[str],
        model: Any,
        url: str,
        *,
        rate_hz: float = 200.0,
        misbehave: Mapping[str, str] | None = None,
        model_id: str = "franka_panda",
        prefix: str = "twin/v1",
        flood_factor: float = 20.0,
        clock_jump_s: float = 30.0,
    ) -> None:
        self.robot_ids = list(robot_ids)
        self.model = model
        self.address = parse_broker_url(url)
        self.rate_hz = float(rate_hz)
        self.misbehave = dict(misbehave or {})
        for rid, what in self.misbehave.items():
            if what not in MISBEHAVIOURS:
                raise ValueError(f"misbehave[{rid!r}] = {what!r}: use one of {list(MISBEHAVIOURS)}")
        self.model_id = model_id
        self.prefix = prefix
        self.flood_factor = flood_factor
        self.clock_jump_s = clock_jump_s
        self._stop = threading.Event()
        self._cycle = _trajectory_cycle(model, rate_hz)
        names = tuple(model.dof_names)
        table = b"".join(bytes([len(n.encode())]) + n.encode() for n in names)
        self._templates = {}
        for rid in self.robot_ids:
            rb = rid.encode("ascii")
            self._templates[rid] = (len(names), rb, table)
        self.boot = {rid: uuid.uuid4().hex[:12] for rid in self.robot_ids}

    def payload(self, robot_id: str, seq: int, stamp_ns: int, k: int) -> bytes:
        """The binary joint-state payload of ``robot_id`` number ``seq`` at ``stamp_ns`` (robot clock, ns), sample
        ``k`` of the cycle (the codec of `twin_ext.telemetry.encode_binary`)."""
        n, rb, table = self._templates[robot_id]
        header = _HEADER.pack(BINARY_MAGIC, SCHEMA_VERSION, 0x03, n, seq & 0xFFFFFFFF, stamp_ns, len(rb), len(table))
        return header + rb + table + self._cycle[k % len(self._cycle)]

    def stop(self) -> None:
        self._stop.set()

    def run(
        self, duration_s: float, *, announce: bool = True, start_at: float | None = None, forget: bool = False
    ) -> LightFleetStats:
        """Publish for ``duration_s`` (or until `stop`), on the calling thread; returns what was achieved.

        ``start_at``: a ``time.monotonic()`` instant to start publishing at (after connecting and announcing), so
        several processes publish over one window (the monotonic clock is shared by the processes of a machine).
        ``forget``: clear the robots' retained birth and status at the end (the broker would otherwise announce
        them to every twin that connects later).
        """
        import paho.mqtt.client as mqtt

        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=f"lightfleet-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        )
        client.max_queued_messages_set(0)
        client.max_inflight_messages_set(1000)
        client.connect(self.address.host, self.address.port, keepalive=30)
        client.loop_start()
        try:
            if announce:
                for rid in self.robot_ids:
                    self.announce(client, rid)
            if start_at is not None:
                time.sleep(max(0.0, start_at - time.monotonic()))
            stats = self._stream(client, duration_s)
            if forget:
                for rid in self.robot_ids:
                    topics = Topics(rid, self.prefix)
                    client.publish(topics.birth, b"", qos=1, retain=True)
                    info = client.publish(topics.status, b"", qos=1, retain=True)
                info.wait_for_publish(5.0)
            return stats
        finally:
            client.loop_stop()
            client.disconnect()

    def announce(self, client: Any, robot_id: str) -> None:
        """Publish ``robot_id``'s retained birth and ``online`` status (QoS 1)."""
        topics = Topics(robot_id, self.prefix)
        if self.misbehave.get(robot_id) == "garbage":
            client.publish(topics.birth, b"\x00not a birth{", qos=1)  # a garbage birth (not retained) first
        birth = Birth(robot_id=robot_id, model_id=self.model_id, joint_names=tuple(self.model.dof_names),
                      rate_hz=self.rate_hz, boot_id=self.boot[robot_id], codec="binary")  # fmt: skip
        client.publish(topics.birth, encode_birth(birth), qos=1, retain=True)
        client.publish(
            topics.status, encode_status(Status(robot_id, "online", self.boot[robot_id])), qos=1, retain=True
        )

    def _stream(self, client: Any, duration_s: float) -> LightFleetStats:
        """The joint states as raw packets on paho's connection (`_RawStream`), paho's loop paused; with paho's own
        publish if its socket is not a plain one (a proxy or websocket wrapper) or the announcements are unsent."""
        sock = client.socket()
        deadline = time.monotonic() + 5.0
        while (client._out_messages or client._out_packet) and time.monotonic() < deadline:
            time.sleep(0.005)  # the QoS 1 announcements on the wire first: the stream must not cut into them
        if not isinstance(sock, socket.socket) or client._out_packet:
            return self._publish_loop(client.publish, duration_s)
        client.loop_stop()
        stream = _RawStream(sock)
        try:
            return self._publish_loop(stream.publish, duration_s, flush=stream.flush)
        finally:
            stream.close()
            client.loop_start()

    def _publish_loop(self, publish: Any, duration_s: float, flush: Any = None) -> LightFleetStats:
        rng = np.random.default_rng(7)
        topics = {rid: Topics(rid, self.prefix).joint_states for rid in self.robot_ids}
        period_ns = int(1e9 / self.rate_hz)
        start = time.monotonic_ns()
        end = start + int(duration_s * 1e9)
        robot_clock0 = time.time_ns()  # each robot's own clock: here the wall clock, with an offset
        n = len(self.robot_ids)
        # Robots are phased evenly over one period, so the broker sees a steady stream, not bursts.
        phase = {rid: (i * period_ns) // max(n, 1) for i, rid in enumerate(self.robot_ids)}
        seq = dict.fromkeys(self.robot_ids, 0)
        published = 0
        flooders = [rid for rid, w in self.misbehave.items() if w == "flood" and rid in seq]
        flood_seq = dict.fromkeys(flooders, 0)
        now = start
        while not self._stop.is_set():
            now = time.monotonic_ns()
            if now >= end:
                break
            elapsed = now - start
            for rid in self.robot_ids:
                due = (elapsed - phase[rid]) // period_ns + 1
                what = self.misbehave.get(rid)
                while seq[rid] < due:
                    k = seq[rid]
                    stamp = robot_clock0 + phase[rid] + k * period_ns
                    if what == "clock_jump" and k * period_ns > duration_s * 0.5e9:
                        stamp += int(self.clock_jump_s * 1e9)
                    if what == "garbage" and k % 2:
                        payload = rng.bytes(int(rng.integers(1, 300)))
                    else:
                        payload = self.payload(rid, k, stamp, k)
                    publish(topics[rid], payload, qos=0)
                    seq[rid] = k + 1
                    published += 1
            for rid in flooders:
                due = int(elapsed * self.flood_factor // period_ns)
                while flood_seq[rid] < due:
                    publish(topics[rid], rng.bytes(64), qos=0)  # extra, unparseable: pure load
                    flood_seq[rid] += 1
                    published += 1
            if flush is not None:
                flush()
            time.sleep(0.0005)
        seconds = max((now - start) * 1e-9, 1e-9)
        expected = min(seconds, duration_s) * self.rate_hz * n
        behind = max(0.0, (expected - (published - sum(flood_seq.values()))) / max(self.rate_hz * n, 1e-9))
        return LightFleetStats(n, published, seconds, published / seconds, behind)


def _trajectory_cycle(model: Any, rate_hz: float, period_s: float = 4.0) -> list[bytes]:
    """One period of the trajectory as packed ``position | velocity | effort`` f64 blocks, one per sample."""
    from ..robot import RigidBodyDynamics

    lower = np.asarray(model.lower, dtype=float)
    upper = np.asarray(model.upper, dtype=float)
    finite = np.isfinite(lower) & np.isfinite(upper)
    mid = np.where(finite, 0.5 * (lower + upper), 0.0)
    amp = np.where(finite, 0.2 * (upper - lower), 0.3)
    vmax = np.asarray(model.velocity_limit, dtype=float)
    w = 2 * np.pi / period_s
    amp = np.minimum(amp, np.where(np.isfinite(vmax) & (vmax > 0), 0.5 * vmax / w, amp))
    k = max(2, int(round(period_s * rate_hz)))
    t = np.arange(k) / rate_hz
    phase = np.arange(model.ndof)[None, :]
    q = mid + amp * np.sin(w * t[:, None] + phase)
    qd = amp * w * np.cos(w * t[:, None] + phase)
    qdd = -amp * w * w * np.sin(w * t[:, None] + phase)
    try:
        tau = RigidBodyDynamics(model).inverse_dynamics(q, qd, qdd)
    except Exception:  # noqa: BLE001 - a model without inertias: no efforts worth sending
        tau = np.zeros_like(q)
    return [np.concatenate([q[i], qd[i], tau[i]]).astype("<f8").tobytes() for i in range(k)]
