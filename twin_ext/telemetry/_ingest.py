# SPDX-License-Identifier: Apache-2.0
"""`TelemetryIngest`: the transport-independent telemetry pipeline between a network and the estimator.

Whatever delivers payloads — the MQTT link's network thread, an MCAP replay, an offline
simulation — calls ``on_payload(topic, payload, arrival_ns)``. The ingest then

1. routes by topic (``<prefix>/<robot_id>/joint_states|birth|status``) and checks the robot id,
2. decodes and validates (`twin_ext.telemetry.decode`; names against the model or the birth),
3. handles births (a new ``boot_id`` = robot restart: sequence and clock estimates start over)
   and statuses (robot online/offline),
4. drops duplicates and late samples by sequence number (`SequenceTracker`),
5. feeds the clock estimate (`ClockSync`) with (source stamp, arrival time),
6. counts everything (`stats`), records every payload with its verdict (optional `McapRecorder`),
7. hands accepted samples to the consumer through a bounded drop-oldest buffer.

Consumers call `poll_states()` and `poll_events()` from their own thread. Nothing here blocks the
feeding thread for longer than an O(1) buffer operation, and nothing raises into it: any internal
failure is counted and reported as an ``internal_error`` event, and the payload is dropped.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._clock_sync import ClockSync
from ._codecs import decode, decode_birth, decode_status
from ._errors import RejectReason, TelemetryError
from ._events import EventKind, LinkEvent
from ._messages import Birth, JointState, Status
from ._ordering import SequenceTracker, SeqVerdict
from ._recording import McapRecorder
from ._settings import ClockSettings, TelemetrySettings
from ._topics import ANY_ROBOT, Topics

__all__ = ["TelemetryIngest", "Received", "LinkEvent", "EventKind", "IngestStats"]


class Received(NamedTuple):
    """An accepted joint-state sample and when it arrived (twin clock, ns)."""

    message: JointState
    arrival_ns: int


@dataclass(frozen=True)
class IngestStats:
    """Counters since the ingest was created (a consistent-enough snapshot; ints unless noted).

    ``received`` payloads of any kind = ``accepted`` joint states + ``births`` + ``statuses`` +
    ``rejected``. ``rejected_by_reason`` maps `RejectReason` values to counts (duplicates and late
    samples included). Sequence bookkeeping: ``seq_gaps`` (numbers skipped, an upper bound of
    lost samples), ``seq_late`` (late arrivals among them), ``seq_jumps``, ``seq_resets``.
    Buffers: ``states_dropped`` / ``events_dropped`` (oldest dropped because the consumer did not
    poll in time). ``last_arrival_ns`` twin clock of the last payload (0 if none).
    """

    received: int
    bytes_received: int
    accepted: int
    births: int
    statuses: int
    rejected: int
    rejected_by_reason: Mapping[str, int]
    seq_gaps: int
    seq_late: int
    seq_jumps: int
    seq_resets: int
    restarts: int
    clock_jumps: int
    states_dropped: int
    events_dropped: int
    internal_errors: int
    last_arrival_ns: int
    last_seq: int | None
    robot_id: str | None

    @property
    def duplicates(self) -> int:
        return self.rejected_by_reason.get(RejectReason.DUPLICATE.value, 0)

    @property
    def out_of_order(self) -> int:
        return self.rejected_by_reason.get(RejectReason.OUT_OF_ORDER.value, 0)


_KIND_STATE, _KIND_BIRTH, _KIND_STATUS = "joint_states", "birth", "status"


class TelemetryIngest:
    """Decode + validate + order + clock-sync + hand-off of one robot's telemetry.

    Args:
        settings: `TelemetrySettings` (robot id, prefix, size cap, buffer sizes, ...).
        clock_settings: `ClockSettings` for the `ClockSync` it creates.
        model: optional robot model (anything with ``dof_names``, e.g. `twin_ext.robot.RobotModel`):
            joint states must name exactly its joints and are delivered in its order. Without a
            model, names are checked against the robot's birth once it arrived.
        recorder: optional `McapRecorder`; every payload is recorded with its verdict.
        now_ns: the twin clock (int ns); default `time.monotonic_ns`. Used when ``on_payload`` is
            called without ``arrival_ns`` and to stamp events.
    """

    def __init__(
        self,
        *,
        settings: TelemetrySettings | None = None,
        clock_settings: ClockSettings | None = None,
        model: Any = None,
        recorder: Any = None,
        now_ns: Callable[[], int] | None = None,
    ) -> None:
        self.settings = settings or TelemetrySettings()
        self.now_ns = now_ns or time.monotonic_ns
        self.model = model
        if model is not None and not hasattr(model, "dof_names"):
            raise TypeError(f"model must have 'dof_names' (a RobotModel or Birth), got {type(model).__name__}")
        self.recorder = recorder
        self._owns_recorder = False
        s = self.settings
        self.topics = Topics(s.robot_id or ANY_ROBOT, s.topic_prefix)
        self.clock = ClockSync(settings=clock_settings or ClockSettings())
        self._seq = SequenceTracker(window=s.reorder_window, restart_confirm=s.restart_confirm)
        self._feed_lock = threading.Lock()  # serialises feeders (link thread, replay); uncontended in practice
        self._buffer_lock = threading.Lock()  # guards the two hand-off buffers; held for O(1) only
        self._states: deque[Received] = deque()
        self._events: deque[LinkEvent] = deque()
        self._ready = threading.Event()
        self._robot_id: str | None = s.robot_id or None
        self._birth: Birth | None = None
        self._status: Status | None = None
        self._latest: Received | None = None
        self._topic_cache: dict[str, tuple[str, str] | None] = {}
        self._reject_counts: dict[RejectReason, int] = {}
        self._reject_last_event: dict[RejectReason, int] = {}
        self._reject_pending: dict[RejectReason, int] = {}
        self._n = dict.fromkeys(
            (
                "received",
                "bytes",
                "accepted",
                "births",
                "statuses",
                "rejected",
                "restarts",
                "states_dropped",
                "events_dropped",
                "internal_errors",
                "last_arrival",
            ),
            0,
        )
        self._clock_jumps_seen = 0
        self._recording_failed = False
        self._max_bytes = s.max_payload_bytes  # hot-path copies of settings
        self._state_capacity = s.state_buffer
        self._require_birth = s.require_birth

    @classmethod
    def from_settings(
        cls, telemetry: TelemetrySettings, clock: ClockSettings | None = None, *, model: Any = None, now_ns=None
    ) -> TelemetryIngest:
        """Build an ingest; opens an `McapRecorder` at ``telemetry.record_path`` if set (closed by `close`)."""
        recorder = None
        if telemetry.record_path:
            recorder = McapRecorder(telemetry.record_path)
        ingest = cls(settings=telemetry, clock_settings=clock, model=model, recorder=recorder, now_ns=now_ns)
        ingest._owns_recorder = recorder is not None
        return ingest

    def close(self) -> None:
        """Close the recorder if this ingest opened it (`from_settings`). Idempotent."""
        if self._owns_recorder and self.recorder is not None:
            self.recorder.close()
            self._owns_recorder = False

    # ------------------------------------------------------------------------------ consumer side

    def poll_states(self) -> list[Received]:
        """All samples accepted since the last call, in arrival order (may be empty). Never blocks."""
        with self._buffer_lock:
            if not self._states:
                return []
            states = list(self._states)
            self._states.clear()
        return states

    def poll_events(self) -> list[LinkEvent]:
        """All events since the last call, oldest first. Never blocks."""
        with self._buffer_lock:
            if not self._events:
                return []
            events = list(self._events)
            self._events.clear()
        return events

    def wait_for_states(self, timeout_s: float) -> bool:
        """Block up to ``timeout_s`` until a sample is waiting; True if one is (then call `poll_states`)."""
        if self._states:
            return True
        self._ready.clear()
        if self._states:
            return True
        return self._ready.wait(timeout_s)

    @property
    def latest(self) -> Received | None:
        """The newest accepted sample (also when the buffer dropped it), or None."""
        return self._latest

    @property
    def birth(self) -> Birth | None:
        """The robot's latest birth, or None."""
        return self._birth

    @property
    def robot_online(self) -> bool | None:
        """True/False from the robot's status (its will says offline); None before any status."""
        status = self._status
        return None if status is None else status.state == "online"

    @property
    def robot_id(self) -> str | None:
        """The robot followed: the configured one, or the first heard from; None before that."""
        return self._robot_id

    @property
    def stats(self) -> IngestStats:
        """Counter snapshot (see `IngestStats`)."""
        n = self._n
        seq = self._seq
        return IngestStats(
            received=n["received"],
            bytes_received=n["bytes"],
            accepted=n["accepted"],
            births=n["births"],
            statuses=n["statuses"],
            rejected=n["rejected"],
            rejected_by_reason={
                r.value: c for r, c in self._reject_counts.copy().items()
            },  # copy(): atomic vs the feeder
            seq_gaps=seq.gaps,
            seq_late=seq.late,
            seq_jumps=seq.jumps,
            seq_resets=seq.resets,
            restarts=n["restarts"],
            clock_jumps=self.clock.jumps,
            states_dropped=n["states_dropped"],
            events_dropped=n["events_dropped"],
            internal_errors=n["internal_errors"],
            last_arrival_ns=n["last_arrival"],
            last_seq=seq.last,
            robot_id=self._robot_id,
        )

    # ------------------------------------------------------------------------------ feeding side

    def post_event(self, kind: EventKind, message: str, **detail: Any) -> None:
        """Queue an event for the consumer (used by the link and replay too). Never blocks."""
        event = LinkEvent(kind, self.now_ns(), message, detail)
        with self._buffer_lock:
            if len(self._events) >= self.settings.event_buffer:
                self._events.popleft()
                self._n["events_dropped"] += 1
            self._events.append(event)

    def on_payload(self, topic: str, payload: bytes, arrival_ns: int | None = None) -> None:
        """Process one payload received on ``topic`` at twin time ``arrival_ns`` (default: now).

        Never raises: refusals are counted and recorded with their `RejectReason`; unexpected
        internal errors are counted and reported as an ``internal_error`` event.
        """
        if arrival_ns is None:
            arrival_ns = self.now_ns()
        with self._feed_lock:
            try:
                self._process(topic, payload, arrival_ns)
            except Exception as exc:  # noqa: BLE001 - the feeding thread must survive anything
                self._n["internal_errors"] += 1
                try:
                    self.post_event(
                        EventKind.INTERNAL_ERROR,
                        f"internal error while processing a payload on {topic!r}: {exc!r}; the payload was dropped (please report this)",
                    )
                except Exception:  # noqa: BLE001
                    pass

    def _process(self, topic: str, payload: bytes, arrival_ns: int) -> None:
        n = self._n
        n["received"] += 1
        n["last_arrival"] = arrival_ns
        if type(payload) is not bytes:
            payload = bytes(payload)
        n["bytes"] += len(payload)
        route = self._topic_cache.get(topic, False)
        if route is False:
            route = self.topics.parse(topic)
            if route is not None and route[1] not in (_KIND_STATE, _KIND_BIRTH, _KIND_STATUS):
                route = None
            if len(self._topic_cache) > 256:
                self._topic_cache.clear()
            self._topic_cache[topic] = route
        if route is None:
            self._reject(
                topic,
                payload,
                arrival_ns,
                RejectReason.UNEXPECTED_TOPIC,
                f"topic {topic[:120]!r} is not <{self.settings.topic_prefix}>/<robot_id>/joint_states|birth|status",
            )
            return
        robot_id, kind = route
        followed = self._robot_id
        if followed is not None and robot_id != followed:
            self._reject(
                topic,
                payload,
                arrival_ns,
                RejectReason.WRONG_ROBOT,
                f"topic robot id {robot_id!r} is not the followed robot {followed!r}",
            )
            return
        try:
            if kind == _KIND_STATE:
                self._on_state(topic, robot_id, payload, arrival_ns)
            elif kind == _KIND_BIRTH:
                self._on_birth(topic, robot_id, payload, arrival_ns)
            else:
                self._on_status(topic, robot_id, payload, arrival_ns)
        except TelemetryError as exc:
            self._reject(topic, payload, arrival_ns, exc.reason, exc.detail)

    def _follow(self, robot_id: str) -> None:
        if self._robot_id is None:
            self._robot_id = robot_id
            self.post_event(
                EventKind.ROBOT_SELECTED,
                f"following robot {robot_id!r} (the first one heard from; set telemetry.robot_id to choose)",
                robot_id=robot_id,
            )

    def _on_state(self, topic: str, robot_id: str, payload: bytes, arrival_ns: int) -> None:
        names_model = self.model if self.model is not None else self._birth
        if names_model is None and self._require_birth:
            raise TelemetryError(RejectReason.NO_BIRTH, f"joint state before the birth of robot {robot_id!r}")
        msg = decode(payload, model=names_model, max_bytes=self._max_bytes)
        if msg.robot_id != robot_id:
            raise TelemetryError(
                RejectReason.WRONG_ROBOT, f"payload robot_id {msg.robot_id!r} differs from the topic's {robot_id!r}"
            )
        tracker = self._seq
        resets = tracker.resets
        verdict = tracker.check(msg.seq)
        if verdict is not SeqVerdict.ACCEPT:
            if verdict is SeqVerdict.DUPLICATE:
                raise TelemetryError(RejectReason.DUPLICATE, f"seq {msg.seq} was already accepted")
            raise TelemetryError(
                RejectReason.OUT_OF_ORDER, f"seq {msg.seq} is older than the newest accepted seq {tracker.last}"
            )
        if tracker.resets != resets:
            self.post_event(
                EventKind.SEQUENCE_RESET,
                f"robot {robot_id!r} restarted its sequence numbers at {msg.seq} without a new birth; following the new numbering",
                seq=msg.seq,
            )
        self._follow(robot_id)
        clock = self.clock
        clock.update(msg.stamp_ns, arrival_ns)
        if clock.jumps != self._clock_jumps_seen:
            self._clock_jumps_seen = clock.jumps
            self.post_event(
                EventKind.CLOCK_JUMP, f"clock estimate re-initialised: {clock.last_jump}", jumps=clock.jumps
            )
        n = self._n
        n["accepted"] += 1
        received = Received(msg, arrival_ns)
        self._latest = received
        with self._buffer_lock:
            states = self._states
            if len(states) >= self._state_capacity:
                states.popleft()
                n["states_dropped"] += 1
            states.append(received)
        ready = self._ready
        if not ready.is_set():  # a cheap read; set() takes a lock and notifies
            ready.set()
        if self.recorder is not None:
            self._record(True, topic, payload, arrival_ns, msg)

    def _on_birth(self, topic: str, robot_id: str, payload: bytes, arrival_ns: int) -> None:
        birth = decode_birth(payload, max_bytes=self.settings.max_payload_bytes)
        if birth.robot_id != robot_id:
            raise TelemetryError(
                RejectReason.WRONG_ROBOT, f"birth robot_id {birth.robot_id!r} differs from the topic's {robot_id!r}"
            )
        if self.model is not None:
            model_names = tuple(self.model.dof_names)
            if set(birth.joint_names) != set(model_names):
                unknown = [x for x in birth.joint_names if x not in set(model_names)]
                missing = [x for x in model_names if x not in set(birth.joint_names)]
                message = (
                    f"robot {robot_id!r} (model {birth.model_id!r}) announces joints {list(birth.joint_names)} but the twin's "
                    f"model has {list(model_names)} (unknown: {unknown}, missing: {missing}); load the matching robot USD "
                    f"or fix the robot's joint names"
                )
                self.post_event(EventKind.BIRTH_MISMATCH, message, unknown=unknown, missing=missing)
                raise TelemetryError(RejectReason.UNKNOWN_JOINT if unknown else RejectReason.MISSING_JOINT, message)
        self._follow(robot_id)
        previous = self._birth
        self._birth = birth
        self._n["births"] += 1
        if previous is None:
            self.post_event(
                EventKind.BIRTH,
                f"robot {robot_id!r} ({birth.model_id}, {len(birth.joint_names)} joints, {birth.rate_hz:g} Hz, {birth.codec}) boot {birth.boot_id}",
                boot_id=birth.boot_id,
            )
        elif previous.boot_id != birth.boot_id:
            # A new boot: its sequence numbers and its clock start over; the oscillator (drift) does not.
            self._seq.reset()
            self.clock.reset(keep_drift=True)
            self._n["restarts"] += 1
            self.post_event(
                EventKind.ROBOT_RESTARTED,
                f"robot {robot_id!r} restarted (boot {previous.boot_id} -> {birth.boot_id}); sequence and clock estimates start over",
                boot_id=birth.boot_id,
                previous_boot_id=previous.boot_id,
            )
        if self.recorder is not None:
            self._record(True, topic, payload, arrival_ns, birth)

    def _on_status(self, topic: str, robot_id: str, payload: bytes, arrival_ns: int) -> None:
        status = decode_status(payload, max_bytes=self.settings.max_payload_bytes)
        if status.robot_id != robot_id:
            raise TelemetryError(
                RejectReason.WRONG_ROBOT, f"status robot_id {status.robot_id!r} differs from the topic's {robot_id!r}"
            )
        self._n["statuses"] += 1
        birth = self._birth
        stale = status.state == "offline" and birth is not None and status.boot_id and status.boot_id != birth.boot_id
        if not stale:  # an 'offline' will of an earlier boot must not mark the running boot offline
            previous = self._status
            self._status = status
            if previous is None or previous.state != status.state:
                kind = EventKind.ROBOT_ONLINE if status.state == "online" else EventKind.ROBOT_OFFLINE
                self.post_event(
                    kind,
                    f"robot {robot_id!r} is {status.state}" + (f" (boot {status.boot_id})" if status.boot_id else ""),
                    boot_id=status.boot_id,
                )
        if self.recorder is not None:
            self._record(True, topic, payload, arrival_ns, status)

    def _reject(self, topic: str, payload: bytes, arrival_ns: int, reason: RejectReason, detail: str) -> None:
        self._n["rejected"] += 1
        counts = self._reject_counts
        counts[reason] = counts.get(reason, 0) + 1
        self._reject_pending[reason] = self._reject_pending.get(reason, 0) + 1
        interval_ns = int(self.settings.reject_event_interval_s * 1e9)
        last = self._reject_last_event.get(reason)
        now = self.now_ns()
        if last is None or now - last >= interval_ns:
            pending = self._reject_pending.pop(reason)
            self._reject_last_event[reason] = now
            self.post_event(
                EventKind.REJECTED,
                f"refused {pending} payload(s) as {reason.value}: {detail}; fix: {reason.fix}",
                reason=reason.value,
                count=pending,
                total=counts[reason],
                topic=topic,
            )
        if self.recorder is not None:
            self._record(False, topic, payload, arrival_ns, (reason, detail))

    def _record(self, accepted: bool, topic: str, payload: bytes, arrival_ns: int, what: Any) -> None:
        try:
            if accepted:
                self.recorder.record_accepted(topic, payload, arrival_ns, message=what)
            else:
                self.recorder.record_rejected(topic, payload, arrival_ns, what[0], what[1])
        except Exception as exc:  # noqa: BLE001 - a full disk must not stop the twin
            if not self._recording_failed:
                self._recording_failed = True
                self.post_event(
                    EventKind.RECORDING_FAILED,
                    f"recording failed ({exc!r}); telemetry continues unrecorded: check free space and the path of telemetry.record_path",
                )
