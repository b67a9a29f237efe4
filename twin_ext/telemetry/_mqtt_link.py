# SPDX-License-Identifier: Apache-2.0
"""`MqttLink`: the twin's MQTT connection (paho-mqtt 2.x, callback API v2) feeding a `TelemetryIngest`.

Behaviour:

* Connects with host/port/TLS/credentials/client id/keepalive from `BrokerSettings`; subscribes in
  ``on_connect``, so every reconnect resubscribes (and gets the retained birth/status again).
* Persistent session: MQTT 3.1.1 ``clean_session=False`` (default) or MQTT 5 ``clean_start=False``
  with a session expiry. With a stable client id the broker keeps the subscriptions and queues
  QoS1 telemetry while the twin is away (including across a broker restart if the broker
  persists its state); the queue is delivered on reconnect and duplicates are dropped by sequence
  number. 3.1.1 is the default for speed (see `BrokerSettings.protocol`).
* Never raises into the twin for network trouble: a dead broker at start, a refused login, a TLS
  failure or a lost connection become `LinkEvent` s (``ingest.poll_events()``) and the `health`
  state, each with a message that names the URL and the fix; paho retries with exponential
  back-off (``reconnect_min_s`` doubling to ``reconnect_max_s``) for as long as the link runs.
* The network thread only decodes, validates and appends to bounded buffers (`TelemetryIngest`);
  it never waits for the consumer. QoS1 messages are acknowledged after they are in the buffer.
* The twin's own health is published retained on ``<prefix>/<robot_id>/twin/status``
  (``online`` on connect, ``offline`` on stop and as the MQTT will), with an instance id, host, pid and
  start time. The link subscribes to that topic too: another twin's ``offline`` (it stopped) is answered
  by re-publishing this twin's ``online``; another twin with the SAME client id (the broker lets only one
  connect and kicks the other) makes the older twin stop connecting with a `CONFLICT` event naming the fix
  (``broker.client_id``) instead of both fighting over one session.
* `start` returns at once; `stop` disconnects and joins the network thread (no thread is left).

Batched reads: stock paho reads every packet with three ``recv`` calls (command byte, length,
body) after a ``select``. With ``batched_reads`` the link's client reads up to 64 KiB per system
call and parses every complete packet in it per wake-up, which doubled the QoS1 receive rate in
our measurements. It is a small, feature-detected override of two paho internals; if a paho
release renames them, the link falls back to stock paho and says so in an event.

Fast publishes: the plain PUBLISH packets of such a chunk (QoS 0 or 1, no MQTT 5 properties: what robots send)
are cut out of it by the client itself and handed to ``fast_on_message`` as ``(topic, payload, retain)``,
without paho's per-packet message object, logging and callback dispatch (~20 µs per packet on a slow core,
measured: ``python -m twin_ext.bench telemetry``). Everything else — a packet cut by the chunk's end, QoS 2,
properties (topic aliases), a malformed or non-UTF-8 packet, and every other packet type — goes through paho
as before, which keeps its protocol checks and errors.
"""

from __future__ import annotations

import enum
import json
import os
import socket
import ssl
import struct
import threading
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from ..config import ConfigError
from ._events import EventKind
from ._ingest import TelemetryIngest
from ._settings import BrokerSettings

__all__ = ["BATCHED_READS_AVAILABLE", "BatchedReadClient", "LinkHealth", "LinkState", "MqttLink"]

_RX_CHUNK = 65536  # bytes per recv() in batched mode
_RX_REFILLS = 16  # recv() calls per wake-up before paho gets to write acks and pings (<= 1 MiB)
_ACK_EVERY = 8  # packets parsed between flushes of queued acks
BATCHED_READS_AVAILABLE = all(
    hasattr(mqtt.Client, name) for name in ("_sock_recv", "_packet_read", "_packet_queue", "_send_puback", "loop_read")
)
"""Whether this paho release has the internals the batched reader overrides."""
_PUBACK = 0x40  # MQTT control packet type 4 << 4
_TAKEOVER_S = 10.0  # a twin status claiming our client id this soon after we lost our connection: a takeover
_PUBACK_PACKET = struct.Struct("!BBH")  # type, remaining length 2, packet id


class LinkState(str, enum.Enum):
    """Connection state of the link (the value is the stable string shown in UIs)."""

    STOPPED = "stopped"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    """Lost an established connection; retrying with back-off."""
    UNREACHABLE = "unreachable"
    """Cannot reach the broker (refused, DNS, timeout, TLS); retrying with back-off."""
    REFUSED = "refused"
    """The broker refused the login (credentials, client id, protocol); retrying with back-off."""
    CONFLICT = "conflict"
    """Another twin uses the same client id; this one stopped connecting (see the message for the fix)."""


@dataclass(frozen=True)
class LinkHealth:
    """The link's state at one moment.

    Attributes:
        state: `LinkState`.
        message: one sentence for the user (names the URL, and the fix when something is wrong).
        since_ns: twin clock when the state was entered, ns.
        url: broker URL (without credentials).
        connects: successful connections so far; ``disconnects``: connections lost so far.
        failed_attempts: failed connection attempts since the last success.
        session_present: whether the broker resumed our session at the last connect.
    """

    state: LinkState
    message: str
    since_ns: int
    url: str
    connects: int
    disconnects: int
    failed_attempts: int
    session_present: bool


def _set_tcp_nodelay(client: Any, userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (e.g. a proxy wrapper): keep the default
        pass


class BatchedReadClient(mqtt.Client):
    """A paho-mqtt ``Client`` that reads the socket in 64 KiB chunks and parses every packet in them per wake-up
    (instead of paho's three system calls per packet), with TCP_NODELAY, and keeps the last connection error
    for messages. Same API as ``paho.mqtt.client.Client``; the benchmarks' publisher uses it too."""

    def __init__(self, *args: Any, batched_reads: bool = True, tcp_nodelay: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if tcp_nodelay:
            # Acks and small publishes go out at once instead of waiting for Nagle's algorithm
            # (which, with the peer's delayed ACKs, adds up to tens of ms on a quiet link).
            self.on_socket_open = _set_tcp_nodelay
        self._tw_batched = batched_reads and BATCHED_READS_AVAILABLE
        # the paho internals the fast PUBLISH path reads (instance attributes: checked on the instance)
        self._tw_fast_ok = all(
            hasattr(self, name)
            for name in ("_in_packet", "_msgtime_mutex", "_in_callback_mutex", "_manual_ack", "_protocol", "_easy_log")
        )
        self._tw_buf = b""
        self._tw_pos = 0
        self._tw_sock: Any = None
        self._tw_refills = 0
        self._tw_blocked = False
        self._tw_in_read = False
        self._tw_acks = bytearray()  # PUBACKs of the batch being parsed, sent together
        self.fast_on_message: Callable[[str, bytes, bool], None] | None = None
        """``(topic, payload, retain)`` for each plain PUBLISH (QoS 0/1, no MQTT 5 properties) of a batched read,
        called on the network thread instead of ``on_message`` (and instead of ``message_callback_add`` callbacks:
        set it only when there are none); QoS 1 packets are acknowledged after it returns. None = paho's way."""
        self.last_connect_error: BaseException | None = None
        self.last_socket_error: BaseException | None = None
        self.read_clock: Callable[[], int] | None = None
        """With batched reads: the clock (int ns) read after each chunk arrives, into ``read_ns``."""
        self.read_ns = 0
        """With batched reads and a ``read_clock``: when the chunk holding the packet being handled was read, int
        ns (0 before the first). A packet's arrival is when its last byte came off the socket, not when the parser
        reaches it: a 64 KiB chunk holds ~300 joint states, and the last is handled milliseconds after the read."""

    def reconnect(self) -> MQTTErrorCode:
        self.last_connect_error = self.last_socket_error = None
        try:
            return super().reconnect()
        except OSError as exc:  # includes ssl.SSLError and socket.gaierror
            self.last_connect_error = exc
            raise

    def _recv(self, bufsize: int) -> bytes:
        try:
            return super()._sock_recv(bufsize)
        except BlockingIOError:
            raise
        except OSError as exc:  # kept to explain a connection that dies before the broker's CONNACK
            self.last_socket_error = exc
            raise

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._tw_batched:
            return self._recv(bufsize)
        buf, pos = self._tw_buf, self._tw_pos
        if self._tw_sock is not self._sock:  # a new connection: never parse bytes of an old one
            buf, pos, self._tw_sock = b"", 0, self._sock
        if pos >= len(buf):
            self._tw_buf, self._tw_pos = b"", 0
            if self._tw_refills <= 0:
                self._tw_blocked = True
                raise BlockingIOError  # budget spent: let paho write acks/pings, select, come back
            self._tw_refills -= 1
            try:
                buf = self._recv(_RX_CHUNK)
            except BlockingIOError:
                self._tw_blocked = True
                raise
            if not buf:
                return buf  # EOF: paho reports the connection as lost
            if self.read_clock is not None:
                self.read_ns = self.read_clock()
            pos = 0
        chunk = buf[pos : pos + bufsize]
        self._tw_buf, self._tw_pos = buf, pos + len(chunk)
        return chunk

    def _take_plain_publishes(self) -> int:
        """Hand every complete plain PUBLISH at the front of the read buffer to ``fast_on_message`` (see the
        module's "Fast publishes"); stop at the first packet paho must see. Returns how many were taken."""
        buf, pos = self._tw_buf, self._tw_pos
        end = len(buf)
        handler = self.fast_on_message
        v5 = self._protocol == MQTTProtocolVersion.MQTTv5
        taken = 0
        while pos + 4 <= end:
            head = buf[pos]
            if head & 0xF0 != 0x30 or head & 0x06 > 0x02:  # not a PUBLISH, or QoS 2 (or the invalid QoS 3)
                break
            # remaining length: 1-4 bytes, 7 bits each, least significant first
            i, length, shift = pos + 1, 0, 0
            while i < end and i - pos <= 4:
                byte = buf[i]
                length |= (byte & 0x7F) << shift
                i += 1
                if byte < 0x80:
                    break
                shift += 7
            else:
                break  # cut by the buffer's end, or more than 4 length bytes (paho reports the protocol error)
            stop = i + length
            if stop > end or length < 2:
                break
            topic_end = i + 2 + ((buf[i] << 8) | buf[i + 1])
            if topic_end == i + 2:
                break  # empty topic: invalid in 3.1.1, a topic alias in 5
            body, mid = topic_end, 0
            if head & 0x06:  # QoS 1: a packet id follows the topic
                if body + 2 > stop:
                    break
                mid = (buf[body] << 8) | buf[body + 1]
                body += 2
                if mid == 0:
                    break  # invalid: paho's decoder answers it
            if v5:
                if body >= stop or buf[body] != 0:
                    break  # properties (e.g. a topic alias): paho's decoder
                body += 1
            if body > stop:
                break  # the topic runs past the packet: paho reports the malformed packet
            try:
                topic = buf[i + 2 : topic_end].decode("utf-8")
            except UnicodeDecodeError:
                break
            pos = stop
            self._tw_pos = pos  # consumed before the callback, which may raise
            with self._in_callback_mutex:
                try:
                    handler(topic, buf[body:stop], bool(head & 0x01))
                except Exception as err:
                    self._easy_log(mqtt.MQTT_LOG_ERR, "Caught exception in fast_on_message: %s", err)
                    if not self.suppress_exceptions:
                        raise
            taken += 1
            if mid:
                self._send_puback(mid)
                if taken % _ACK_EVERY == 0:
                    self._flush_acks()
                    if self._sock is None:
                        break
        return taken

    def _send_puback(self, mid: int) -> MQTTErrorCode:
        if self._tw_in_read:
            # Coalesce: one write for the acks of several packets (paho: a socketpair wake-up write
            # plus one send() per ack, ~15 µs of system calls per QoS1 message).
            self._tw_acks += _PUBACK_PACKET.pack(_PUBACK, 2, mid)
            return MQTTErrorCode.MQTT_ERR_SUCCESS
        return super()._send_puback(mid)

    def _flush_acks(self) -> MQTTErrorCode:
        if self._tw_acks:
            acks = bytes(self._tw_acks)
            self._tw_acks.clear()
            super()._packet_queue(_PUBACK, acks, 0, 0)
        if self._out_packet:
            return self.loop_write()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    def loop_read(self, max_packets: int = 1) -> MQTTErrorCode:
        if not self._tw_batched:
            return super().loop_read(max_packets)
        # Parse every packet available (bounded by _RX_REFILLS reads), one paho packet at a time,
        # and send the acks every few packets: the broker holds back QoS1 messages beyond its
        # in-flight window (mosquitto: 20) until they are acknowledged, so acks must not wait for
        # the whole batch to be parsed.
        self._tw_refills = _RX_REFILLS
        self._tw_blocked = False
        self._tw_in_read = True
        packets = 0
        fast = self.fast_on_message is not None and self._tw_fast_ok and not self._manual_ack
        try:
            while True:
                if fast and self._in_packet["command"] == 0 and self._tw_sock is self._sock:
                    if self._tw_pos >= len(self._tw_buf):
                        # Refill here, consuming nothing: else paho's parser would take the first packet of
                        # every read, and a twin that keeps up reads a few packets at a time.
                        try:
                            self._sock_recv(0)
                        except BlockingIOError:
                            return MQTTErrorCode.MQTT_ERR_SUCCESS  # nothing more now (or budget spent)
                        except OSError:
                            pass  # paho's read below meets the error again and reports the connection lost
                    taken = self._take_plain_publishes()
                    if taken:
                        packets += taken
                        with self._msgtime_mutex:
                            self._last_bytes_received = time.monotonic()  # paho's keepalive clock
                        if self._sock is None:
                            return MQTTErrorCode.MQTT_ERR_CONN_LOST
                rc = super().loop_read(1)
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None:
                    return rc
                packets += 1
                if self._tw_blocked or packets % _ACK_EVERY == 0:
                    rc = self._flush_acks()
                    if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or self._sock is None or self._tw_blocked:
                        return rc
        finally:
            self._tw_in_read = False
            if self._tw_acks and self._sock is not None:
                self._flush_acks()


_CONNACK_HINTS = {
    # MQTT 3.1.1 return codes / MQTT 5 reason code names, as paho's ReasonCode.getName() spells them
    "Unsupported protocol version": "the broker does not speak this MQTT version: set broker.protocol to '3.1.1' or '5'",
    "Client identifier not valid": "the broker refused the client id: set broker.client_id to a short alphanumeric id",
    "Server unavailable": "the broker is not accepting connections right now; it will be retried",
    "Bad user name or password": "check broker.username and broker.password (or the variable named by broker.password_env)",
    "Not authorized": "the broker refused these credentials or this client: check broker.username/password and the broker's ACL",
    "Banned": "the broker banned this client: ask its administrator",
    "Bad authentication method": "the broker expects another authentication method",
}


def _describe_early_close(exc: BaseException | None, settings: BrokerSettings) -> str:
    """Why a connection closed before the broker accepted the MQTT login (no CONNACK)."""
    url = settings.redacted_url()
    text = f"{getattr(exc, 'reason', '') or ''} {exc or ''}".lower()
    if isinstance(exc, ssl.SSLError) and "certificate required" in text.replace("_", " "):
        return f"the broker at {url} requires a client certificate: set broker.tls_cert_file and broker.tls_key_file"
    if isinstance(exc, ssl.SSLError):
        return f"the TLS session with {url} failed ({exc.reason or exc}): check the broker's TLS settings, broker.tls_cert_file/tls_key_file and broker.tls_ca_file"
    if settings.use_tls:
        return f"{url} closed the connection before accepting the MQTT login: is it a TLS listener, and does it require a client certificate (broker.tls_cert_file/tls_key_file)?"
    return f"{url} closed the connection before accepting the MQTT login: is it an MQTT port? A TLS listener needs mqtts:// in broker.url"


def _describe_connect_error(exc: BaseException | None, settings: BrokerSettings) -> str:
    url = settings.redacted_url()
    if exc is None:
        return f"cannot connect to MQTT broker {url}: is it running and reachable? Start it or set broker.url"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the TLS certificate of {url} was not accepted ({exc.verify_message}): set broker.tls_ca_file to the CA "
            f"that signed it, make sure the certificate names host {settings.host!r}, or (testing only) broker.tls_insecure = true"
        )
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake with {url} failed ({exc.reason or exc}): is that port a TLS listener? Use mqtts:// only for TLS ports, and check broker.tls_cert_file/tls_key_file if the broker requires a client certificate"
    if isinstance(exc, ConnectionRefusedError):
        return f"nothing accepts connections at {url} (connection refused): start the broker there or set broker.url to where it runs"
    if isinstance(exc, socket.gaierror):
        return f"the host name of {url} does not resolve ({exc.strerror}): fix broker.url"
    if isinstance(exc, (TimeoutError, socket.timeout)):
        return f"no answer from {url} within {settings.connect_timeout_s:g} s: check the host, port and firewall (broker.url), or raise broker.connect_timeout_s"
    return f"cannot connect to MQTT broker {url} ({exc!r}): is it running and reachable? Check broker.url"


class MqttLink:
    """Connects a `TelemetryIngest` to an MQTT broker.

    Args:
        ingest: receives every payload (from paho's network thread) and the link's events.
        settings: `BrokerSettings`; default ``mqtt://127.0.0.1:1883``.
        now_ns: twin clock for arrival times; default: the ingest's clock.

    Raises:
        ConfigError: settings that cannot work (e.g. a CA file that does not exist). Network
            conditions never raise: they are reported through `health` and ingest events.
    """

    def __init__(
        self,
        ingest: TelemetryIngest,
        settings: BrokerSettings | None = None,
        *,
        now_ns: Callable[[], int] | None = None,
    ) -> None:
        self.ingest = ingest
        self.settings = settings or BrokerSettings()
        self._now = now_ns or ingest.now_ns
        self._topics = ingest.topics
        self._tls_context = self._make_tls_context(self.settings)
        self._client: BatchedReadClient | None = None
        self._lock = threading.Lock()  # guards start/stop
        self._stopping = False
        self._state_lock = threading.Lock()
        self._connected = threading.Event()
        self._connects = 0
        self._disconnects = 0
        self._failed_attempts = 0
        self._session_present = False
        self._connack_failed = False
        self._subscribe_mid: int | None = None
        self._session_up = False  # CONNACK accepted (the subscription may still be pending)
        self._last_message = ""
        self._handlers: dict[str, Callable[[bytes], None]] = {}
        # Who this twin is on <prefix>/<robot_id>/twin/status (two twins must not fight over it).
        self.instance = uuid.uuid4().hex[:16]
        self._started_unix = time.time()
        self._health_state: tuple[str, str] = ("ok", "")
        self._yielded = False
        self._others_seen: set[str] = set()
        self._last_republish = 0.0
        self._kicked_at: float | None = None  # time.monotonic() of the last loss of an established connection
        self._health = LinkHealth(
            LinkState.STOPPED, "link not started", self._now(), self.settings.redacted_url(), 0, 0, 0, False
        )

    # ------------------------------------------------------------------------------ settings

    @staticmethod
    def _make_tls_context(s: BrokerSettings) -> ssl.SSLContext | None:
        tls_keys = [k for k in ("tls_ca_file", "tls_cert_file", "tls_key_file") if getattr(s, k)]
        if not s.use_tls:
            if tls_keys or s.tls_insecure:
                raise ConfigError(
                    f"[broker] {', '.join(tls_keys) or 'tls_insecure'} set but url {s.url!r} is plain TCP: use mqtts://host:port for a TLS listener"
                )
            return None
        for key in tls_keys:
            path = getattr(s, key)
            if not os.path.isfile(path):
                raise ConfigError(f"[broker] {key} = {path!r} does not exist: give the path of the PEM file")
        try:
            context = ssl.create_default_context(cafile=s.tls_ca_file or None)
        except ssl.SSLError as exc:
            raise ConfigError(
                f"[broker] tls_ca_file = {s.tls_ca_file!r} is not a PEM CA certificate ({exc.reason}): give the CA that signed the broker's certificate"
            ) from None
        if s.tls_cert_file:
            try:
                context.load_cert_chain(s.tls_cert_file, s.tls_key_file)
            except ssl.SSLError as exc:
                raise ConfigError(
                    f"[broker] tls_cert_file/tls_key_file do not form a PEM certificate + matching key ({exc.reason})"
                ) from None
        if s.tls_insecure:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    def _make_client(self) -> BatchedReadClient:
        s = self.settings
        robot_id = self.ingest.settings.robot_id
        self.client_id = s.resolved_client_id(robot_id)
        v5 = s.protocol == "5"
        client = BatchedReadClient(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=None if v5 else not s.persistent_session,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            reconnect_on_failure=True,
            batched_reads=s.batched_reads,
        )
        if s.batched_reads and not BATCHED_READS_AVAILABLE:
            self.ingest.post_event(
                EventKind.CONNECTING,
                f"paho-mqtt {getattr(mqtt, '__version__', '?')} lacks the internals batched reads need: using stock paho reads (slower)",
            )
        client.suppress_exceptions = True  # a bug in a callback must not kill the network thread
        client.connect_timeout = s.connect_timeout_s
        client.reconnect_delay_set(min_delay=s.reconnect_min_s, max_delay=s.reconnect_max_s)
        client.max_queued_messages_set(1000)  # our own publishes while offline (status, results)
        if s.username:
            client.username_pw_set(s.username, s.resolved_password())
        if self._tls_context is not None:
            client.tls_set_context(self._tls_context)
            if s.tls_insecure:
                client.tls_insecure_set(True)
        if self._status_enabled():
            client.will_set(self._topics.twin_status, self._twin_status("offline"), qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        client.fast_on_message = self._on_publish
        client.read_clock = self._now
        return client

    def _twin_status(self, state: str) -> bytes:
        health, reason = self._health_state if state == "online" else ("lost", "")
        doc = {
            "version": 1,
            "state": state,
            "client_id": self.client_id,
            "instance": self.instance,
            "host": socket.gethostname()[:64],
            "pid": os.getpid(),
            "started_unix": round(self._started_unix, 3),
            "health": health,
        }
        if reason:
            doc["reason"] = reason[:500]
        return json.dumps(doc, separators=(",", ":")).encode()

    def _status_enabled(self) -> bool:
        return self.settings.publish_twin_status and bool(self.ingest.settings.robot_id)

    def publish_health(self, health: str, reason: str = "") -> bool:
        """Publish the twin's health (``ok``/``stale``/``lost`` and why) on ``twin/status`` (retained, with the
        ``online`` state). Kept for the next (re)connect too. False when not connected or disabled."""
        self._health_state = (str(health), str(reason))
        client = self._client
        if client is None or not self._session_up or not self._status_enabled() or self._yielded:
            return False
        info = client.publish(self._topics.twin_status, self._twin_status("online"), qos=1, retain=True)
        return info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    # ------------------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start connecting in paho's network thread and return at once (idempotent).

        A broker that is down is retried with back-off; see `health` and the ingest's events.
        """
        with self._lock:
            if self._client is not None:
                return
            s = self.settings
            self._stopping = False
            self._yielded = False
            self._failed_attempts = 0
            client = self._make_client()
            self._set_health(
                LinkState.CONNECTING, f"connecting to {s.redacted_url()} as {self.client_id!r}", EventKind.CONNECTING
            )
            kwargs: dict[str, Any] = {}
            if s.protocol == "5":
                kwargs["clean_start"] = not s.persistent_session
                if s.persistent_session:
                    props = Properties(PacketTypes.CONNECT)
                    props.SessionExpiryInterval = s.session_expiry_s
                    kwargs["properties"] = props
            try:
                client.connect_async(s.host, s.port, keepalive=s.keepalive_s, **kwargs)
            except (ValueError, OSError) as exc:  # paho validates host/port here
                raise ConfigError(f"[broker] url {s.redacted_url()!r} is not usable: {exc}") from None
            self._client = client
            client.loop_start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Publish ``offline``, disconnect and join the network thread (idempotent).

        Takes at most about ``max(1 s, connect_timeout_s)`` when a connection attempt is under way.
        """
        with self._lock:
            client = self._client
            if client is None:
                return
            self._stopping = True
            if self._session_up and self._status_enabled() and not self._yielded:
                try:
                    info = client.publish(self._topics.twin_status, self._twin_status("offline"), qos=1, retain=True)
                    info.wait_for_publish(min(timeout_s, 1.0))
                except (RuntimeError, ValueError):
                    pass  # not connected any more: the will says offline
            client.disconnect()
            client.loop_stop()
            self._client = None
            self._session_up = False
            self._connected.clear()
            self._set_health(LinkState.STOPPED, f"link to {self.settings.redacted_url()} stopped", EventKind.STOPPED)

    def __enter__(self) -> MqttLink:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def health(self) -> LinkHealth:
        """Current `LinkHealth` (state + a message naming the URL and, if needed, the fix)."""
        return self._health

    @property
    def connected(self) -> bool:
        """True while connected and the telemetry subscriptions are acknowledged by the broker."""
        return self._connected.is_set()

    def wait_connected(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` until connected AND subscribed (SUBACK received); True if so."""
        return self._connected.wait(timeout_s)

    def add_handler(self, topic: str, callback: Callable[[bytes], None]) -> None:
        """Also subscribe to ``topic`` (QoS 1) and hand its payloads to ``callback`` instead of the ingest
        (e.g. what-if requests). Call before `start`. The callback runs on paho's network thread: it must
        only enqueue, never block."""
        if self._client is not None:
            raise RuntimeError("add_handler must be called before start()")
        self._handlers[topic] = callback

    def subscribe_now(self, topics: Iterable[str]) -> bool:
        """Subscribe to more telemetry topics at once (a fleet twin that discovered a robot). Their payloads go to
        the ingest like the others; after a reconnect only ``ingest.topics.telemetry_subscriptions()`` is
        subscribed again, so a caller adding topics must also list them there. False when not connected (the
        reconnect will subscribe them)."""
        client = self._client
        topics = list(topics)
        if client is None or not self._session_up or not topics:
            return False
        rc, _ = client.subscribe([(topic, self.settings.qos) for topic in topics])
        return rc == MQTTErrorCode.MQTT_ERR_SUCCESS

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Publish from the twin (e.g. what-if results). Queued while disconnected (up to 1000).

        Returns False if the link is not started or paho refused the message.
        """
        client = self._client
        if client is None:
            return False
        info = client.publish(topic, payload, qos=qos, retain=retain)
        return info.rc in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN)

    # ------------------------------------------------------------------------------ callbacks (network thread)

    def _set_health(self, state: LinkState, message: str, kind: EventKind | None, **detail: Any) -> None:
        with self._state_lock:
            previous = self._health
            self._health = LinkHealth(
                state,
                message,
                self._now() if previous.state != state else previous.since_ns,
                self.settings.redacted_url(),
                self._connects,
                self._disconnects,
                self._failed_attempts,
                self._session_present,
            )
        # Repeated identical failures while backing off are one event, not one per attempt.
        if kind is not None and (state != previous.state or message != self._last_message):
            self._last_message = message
            self.ingest.post_event(kind, message, url=self.settings.redacted_url(), **detail)

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        s = self.settings
        url = s.redacted_url()
        if reason_code.is_failure:
            self._failed_attempts += 1
            name = reason_code.getName()
            hint = _CONNACK_HINTS.get(name, "check the broker's log")
            self._connack_failed = True
            self._set_health(
                LinkState.REFUSED,
                f"broker {url} refused the connection ({name}): {hint}; retrying with back-off",
                EventKind.REFUSED,
                reason=name,
            )
            return
        self._connects += 1
        self._session_up = True
        self._failed_attempts = 0
        self._session_present = bool(getattr(flags, "session_present", False))
        subs = [(topic, s.qos) for topic in self._topics.telemetry_subscriptions()]
        subs += [(topic, 1) for topic in self._handlers]
        if self._status_enabled():
            subs.append((self._topics.twin_status, 1))  # to notice other twins (see _on_twin_status)
        _, self._subscribe_mid = client.subscribe(subs)
        if self._status_enabled():
            client.publish(self._topics.twin_status, self._twin_status("online"), qos=1, retain=True)
        if not s.persistent_session:
            session = "clean session"
        elif self._session_present:
            session = "session resumed: telemetry queued while the twin was away is being delivered"
        elif self._connects > 1:
            session = "the broker had NO session for the twin (it restarted without persistence, or the session expired): QoS1 telemetry sent while the twin was away is lost"
        else:
            session = "new persistent session"
        self._set_health(
            LinkState.CONNECTED,
            f"connected to {url} as {self.client_id!r} (MQTT {s.protocol}, QoS {s.qos}; {session})",
            EventKind.CONNECTED,
            session_present=self._session_present,
        )

    def _on_connect_fail(self, client, userdata) -> None:
        self._failed_attempts += 1
        message = _describe_connect_error(client.last_connect_error, self.settings)
        self._set_health(
            LinkState.UNREACHABLE,
            f"{message}; retrying with back-off (up to every {self.settings.reconnect_max_s:g} s)",
            EventKind.UNREACHABLE,
        )

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        was_connected = self._session_up
        self._session_up = False
        self._connected.clear()
        if self._stopping or self._yielded:
            return
        if self._connack_failed:  # the broker refused the login; on_connect already said why
            self._connack_failed = False
            return
        if not was_connected:
            # The TCP/TLS connection opened but died before the CONNACK: a wrong port, a TLS listener
            # reached with mqtt://, a missing client certificate, or a non-MQTT service.
            self._failed_attempts += 1
            message = _describe_early_close(client.last_socket_error, self.settings)
            self._set_health(
                LinkState.UNREACHABLE,
                f"{message}; retrying with back-off (up to every {self.settings.reconnect_max_s:g} s)",
                EventKind.UNREACHABLE,
            )
            return
        if was_connected:
            self._disconnects += 1
            self._kicked_at = time.monotonic()
            name = "" if reason_code is None else reason_code.getName()
            what = f" ({name})" if name and name not in ("Unspecified error", "Success", "Normal disconnection") else ""
            persisted = (
                " QoS1 telemetry published meanwhile is queued by the broker for the twin's session."
                if self.settings.persistent_session and self.settings.qos == 1
                else ""
            )
            self._set_health(
                LinkState.RECONNECTING,
                f"lost the connection to {self.settings.redacted_url()}{what}; reconnecting with back-off.{persisted}",
                EventKind.DISCONNECTED,
            )

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        failed = [rc for rc in reason_code_list if rc.is_failure]
        if mid == self._subscribe_mid and not failed:
            self._connected.set()  # connected AND subscribed: from now on nothing published is missed
        if failed:
            self.ingest.post_event(
                EventKind.SUBSCRIBE_FAILED,
                f"broker {self.settings.redacted_url()} refused the telemetry subscription(s) {list(self._topics.telemetry_subscriptions())} "
                f"({failed[0].getName()}): check the broker's ACL for user {self.settings.username or '(anonymous)'!r}",
            )

    def _on_message(self, client, userdata, message) -> None:
        try:
            topic = message.topic
        except UnicodeDecodeError:
            topic = "<topic is not UTF-8>"
        self._on_publish(topic, message.payload, bool(message.retain))

    def _on_publish(self, topic: str, payload: bytes, retain: bool) -> None:
        """One received PUBLISH (network thread): paho's ``on_message``, or the client's fast path."""
        if topic == self._topics.twin_status:
            self._on_twin_status(self._client, bytes(payload), retain)
            return
        handler = self._handlers.get(topic)
        if handler is not None:
            try:
                handler(bytes(payload))
            except Exception as exc:  # noqa: BLE001 - the network thread must survive a handler bug
                self.ingest.post_event(EventKind.INTERNAL_ERROR, f"handler for {topic!r} failed: {exc!r}")
            return
        read_ns = getattr(self._client, "read_ns", 0)  # when its chunk was read (batched reads), else now
        self.ingest.on_payload(topic, payload, read_ns or self._now())

    def _on_twin_status(self, client: Any, payload: bytes, retained: bool) -> None:
        """Another twin's status on our twin/status topic (network thread).

        Same client id, other instance: the broker allows one connection per client id and kicks the other, so
        two such twins take the session from each other every reconnect and split the telemetry. The twin that
        started EARLIER yields (stops connecting, says why and how to fix it) when it sees the other's status
        right after losing its connection (the takeover); the later one keeps the session and says whom it
        displaced. A status alone, without a lost connection, is only reported (it may be spoofed).

        Another client id: another twin mirrors the same robot (fine); when it stops, its retained ``offline``
        would hide that this twin still runs, so ``online`` is published again (at most once a second).
        """
        try:
            doc = json.loads(payload)
            instance, state, other_id = doc.get("instance"), doc.get("state"), doc.get("client_id")
        except (ValueError, AttributeError):
            return  # not a twin status we understand (an older twin_ext, or junk): nothing to do
        if not isinstance(instance, str) or instance == self.instance or self._yielded:
            return
        who = f"instance {instance} (pid {doc.get('pid', '?')} on {doc.get('host', '?')!r}, client id {other_id!r})"
        started = doc.get("started_unix")
        if other_id == self.client_id and state == "online" and isinstance(started, (int, float)):
            newer = (started, instance) > (self._started_unix, self.instance)
            fix = (
                "give each twin its own broker.client_id (a stable, unique one per twin: it names the twin's "
                "persistent session), or run only one twin per client id"
            )
            kicked = self._kicked_at is not None and time.monotonic() - self._kicked_at < _TAKEOVER_S
            if newer and not kicked:
                # No lost connection to explain it: the broker did not hand our session to that twin. Anyone may
                # publish on twin/status without ACLs, so say so, and do not stop on a message alone.
                if self._first_time(instance):
                    self.ingest.post_event(
                        EventKind.CONFLICT,
                        f"a twin status on {self._topics.twin_status} claims this twin's client id {self.client_id!r} "
                        f"({who}) while this twin is connected: another twin about to take the session over, or a "
                        f"spoofed message (restrict the topic with broker ACLs); fix: {fix}",
                        other=instance,
                    )
            elif newer:
                self._yield(
                    f"another twin uses this twin's MQTT client id {self.client_id!r}: {who}, started after this one; "
                    f"the broker lets only one of them connect, so this twin stopped connecting instead of fighting "
                    f"over the session (telemetry would be split between them); fix: {fix}"
                )
            elif self._first_time(instance):
                self.ingest.post_event(
                    EventKind.CONFLICT,
                    f"this twin took over MQTT client id {self.client_id!r} from another twin, {who}, started earlier: "
                    f"that twin stops when it notices; fix: {fix}",
                    other=instance,
                )
            return
        if state == "offline":
            now = time.monotonic()
            if now - self._last_republish >= 1.0 and self._session_up:  # at most once a second: no storms
                self._last_republish = now
                client.publish(self._topics.twin_status, self._twin_status("online"), qos=1, retain=True)
        elif state == "online" and self._first_time(instance):
            self.ingest.post_event(
                EventKind.OTHER_TWIN,
                f"another twin also mirrors robot {self.ingest.settings.robot_id!r} on {self.settings.redacted_url()}: "
                f"{who}; {self._topics.twin_status} shows whichever twin spoke last",
                other=instance,
            )

    def _first_time(self, instance: str) -> bool:
        """Whether ``instance`` was not reported yet (bounded: a flood of invented instances cannot grow it)."""
        if instance in self._others_seen:
            return False
        if len(self._others_seen) >= 64:
            self._others_seen.clear()
        self._others_seen.add(instance)
        return True

    def _yield(self, message: str) -> None:
        """Stop connecting (from the network thread): no reconnects, no 'offline' on the shared status."""
        self._yielded = True
        self._session_up = False
        self._connected.clear()
        client = self._client
        if client is not None:
            client.disconnect()  # a clean DISCONNECT: no will, the other twin's status stays
            client.loop_stop()  # from paho's own thread this only ends its loop; stop() joins it
        self._set_health(LinkState.CONFLICT, message, EventKind.CONFLICT)
