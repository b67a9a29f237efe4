# SPDX-License-Identifier: Apache-2.0
"""MCAP recording and replay of telemetry (the `mcap` library; files open in Foxglove and mcap CLI).

What a recording holds (log time = arrival time on the twin clock, ns):

* one channel per telemetry topic for ACCEPTED payloads, JSON with a JSON Schema:
  joint states as the v1 JSON codec (binary payloads are re-encoded losslessly as JSON so any MCAP
  viewer can plot them; publish time = the robot's stamp, sequence = seq), births, statuses;
* ``/twin_ext/rejected`` for REJECTED payloads: ``{"topic", "reason", "detail", "arrival_ns",
  "payload_base64"}`` — the raw bytes, so a replay refuses them again for the same reason;
* any extra JSON channel written with `McapRecorder.record_json` (e.g. the emulator's ground truth).

`McapReplay` feeds the accepted and rejected payloads back, in arrival order, into a
`TelemetryIngest` — the same consumer interface as the live link — as fast as possible or paced
at 1x / Nx. Replaying a recording into a fresh ingest reproduces its accepted samples and its
counters exactly (the verdicts depend only on the payloads and their order).
"""

from __future__ import annotations

import base64
import json
import queue
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import TwinExtError, __version__
from ._codecs import BINARY_MAGIC, encode_json
from ._errors import RejectReason
from ._events import EventKind
from ._messages import Birth, JointState, Status

__all__ = ["McapRecorder", "McapReplay", "ReplayResult", "ReplayHandle", "RecordingError", "REJECTED_TOPIC"]

REJECTED_TOPIC = "/twin_ext/rejected"
"""Channel of refused payloads."""
_KIND_KEY = "twin_ext.kind"  # channel metadata: accepted | rejected | json

_NUMBER_ARRAY = {"type": "array", "items": {"type": "number"}}
JOINT_STATE_SCHEMA = {
    "title": "twin_ext JointState v1",
    "type": "object",
    "properties": {
        "version": {"const": 1},
        "robot_id": {"type": "string", "pattern": "^[A-Za-z0-9_.-]{1,64}$"},
        "seq": {"type": "integer", "minimum": 0, "maximum": 4294967295},
        "stamp_ns": {"type": "integer", "description": "sampling time, robot clock, ns"},
        "name": {"type": "array", "items": {"type": "string"}},
        "position": {**_NUMBER_ARRAY, "description": "rad | m"},
        "velocity": {**_NUMBER_ARRAY, "description": "rad/s | m/s"},
        "effort": {**_NUMBER_ARRAY, "description": "N·m | N"},
        "reference_position": {**_NUMBER_ARRAY, "description": "rad | m, what the robot's controller tracks"},
        "reference_velocity": {**_NUMBER_ARRAY, "description": "rad/s | m/s, what the robot's controller tracks"},
    },
    "required": ["version", "robot_id", "seq", "stamp_ns", "name", "position"],
    "additionalProperties": False,
}
BIRTH_SCHEMA = {
    "title": "twin_ext Birth v1",
    "type": "object",
    "properties": {
        "version": {"const": 1},
        "robot_id": {"type": "string"},
        "model_id": {"type": "string"},
        "joint_names": {"type": "array", "items": {"type": "string"}},
        "rate_hz": {"type": "number"},
        "boot_id": {"type": "string"},
        "codec": {"enum": ["json", "binary"]},
    },
    "required": ["version", "robot_id", "model_id", "joint_names", "rate_hz", "boot_id", "codec"],
}
STATUS_SCHEMA = {
    "title": "twin_ext Status v1",
    "type": "object",
    "properties": {
        "version": {"const": 1},
        "robot_id": {"type": "string"},
        "state": {"enum": ["online", "offline"]},
        "boot_id": {"type": "string"},
    },
    "required": ["version", "robot_id", "state"],
}
REJECTED_SCHEMA = {
    "title": "twin_ext rejected payload",
    "type": "object",
    "properties": {
        "topic": {"type": "string"},
        "reason": {"enum": [r.value for r in RejectReason]},
        "detail": {"type": "string"},
        "arrival_ns": {"type": "integer"},
        "payload_base64": {"type": "string", "contentEncoding": "base64"},
    },
    "required": ["topic", "reason", "detail", "arrival_ns", "payload_base64"],
}
_SCHEMAS = {
    "twin_ext.JointState": JOINT_STATE_SCHEMA,
    "twin_ext.Birth": BIRTH_SCHEMA,
    "twin_ext.Status": STATUS_SCHEMA,
    "twin_ext.Rejected": REJECTED_SCHEMA,
}


class RecordingError(TwinExtError, RuntimeError):
    """The recording cannot be written or read; the message names the file and the cause."""


def _publish_time(value: int) -> int:
    return min(max(int(value), 0), 2**64 - 1)


class McapRecorder:
    """Records telemetry to an MCAP file; thread-safe; never blocks the caller (background writer).

    Args:
        path: output file (parent folders are created).
        compression: ``"zstd"`` (default), ``"lz4"`` or ``"none"``.
        queue_capacity: records waiting for the writer thread; beyond it records are dropped and
            counted in `dropped` (the caller — the network thread — never waits for the disk).
        background: False writes synchronously in the caller (tests, offline tools).

    Use as a context manager or call `close` (flushes, writes the index, joins the writer).
    """

    def __init__(
        self, path: str | Path, *, compression: str = "zstd", queue_capacity: int = 100_000, background: bool = True
    ) -> None:
        from mcap.writer import CompressionType, Writer

        kinds = {"zstd": CompressionType.ZSTD, "lz4": CompressionType.LZ4, "none": CompressionType.NONE}
        if compression not in kinds:
            raise ValueError(f"compression {compression!r} must be one of {sorted(kinds)}")
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "wb")
        except OSError as exc:
            raise RecordingError(
                f"cannot create recording {self.path}: {exc.strerror}; choose a writable path"
            ) from None
        self._writer = Writer(self._file, compression=kinds[compression])
        self._writer.start(profile="", library=f"twin_ext {__version__}")
        self._schemas: dict[str, int] = {}
        self._channels: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()
        self.written = 0
        """Messages written so far."""
        self.dropped = 0
        """Records dropped because the writer queue was full (or after a write error)."""
        self.error: BaseException | None = None
        """The first write error (recording stops; later records are dropped and raise)."""
        self._closed = False
        self._queue: queue.Queue | None = None
        self._thread: threading.Thread | None = None
        if background:
            self._queue = queue.Queue(maxsize=max(1, int(queue_capacity)))
            self._thread = threading.Thread(target=self._run, name=f"twin_ext-mcap-{self.path.name}", daemon=True)
            self._thread.start()

    # ------------------------------------------------------------------------------ public API

    def record_accepted(self, topic: str, payload: bytes, arrival_ns: int, *, message: Any = None) -> None:
        """Record an accepted payload received on ``topic`` at twin time ``arrival_ns`` (ns).

        ``message`` is the decoded `JointState` / `Birth` / `Status` (binary joint states are
        written as their JSON encoding; JSON payloads are written as received).
        """
        self._submit(("accepted", topic, bytes(payload), int(arrival_ns), message))

    def record_rejected(
        self, topic: str, payload: bytes, arrival_ns: int, reason: RejectReason | str, detail: str = ""
    ) -> None:
        """Record a refused payload with its reason code and detail."""
        reason = reason.value if isinstance(reason, RejectReason) else str(reason)
        self._submit(("rejected", topic, bytes(payload), int(arrival_ns), (reason, detail)))

    def record_json(
        self, topic: str, obj: dict, log_time_ns: int, schema_name: str, *, schema: dict | None = None
    ) -> None:
        """Record a JSON-serialisable dict on an extra channel ``topic`` (e.g. emulator ground truth).

        ``schema`` is an optional JSON Schema for the channel (registered once per ``schema_name``;
        default: any object). Numpy arrays should be converted with ``.tolist()`` by the caller.
        """
        data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
        self._submit(("json", topic, data, int(log_time_ns), (schema_name, schema)))

    def close(self) -> None:
        """Write everything queued, finish the file (index, summary) and stop the writer. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._thread is not None:
            self._queue.put(None)  # blocking put: the sentinel must get in
            self._thread.join()
        with self._lock:
            try:
                self._writer.finish()
            except Exception as exc:  # noqa: BLE001
                self.error = self.error or exc
            finally:
                self._file.close()
        if self.error is not None and not isinstance(self.error, RecordingError):
            raise RecordingError(f"recording {self.path} is incomplete: {self.error!r}")

    def __enter__(self) -> McapRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------------------ internals

    def _submit(self, item: tuple) -> None:
        if self._closed:
            raise RecordingError(f"recording {self.path} is closed")
        if self.error is not None:
            self.dropped += 1
            raise RecordingError(f"recording {self.path} stopped after a write error: {self.error!r}")
        if self._queue is None:
            with self._lock:
                self._write(item)
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self.dropped += 1

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            if self.error is not None:
                self.dropped += 1
                continue
            try:
                with self._lock:
                    self._write(item)
            except Exception as exc:  # noqa: BLE001 - reported through .error and the next record call
                self.error = exc
                self.dropped += 1

    def _schema_id(self, name: str, schema: dict | None) -> int:
        sid = self._schemas.get(name)
        if sid is None:
            body = schema if schema is not None else _SCHEMAS.get(name, {"type": "object"})
            sid = self._writer.register_schema(name=name, encoding="jsonschema", data=json.dumps(body).encode("utf-8"))
            self._schemas[name] = sid
        return sid

    def _channel_id(self, topic: str, kind: str, schema_name: str, schema: dict | None = None) -> int:
        key = (topic, kind)
        cid = self._channels.get(key)
        if cid is None:
            sid = self._schema_id(schema_name, schema)
            cid = self._writer.register_channel(
                topic=topic, message_encoding="json", schema_id=sid, metadata={_KIND_KEY: kind}
            )
            self._channels[key] = cid
        return cid

    def _write(self, item: tuple) -> None:
        kind, topic, payload, log_time, extra = item
        publish_time, sequence = log_time, 0
        if kind == "accepted":
            if isinstance(extra, JointState):
                schema_name = "twin_ext.JointState"
                data = encode_json(extra) if payload[:4] == BINARY_MAGIC else payload
                publish_time, sequence = _publish_time(extra.stamp_ns), extra.seq
            elif isinstance(extra, Birth):
                schema_name, data = "twin_ext.Birth", payload
            elif isinstance(extra, Status):
                schema_name, data = "twin_ext.Status", payload
            else:
                schema_name, data = "twin_ext.JointState", payload
            channel = self._channel_id(topic, "accepted", schema_name)
        elif kind == "rejected":
            reason, detail = extra
            obj = {
                "topic": topic,
                "reason": reason,
                "detail": detail,
                "arrival_ns": log_time,
                "payload_base64": base64.b64encode(payload).decode("ascii"),
            }
            data = json.dumps(obj, separators=(",", ":")).encode("utf-8")
            channel = self._channel_id(REJECTED_TOPIC, "rejected", "twin_ext.Rejected")
        else:
            schema_name, schema = extra
            data = payload
            channel = self._channel_id(topic, "json", schema_name, schema)
        self._writer.add_message(
            channel_id=channel,
            log_time=_publish_time(log_time),
            data=data,
            publish_time=publish_time,
            sequence=sequence,
        )
        self.written += 1


@dataclass(frozen=True)
class ReplayResult:
    """What a replay fed: ``payloads`` (accepted + rejected in the file), ``log_start_ns`` /
    ``log_end_ns`` (recorded twin times), ``wall_s`` (how long it took), ``stopped`` (by request)."""

    payloads: int
    log_start_ns: int
    log_end_ns: int
    wall_s: float
    stopped: bool


class ReplayHandle:
    """A replay running in a background thread (`McapReplay.start`)."""

    def __init__(self, target: Callable[[threading.Event], ReplayResult]) -> None:
        self._stop = threading.Event()
        self.result: ReplayResult | None = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = target(self._stop)
            except BaseException as exc:  # noqa: BLE001 - surfaced through .error / join()
                self.error = exc

        self._thread = threading.Thread(target=run, name="twin_ext-mcap-replay", daemon=True)
        self._thread.start()

    @property
    def done(self) -> bool:
        return not self._thread.is_alive()

    def stop(self, timeout_s: float = 5.0) -> ReplayResult | None:
        """Ask the replay to stop and wait for it (up to ``timeout_s``)."""
        self._stop.set()
        return self.join(timeout_s)

    def join(self, timeout_s: float | None = None) -> ReplayResult | None:
        """Wait for the replay to finish; re-raises its error, returns its result."""
        self._thread.join(timeout_s)
        if self.error is not None:
            raise self.error
        return self.result


class McapReplay:
    """Reads a telemetry recording made by `McapRecorder`.

    Args:
        path: the MCAP file.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise RecordingError(
                f"recording {self.path} does not exist; record one with McapRecorder or telemetry.record_path"
            )

    def _messages(self, topics: list[str] | None = None) -> Iterator[tuple[Any, Any]]:
        """(channel, message) in log-time order; errors of a damaged file become RecordingError."""
        from mcap.exceptions import McapError
        from mcap.reader import make_reader

        with open(self.path, "rb") as stream:
            try:
                for _, channel, message in make_reader(stream).iter_messages(topics=topics, log_time_order=True):
                    yield channel, message
            except (McapError, ValueError, KeyError, EOFError, OSError, struct.error) as exc:
                raise RecordingError(f"recording {self.path} is damaged or not an MCAP file: {exc!r}") from None

    def iter_payloads(self) -> Iterator[tuple[str, bytes, int]]:
        """``(topic, payload, arrival_ns)`` of every recorded telemetry payload, in arrival order
        (accepted ones as recorded — binary joint states as JSON — and rejected ones raw)."""
        for channel, message in self._messages():
            kind = channel.metadata.get(_KIND_KEY)
            if kind == "accepted":
                yield channel.topic, message.data, message.log_time
            elif kind == "rejected":
                try:
                    obj = json.loads(message.data)
                    payload = base64.b64decode(obj["payload_base64"], validate=True)
                    topic = obj["topic"]
                except (ValueError, KeyError, TypeError) as exc:
                    raise RecordingError(
                        f"recording {self.path} has a damaged rejected-payload record: {exc!r}"
                    ) from None
                yield topic, payload, message.log_time

    def read_json(self, topic: str) -> Iterator[tuple[int, dict]]:
        """``(log_time_ns, obj)`` of every message of a JSON channel (e.g. one `record_json` wrote)."""
        for _, message in self._messages([topic]):
            yield message.log_time, json.loads(message.data)

    def topics(self) -> dict[str, int]:
        """Message count per channel topic."""
        from mcap.exceptions import McapError
        from mcap.reader import make_reader

        with open(self.path, "rb") as stream:
            try:
                summary = make_reader(stream).get_summary()
            except (McapError, ValueError, EOFError, struct.error) as exc:
                raise RecordingError(f"recording {self.path} is damaged or not an MCAP file: {exc!r}") from None
        if summary is None or summary.statistics is None:
            return {}
        counts = summary.statistics.channel_message_counts
        return {ch.topic: counts.get(cid, 0) for cid, ch in summary.channels.items()}

    def replay(
        self,
        ingest: Any,
        *,
        speed: float | None = None,
        arrival: str = "auto",
        stop: threading.Event | None = None,
        sleep: Callable[[float], None] = time.sleep,
        wall_ns: Callable[[], int] = time.monotonic_ns,
    ) -> ReplayResult:
        """Feed the recording into ``ingest.on_payload`` (a `TelemetryIngest`).

        Args:
            speed: None = as fast as possible; 1.0 = real time; N = N times faster.
            arrival: ``"recorded"`` passes the recorded arrival times (deterministic, for analysis);
                ``"now"`` re-stamps arrivals with the ingest's clock, as if live (for a running twin;
                at N x the robot appears to run N x faster). ``"auto"``: recorded when ``speed`` is
                None, else now.
            stop: an Event that ends the replay early.
            sleep, wall_ns: pacing clock (injectable for tests).
        """
        if speed is not None and not speed > 0:
            raise ValueError(f"speed {speed!r} must be > 0 (or None for as fast as possible)")
        if arrival == "auto":
            arrival = "recorded" if speed is None else "now"
        if arrival not in ("recorded", "now"):
            raise ValueError(f"arrival {arrival!r} must be 'recorded', 'now' or 'auto'")
        count, log0, log_last, stopped = 0, None, 0, False
        wall0 = wall_ns()
        twin0 = ingest.now_ns() if arrival == "now" else 0
        for topic, payload, log_time in self.iter_payloads():
            if stop is not None and stop.is_set():
                stopped = True
                break
            if log0 is None:
                log0 = log_time
            elapsed_log = log_time - log0
            if speed is not None:
                due_ns = wall0 + int(elapsed_log / speed)
                while True:
                    wait = (due_ns - wall_ns()) / 1e9
                    if wait <= 0 or (stop is not None and stop.is_set()):
                        break
                    sleep(min(wait, 0.05))
            arrival_ns = log_time if arrival == "recorded" else twin0 + int(elapsed_log / (speed or 1.0))
            ingest.on_payload(topic, payload, arrival_ns)
            count += 1
            log_last = log_time
        result = ReplayResult(count, log0 or 0, log_last, (wall_ns() - wall0) / 1e9, stopped)
        post = getattr(ingest, "post_event", None)
        if post is not None:
            post(
                EventKind.REPLAY_FINISHED,
                f"replay of {self.path.name} {'stopped' if stopped else 'finished'}: {count} payloads in {result.wall_s:.2f} s",
                payloads=count,
            )
        return result

    def start(self, ingest: Any, **options: Any) -> ReplayHandle:
        """Run `replay` in a background thread; returns a handle (``stop()``, ``join()``, ``done``)."""
        return ReplayHandle(lambda stop_event: self.replay(ingest, stop=stop_event, **options))
