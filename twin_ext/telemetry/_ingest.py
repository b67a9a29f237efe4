# SPDX-License-Identifier: Apache-2.0
"""`TelemetryIngest`: the transport-independent telemetry pipeline between a network and the estimator.

Whatever delivers payloads — the MQTT link's network thread, an MCAP replay, an offline
simulation — calls ``on_payload(topic, payload, arrival_ns)``. The ingest then

1. routes by topic (``<prefix>/<robot_id>/joint_states|birth|status``) and checks the robot id,
2. decodes and validates (`twin_ext.telemetry.decode`; names against the model or the birth),
3. checks plausibility against the model (joint and velocity limits, position jumps faster than the
   velocity limits) and the stamp against the clock estimate (no sample from the future, no step back),
4. handles births (a new ``boot_id`` = robot restart: sequence and clock estimates start over; the
   restart is announced to the consumer once the data confirm it) and statuses (robot online/offline;
   an ``offline`` contradicted by flowing data is flagged, not obeyed),
5. drops duplicates by sequence number; hands late (out-of-order) samples within the sequence window on
   flagged ``late`` (the estimator fuses them at their own time or drops them as too late); holds far forward
   jumps until confirmed (`SequenceTracker`),
6. feeds the clock estimate (`ClockSync`) with (source stamp, arrival time),
7. counts everything (`stats`), records every payload with its verdict (optional `McapRecorder`),
8. hands accepted samples to the consumer through a bounded drop-oldest buffer.

Trust: whoever can publish on the robot's topics is the robot, unless the broker's ACLs say otherwise
(docs/telemetry.md, "Trust model"). The checks above make one stray or spoofed message cost at most
itself: every discontinuity (a jump in sequence, stamp, position, or a new boot) is followed only after
``restart_confirm`` consistent samples agree with it.

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

import numpy as np

from ._clock_sync import ClockSync
from ._codecs import SteadyBinaryLayout, decode, decode_birth, decode_status
from ._errors import RejectReason, TelemetryError
from ._events import EventKind, LinkEvent
from ._messages import SEQ_MODULUS, Birth, JointState, Status
from ._ordering import SequenceTracker, SeqVerdict
from ._recording import McapRecorder
from ._settings import ClockSettings, TelemetrySettings
from ._topics import ANY_ROBOT, Topics

__all__ = ["TelemetryIngest", "Received", "LinkEvent", "EventKind", "IngestStats"]


class Received(NamedTuple):
    """An accepted joint-state sample and when it arrived (twin clock, ns).

    ``late``: it arrived after a sample with a newer sequence number (reordered by the network). Such samples do
    not feed the clock sync or the plausibility reference; the estimator fuses them at their own sample time if
    they are within its lag window (``estimator.max_lag_ms``)."""

    message: JointState
    arrival_ns: int
    late: bool = False


@dataclass(frozen=True)
class IngestStats:
    """Counters since the ingest was created (a consistent-enough snapshot; ints unless noted).

    ``received`` payloads of any kind = ``accepted`` joint states + ``births`` + ``statuses`` +
    ``rejected``; ``accepted_late`` of the accepted ones arrived after a newer sample (handed on flagged
    ``late``, not rejected). ``rejected_by_reason`` maps `RejectReason` values to counts (duplicates and late
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
    accepted_late: int = 0

    @property
    def duplicates(self) -> int:
        return self.rejected_by_reason.get(RejectReason.DUPLICATE.value, 0)

    @property
    def out_of_order(self) -> int:
        return self.rejected_by_reason.get(RejectReason.OUT_OF_ORDER.value, 0)


_KIND_STATE, _KIND_BIRTH, _KIND_STATUS = "joint_states", "birth", "status"
_MIN_SLACK = 1e-3  # rad | m: the smallest position slack of the plausibility checks (a joint with a zero range)
_CONTRADICTED_BOOTS = 16  # boot ids remembered as contradicted (a spoofed retained birth comes back on reconnect)
_HISTORY_NS = 2_000_000_000  # statuses this soon after the twin (re)connected may be retained/queued history
_HOLD_NS = 1_000_000_000  # a far-ahead seq unconfirmed this long while the old numbering arrives live: a stray


class _Plausibility:
    """Physical plausibility of joint states against a model with limits (arrays in model order)."""

    def __init__(self, model: Any, limit_margin: float, speed_margin: float) -> None:
        lower = np.asarray(model.lower, dtype=np.float64)
        upper = np.asarray(model.upper, dtype=np.float64)
        vmax = np.asarray(model.velocity_limit, dtype=np.float64)
        span = upper - lower
        finite = np.isfinite(span)
        slack = np.where(finite, np.maximum(limit_margin * np.where(finite, span, 0.0), _MIN_SLACK), np.inf)
        self.names = tuple(model.dof_names)
        self.lo = np.where(np.isfinite(lower), lower - np.where(finite, slack, 0.0), -np.inf)
        self.hi = np.where(np.isfinite(upper), upper + np.where(finite, slack, 0.0), np.inf)
        self.vmax = np.where(np.isfinite(vmax) & (vmax > 0), vmax * speed_margin, np.inf)
        self.rate = np.where(np.isfinite(self.vmax), self.vmax, 0.0)  # rad/s allowed for the jump check
        self.slack = np.where(finite, slack, np.inf)  # inf: no jump check for unlimited joints
        self.limit_margin, self.speed_margin = limit_margin, speed_margin

        # Plain lists: for a robot's handful of joints a Python loop (~1 µs) beats NumPy's per-call overhead.
        self._lo, self._hi, self._vmax = self.lo.tolist(), self.hi.tolist(), self.vmax.tolist()
        self._rate, self._slack = self.rate.tolist(), self.slack.tolist()
        self._steady_joints = list(zip(self._lo, self._hi, self._rate, self._slack, strict=True))

    def limits_violation(self, q: list[float], qd: list[float] | None) -> str | None:
        """Why positions ``q`` / velocities ``qd`` (model order) are impossible, or None."""
        for j, (x, lo, hi) in enumerate(zip(q, self._lo, self._hi, strict=True)):
            if x < lo or x > hi:
                return (
                    f"{self.names[j]} position {x:.6g} is outside its limits widened by {self.limit_margin:g} of the "
                    f"range [{lo:.6g}, {hi:.6g}]"
                )
        if qd is not None:
            for j, (v, vmax) in enumerate(zip(qd, self._vmax, strict=True)):
                if v > vmax or -v > vmax:
                    return f"{self.names[j]} velocity {v:.6g} exceeds {self.speed_margin:g} x its limit ({vmax:.6g})"
        return None

    def steady(self, values: tuple[float, ...], n: int, velocity: bool, stamp_ns: int, ref: Any) -> bool:
        """Whether a sample passes `limits_violation` and (``ref`` = the reference (positions, stamp_ns, seq), or
        None: no jump check) `jump_violation` — the two in one loop, for the steady lane. ``values``: ``n``
        positions, then (``velocity``) ``n`` velocities, model order. False: let those two say why."""
        if ref is None:
            for x, lo, hi in zip(values, self._lo, self._hi):  # noqa: B905 - values is longer: n positions first
                if x < lo or x > hi:
                    return False
        else:
            dt = abs(stamp_ns - ref[1]) * 1e-9
            for x, r, (lo, hi, rate, slack) in zip(values, ref[0], self._steady_joints):  # noqa: B905 - as above
                if x < lo or x > hi or abs(x - r) > rate * dt + slack:
                    return False
        if velocity:
            for v, vmax in zip(values[n:], self._vmax):  # noqa: B905 - as above
                if v > vmax or -v > vmax:
                    return False
        return True

    def jump_violation(self, q: list[float], stamp_ns: int, ref: tuple[list[float], int, int], seq: int) -> str | None:
        """Why moving from ``ref`` = (positions, stamp_ns, seq) to ``q`` at ``stamp_ns`` is impossible, or None."""
        ref_q, ref_stamp, ref_seq = ref
        dt = abs(stamp_ns - ref_stamp) * 1e-9
        for j, (x, r, rate, slack) in enumerate(zip(q, ref_q, self._rate, self._slack, strict=True)):
            moved = abs(x - r)
            allowed = rate * dt + slack
            if moved > allowed:
                return (
                    f"{self.names[j]} moved {moved:.6g} in {dt * 1e3:.4g} ms of robot time (seq {ref_seq} -> {seq}); "
                    f"at most {allowed:.6g} is possible ({self.speed_margin:g} x velocity limit + {self.limit_margin:g} of the range)"
                )
        return None


class _BootCheck:
    """A birth announced a new boot: the old boot's state is kept until the data decide (see `_check_boot`)."""

    def __init__(self, birth: Birth, seq: SequenceTracker, clock: ClockSync, ref: Any, topic: str, payload: bytes):
        self.previous = birth  # the boot that was running
        self.seq = seq  # the old numbering, advanced by samples that continue it
        self.clock = clock  # the old clock estimate, fed by those samples
        self.ref = ref  # the old plausibility reference: (sample, (positions, stamp_ns, seq))
        self.topic, self.payload = topic, payload  # the new birth (refused if contradicted)
        self.old_run = 0
        self.new_run = 0


class TelemetryIngest:
    """Decode + validate + plausibility + order + clock-sync + hand-off of one robot's telemetry.

    Args:
        settings: `TelemetrySettings` (robot id, prefix, size cap, buffer sizes, plausibility, ...).
        clock_settings: `ClockSettings` for the `ClockSync` it creates.
        model: optional robot model (anything with ``dof_names``, e.g. `twin_ext.robot.RobotModel`):
            joint states must name exactly its joints and are delivered in its order. Without a
            model, names are checked against the robot's birth once it arrived. A model with limits
            (``lower``, ``upper``, ``velocity_limit``) also enables the plausibility checks.
        recorder: optional `McapRecorder`; every payload is recorded with its verdict.
        now_ns: the twin clock (int ns); default `time.monotonic_ns`. Used when ``on_payload`` is
            called without ``arrival_ns`` and to stamp events.
    """

    steady_lane = True
    """With a model: binary samples of the robot's usual layout, in order and plausible, take the steady lane
    (`_steady_state`: same outcome, about half the cost). False: every sample is decoded in full (A/B, tests)."""

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
        self._seq = SequenceTracker(window=s.reorder_window, restart_confirm=s.restart_confirm, max_jump=s.max_seq_jump)
        self._plausibility: _Plausibility | None = None
        if (
            s.check_plausibility
            and model is not None
            and all(hasattr(model, k) for k in ("lower", "upper", "velocity_limit"))
        ):
            self._plausibility = _Plausibility(model, s.limit_margin, s.speed_margin)
        self._feed_lock = threading.Lock()  # serialises feeders (link thread, replay) and the consumer's timers
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
                "accepted_late",
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
        self._confirm = s.restart_confirm
        # Plausibility state: the last accepted sample (the jump reference) and a run of rejected ones
        # that agree with each other (a real jump, confirmed after restart_confirm).
        self._ref: JointState | None = None
        self._ref_q: tuple[list[float], int, int] | None = None  # the reference as (positions, stamp_ns, seq)
        self._checked_q: tuple[Any, list[float]] = (None, [])  # the newest sample checked, with its positions
        self._jump_candidate: tuple[list[float], int, int] | None = None
        self._jump_run = 0
        self._stamp_offset = 0  # arrival - stamp of the current run of implausible stamps
        self._stamp_run = 0
        self._held: dict[int, tuple[str, bytes, JointState, int, str | None]] = {}  # seq -> held sample
        self._period_ns = 0.0  # the robot's sample period (robot clock), a running mean over accepted samples
        self._boot_check: _BootCheck | None = None
        self._contradicted_boots: deque[str] = deque(maxlen=_CONTRADICTED_BOOTS)
        self._grace_ns = int(s.offline_grace_s * 1e9)
        # An 'offline' of the running boot awaiting the data's verdict, and the one in force: (status, arrival,
        # topic, payload).
        self._pending_offline: tuple[Status, int, str, bytes] | None = None
        self._offline: tuple[Status, int, str, bytes] | None = None
        self._pending_epoch = 0  # link epoch when the pending 'offline' arrived
        self._link_epoch = 0  # +1 at every connected/disconnected event: the twin's own link was interrupted
        self._connected_at: int | None = None
        self._last_state_arrival: int | None = None
        self._lane: SteadyBinaryLayout | None = None  # the robot's binary layout, once a payload showed it

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
        """All events since the last call, oldest first. Never blocks for longer than one payload's processing.

        Also settles an ``offline`` status held back because data were still arriving (`offline_grace_s`).
        """
        if self._pending_offline is not None:
            with self._feed_lock:
                self._settle_offline(self.now_ns())
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
        """True/False from the robot's status (its will says offline); None before any status.

        An ``offline`` of the running boot that arrived while samples were flowing counts once no sample came
        for ``offline_grace_s`` after it (until then the robot is still online; samples after it contradict it).
        """
        if self._pending_offline is not None:
            with self._feed_lock:
                self._settle_offline(self.now_ns())
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
            accepted_late=n["accepted_late"],
        )

    # ------------------------------------------------------------------------------ feeding side

    def post_event(self, kind: EventKind, message: str, **detail: Any) -> None:
        """Queue an event for the consumer (used by the link and replay too). Never blocks."""
        event = LinkEvent(kind, self.now_ns(), message, detail)
        if kind in (EventKind.CONNECTED, EventKind.DISCONNECTED):
            self._link_epoch += 1
            if kind is EventKind.CONNECTED:
                self._connected_at = event.time_ns
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

    # ---- joint states -----------------------------------------------------------------------------------------

    def _on_state(self, topic: str, robot_id: str, payload: bytes, arrival_ns: int) -> None:
        lane = self._lane
        if lane is not None and self._steady_state(lane, topic, robot_id, payload, arrival_ns):
            return
        names_model = self.model if self.model is not None else self._birth
        if names_model is None and self._require_birth:
            raise TelemetryError(RejectReason.NO_BIRTH, f"joint state before the birth of robot {robot_id!r}")
        msg = decode(payload, model=names_model, max_bytes=self._max_bytes)
        if msg.robot_id != robot_id:
            raise TelemetryError(
                RejectReason.WRONG_ROBOT, f"payload robot_id {msg.robot_id!r} differs from the topic's {robot_id!r}"
            )
        if self.steady_lane and self.model is not None:  # (re)learn the layout the next samples will have
            self._lane = SteadyBinaryLayout.learn(payload, msg, self.model.dof_names)
        tracker = self._seq
        ahead = tracker.ahead(msg.seq)
        if ahead is not None and -tracker.window < ahead <= 0:
            # A duplicate or a late sample (the network's doing). Duplicates are dropped; a late sample is handed
            # on flagged late (the estimator fuses it at its own time) unless it is impossible.
            if tracker.check(msg.seq, arrival_ns) is SeqVerdict.DUPLICATE:
                raise TelemetryError(RejectReason.DUPLICATE, f"seq {msg.seq} was already accepted")
            self._deliver_late(topic, payload, msg, arrival_ns)
            return
        plausibility = self._plausibility
        if plausibility is not None:
            q = msg.position.tolist()
            self._checked_q = (msg, q)  # the list `_deliver` keeps as the plausibility reference
            why = plausibility.limits_violation(q, None if msg.velocity is None else msg.velocity.tolist())
            if why is not None:
                raise TelemetryError(RejectReason.OUT_OF_LIMITS, f"seq {msg.seq}: {why}")
        clock_step = self._check_stamp(msg, arrival_ns)
        if plausibility is not None:
            self._check_jump(plausibility, msg, q)
        boot = self._boot_check
        fits_old = boot is not None and self._fits_old_boot(boot, msg, arrival_ns)
        resets = tracker.resets
        verdict = tracker.check(msg.seq, arrival_ns)
        if tracker.discarded:
            self._discard_held()
        if verdict is SeqVerdict.DUPLICATE:
            raise TelemetryError(RejectReason.DUPLICATE, f"seq {msg.seq} was already accepted")
        if verdict is SeqVerdict.OUT_OF_ORDER:
            raise TelemetryError(
                RejectReason.OUT_OF_ORDER, f"seq {msg.seq} is older than the newest accepted seq {tracker.last}"
            )
        if verdict is SeqVerdict.HELD:
            self._held[msg.seq] = (topic, payload, msg, arrival_ns, clock_step)
            return
        if tracker.resets != resets:
            self._ref = None  # a new numbering: the robot may be anywhere
            self.post_event(
                EventKind.SEQUENCE_RESET,
                f"robot {robot_id!r} restarted its sequence numbers at {msg.seq} without a new birth; following the new numbering",
                seq=msg.seq,
            )
        if boot is not None:
            self._settle_boot(boot, fits_old)
        self._follow(robot_id)
        released = tracker.released
        if verdict is SeqVerdict.CONFIRMED:
            self._held[msg.seq] = (topic, payload, msg, arrival_ns, clock_step)
        else:
            self._deliver(topic, payload, msg, arrival_ns, clock_step)
        if released:
            order = list(released)
            released.clear()
            for seq in order:
                held = self._held.pop(seq, None)
                if held is not None:
                    self._deliver(*held)
        if tracker.holding and tracker.held_age_ns(arrival_ns) > _HOLD_NS and not self._backlog(msg, arrival_ns):
            # The old numbering went on, live, for a second: the held far-ahead numbers were strays.
            tracker.expire_held()
            self._discard_held()

    def _steady_state(
        self, lane: SteadyBinaryLayout, topic: str, robot_id: str, payload: bytes, arrival_ns: int
    ) -> bool:
        """The steady lane: accept a binary sample of the learnt layout that is the next sequence number, while
        nothing is held, pending or in a run of refusals, and that every check passes — what `_on_state` would do
        with it, in about half the time (`SteadyBinaryLayout.read` instead of `decode`, one plausibility loop).
        Returns False, having changed nothing, for every other sample: the full path then decides."""
        if robot_id != lane.robot_id or self._boot_check is not None or self._stamp_run or self._jump_run:
            return False
        if self._pending_offline is not None or self._offline is not None:
            return False
        tracker = self._seq
        last = tracker.last
        if last is None or tracker.holding or tracker.discarded or tracker.released:
            return False
        read = lane.read(payload)
        if read is None:
            return False
        seq, stamp_ns, values = read
        if (seq - last) % SEQ_MODULUS != 1 or self.clock.implausible(stamp_ns, arrival_ns) is not None:
            return False
        plausibility = self._plausibility
        if plausibility is not None:
            ref = self._ref_q if self._ref is not None else None
            if not plausibility.steady(values, lane.n, lane.velocity, stamp_ns, ref):
                return False
        tracker.check(seq, arrival_ns)  # accepted: the next number, nothing held
        msg = lane.joint_state(payload, seq, stamp_ns)
        if plausibility is not None:
            self._checked_q = (msg, list(values[: lane.n]))
        self._follow(robot_id)
        self._deliver(topic, payload, msg, arrival_ns, None)
        return True

    def _backlog(self, msg: JointState, arrival_ns: int) -> bool:
        """Whether the old numbering is a backlog catching up with the held samples (e.g. a robot's client
        resending what it kept during an outage while its new samples overtake it): the held samples are ahead
        of it in robot time by about as much as in sequence numbers (at least half the sample period per
        number). A stray (seq + 1000 with a current stamp) is ahead in numbers only."""
        period = self._period_ns
        for held in self._held.values():
            ahead = (held[2].seq - msg.seq) % SEQ_MODULUS
            if period > 0 and held[2].stamp_ns - msg.stamp_ns >= 0.5 * period * ahead:
                return True
        return False

    def _deliver(self, topic: str, payload: bytes, msg: JointState, arrival_ns: int, clock_step: str | None) -> None:
        """Accept one sample: clock, plausibility reference, contradiction checks, hand-off, recording."""
        clock = self.clock
        if clock_step is not None:
            clock.restart(msg.stamp_ns, arrival_ns, clock_step)
        else:
            clock.update(msg.stamp_ns, arrival_ns)
        if clock.jumps != self._clock_jumps_seen:
            self._clock_jumps_seen = clock.jumps
            self.post_event(
                EventKind.CLOCK_JUMP, f"clock estimate re-initialised: {clock.last_jump}", jumps=clock.jumps
            )
        ref = self._ref
        if ref is not None and 0 < (msg.seq - ref.seq) % SEQ_MODULUS < 64 and msg.stamp_ns > ref.stamp_ns:
            period = (msg.stamp_ns - ref.stamp_ns) / ((msg.seq - ref.seq) % SEQ_MODULUS)
            self._period_ns = period if self._period_ns == 0 else self._period_ns + 0.05 * (period - self._period_ns)
        self._ref = msg
        if self._plausibility is not None:
            checked = self._checked_q
            q = checked[1] if checked[0] is msg else msg.position.tolist()
            self._ref_q = (q, msg.stamp_ns, msg.seq)
        self._last_state_arrival = arrival_ns
        if self._pending_offline is not None or self._offline is not None:
            self._contradict_offline(arrival_ns)
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

    def _deliver_late(self, topic: str, payload: bytes, msg: JointState, arrival_ns: int) -> None:
        """Hand on a sample older (by sequence number) than the newest accepted one, flagged late. It must be
        within the limits and stamped no later than the newest accepted sample (an older number with a newer
        stamp contradicts the stream: refused as out of order). It does not feed the clock sync (whose lower
        envelope it would not move) nor become the plausibility reference (that stays the newest sample)."""
        plausibility = self._plausibility
        if plausibility is not None:
            why = plausibility.limits_violation(
                msg.position.tolist(), None if msg.velocity is None else msg.velocity.tolist()
            )
            if why is not None:
                raise TelemetryError(RejectReason.OUT_OF_LIMITS, f"seq {msg.seq}: {why}")
        ref = self._ref
        if ref is None or msg.stamp_ns > ref.stamp_ns:
            raise TelemetryError(
                RejectReason.OUT_OF_ORDER,
                f"seq {msg.seq} is older than the newest accepted seq {self._seq.last} but its stamp is not",
            )
        n = self._n
        n["accepted"] += 1
        n["accepted_late"] += 1
        with self._buffer_lock:
            states = self._states
            if len(states) >= self._state_capacity:
                states.popleft()
                n["states_dropped"] += 1
            states.append(Received(msg, arrival_ns, True))
        if not self._ready.is_set():
            self._ready.set()
        if self.recorder is not None:
            self._record(True, topic, payload, arrival_ns, msg)

    def _discard_held(self) -> None:
        tracker = self._seq
        for seq in tracker.discarded:
            held = self._held.pop(seq, None)
            if held is not None:
                topic, payload, msg, arrival_ns, _ = held
                self._reject(
                    topic,
                    payload,
                    arrival_ns,
                    RejectReason.SEQ_JUMP,
                    f"seq {seq} jumped more than telemetry.max_seq_jump ({self.settings.max_seq_jump}) ahead and the "
                    f"following samples continued the old numbering (newest {tracker.last})",
                )
        tracker.discarded.clear()
        if not tracker.holding:
            self._held.clear()

    def _check_stamp(self, msg: JointState, arrival_ns: int) -> str | None:
        """Refuse a stamp far from the clock estimate unless a run of samples agrees (then: a real clock step)."""
        why = self.clock.implausible(msg.stamp_ns, arrival_ns)
        if why is None:
            self._stamp_run = 0
            return None
        offset = arrival_ns - msg.stamp_ns
        if self._stamp_run and abs(offset - self._stamp_offset) <= self.clock.jump_threshold_ns:
            self._stamp_run += 1
        else:
            self._stamp_offset, self._stamp_run = offset, 1
        needed = self.clock.jump_confirm_samples
        if self._stamp_run >= needed:
            self._stamp_run = 0
            return f"robot clock step confirmed by {needed} consecutive samples: stamp {why}"
        raise TelemetryError(
            RejectReason.IMPLAUSIBLE_STAMP,
            f"seq {msg.seq}: stamp_ns {msg.stamp_ns} is {why}; not taken as a clock step unless "
            f"{needed} consecutive samples agree",
        )

    def _check_jump(self, plausibility: _Plausibility, msg: JointState, q: list[float]) -> None:
        """Refuse a position jump faster than the velocity limits, unless a run of samples agrees (the robot
        really is elsewhere, e.g. it was moved while the twin was away)."""
        if self._ref is None or self._ref_q is None:
            return
        why = plausibility.jump_violation(q, msg.stamp_ns, self._ref_q, msg.seq)
        if why is None:
            self._jump_run = 0
            return
        candidate = self._jump_candidate
        if (
            self._jump_run
            and candidate is not None
            and plausibility.jump_violation(q, msg.stamp_ns, candidate, msg.seq) is None
        ):
            self._jump_run += 1
        else:
            self._jump_run = 1
        self._jump_candidate = (q, msg.stamp_ns, msg.seq)
        if self._jump_run >= self._confirm:
            self._jump_run = 0
            return  # confirmed: accept it; it becomes the new reference
        raise TelemetryError(
            RejectReason.IMPLAUSIBLE_JUMP,
            f"{why}; followed only if {self._confirm} consecutive samples agree",
        )

    # ---- births: a new boot is followed once the data confirm it ------------------------------------------------

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
        previous = self._birth
        boot = self._boot_check
        if boot is not None and birth.boot_id == boot.previous.boot_id:
            # The boot that was running announces itself again (e.g. the robot reconnected): the pending new boot
            # was not the robot's.
            self._restore_boot(boot, f"robot {robot_id!r} re-announced its running boot {birth.boot_id}")
            if self.recorder is not None:
                self._record(True, topic, payload, arrival_ns, birth)
            return
        if previous is not None and birth.boot_id != previous.boot_id and birth.boot_id in self._contradicted_boots:
            raise TelemetryError(
                RejectReason.CONTRADICTED_BIRTH,
                f"birth of robot {robot_id!r} with boot {birth.boot_id} was contradicted by its data before "
                f"(the running boot is {previous.boot_id}); ignored",
            )
        self._follow(robot_id)
        self._birth = birth
        self._n["births"] += 1
        if previous is None:
            self.post_event(
                EventKind.BIRTH,
                f"robot {robot_id!r} ({birth.model_id}, {len(birth.joint_names)} joints, {birth.rate_hz:g} Hz, {birth.codec}) boot {birth.boot_id}",
                boot_id=birth.boot_id,
            )
        elif previous.boot_id != birth.boot_id:
            # A new boot: its sequence numbers and its clock start over; the oscillator (drift) does not. The
            # old boot's state is kept aside until the data say which boot is talking (`_settle_boot`): a birth
            # alone, which anyone may publish, must not reset the twin's estimate.
            boot = self._boot_check
            if boot is None:
                ref = (self._ref, self._ref_q)
                self._boot_check = _BootCheck(previous, self._seq.fork(), self.clock.copy(), ref, topic, payload)
            else:  # another new boot before the first was settled: keep the state of the one that ran
                boot.topic, boot.payload, boot.old_run, boot.new_run = topic, payload, 0, 0
            self._seq.reset()
            self._discard_held()
            self.clock.reset(keep_drift=True)
            self._ref = None
            if self._pending_offline is not None:  # the old boot did go offline
                self._apply_status(*self._pending_offline)
        if self.recorder is not None:
            self._record(True, topic, payload, arrival_ns, birth)

    def _fits_old_boot(self, boot: _BootCheck, msg: JointState, arrival_ns: int) -> bool:
        """Whether a sample continues the boot that was running before the last birth (same numbering within
        ``max_seq_jump``, stamp consistent with its clock); such samples also feed its kept estimate."""
        ahead = boot.seq.ahead(msg.seq)
        if ahead is None or not 1 <= ahead <= self.settings.max_seq_jump + 1:
            return False
        if boot.clock.implausible(msg.stamp_ns, arrival_ns) is not None:
            return False
        boot.seq.check(msg.seq, arrival_ns)
        boot.clock.update(msg.stamp_ns, arrival_ns)
        return True

    def _settle_boot(self, boot: _BootCheck, fits_old: bool) -> None:
        """Count accepted samples for the old and the new boot; ``restart_confirm`` in a row decide."""
        if fits_old:
            boot.old_run, boot.new_run = boot.old_run + 1, 0
        else:
            boot.old_run, boot.new_run = 0, boot.new_run + 1
        birth = self._birth
        if boot.new_run >= self._confirm:
            self._boot_check = None
            self._n["restarts"] += 1
            self.post_event(
                EventKind.ROBOT_RESTARTED,
                f"robot {birth.robot_id!r} restarted (boot {boot.previous.boot_id} -> {birth.boot_id}, confirmed by "
                f"{self._confirm} samples of the new boot); sequence and clock estimates start over",
                boot_id=birth.boot_id,
                previous_boot_id=boot.previous.boot_id,
            )
        elif boot.old_run >= self._confirm:
            # The data go on as if nothing happened: the birth was not the robot's (or not a restart). Restore.
            self._restore_boot(
                boot, f"{self._confirm} samples since continue boot {boot.previous.boot_id} (sequence and clock)"
            )

    def _restore_boot(self, boot: _BootCheck, evidence: str) -> None:
        """The birth of a new boot was contradicted: go back to the running boot's birth, numbering and clock."""
        birth = self._birth
        self._boot_check = None
        self._contradicted_boots.append(birth.boot_id)
        self._birth = boot.previous
        self._seq.adopt(boot.seq)
        self.clock = boot.clock
        self._clock_jumps_seen = boot.clock.jumps
        if self._ref is None:
            self._ref, self._ref_q = boot.ref
        self._reject(
            boot.topic,
            boot.payload,
            self._n["last_arrival"],
            RejectReason.CONTRADICTED_BIRTH,
            f"a birth announced boot {birth.boot_id} of robot {birth.robot_id!r}, but {evidence}: not treated as a restart",
        )

    # ---- statuses: an 'offline' contradicted by flowing data is flagged, not obeyed ------------------------------

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
            last = self._last_state_arrival
            if status.state == "offline" and last is not None and arrival_ns - last < self._grace_ns:
                # Data were arriving a moment ago: hold the status until they stop (or contradict it).
                if self._pending_offline is None:
                    self._pending_offline = (status, arrival_ns, topic, payload)
                    history = self._connected_at is not None and arrival_ns - self._connected_at < _HISTORY_NS
                    # An 'offline' delivered right after the twin (re)connected is history (retained, or queued
                    # while it was away): data after it mean the robot is back, not that someone lies.
                    self._pending_epoch = -1 if history else self._link_epoch
            else:
                self._apply_status(status, arrival_ns, topic, payload)
        if self.recorder is not None:
            self._record(True, topic, payload, arrival_ns, status)

    def _apply_status(self, status: Status, arrival_ns: int, topic: str = "", payload: bytes = b"") -> None:
        self._pending_offline = None
        previous = self._status
        self._status = status
        self._offline = (status, arrival_ns, topic, payload) if status.state == "offline" else None
        if previous is None or previous.state != status.state:
            kind = EventKind.ROBOT_ONLINE if status.state == "online" else EventKind.ROBOT_OFFLINE
            self.post_event(
                kind,
                f"robot {status.robot_id!r} is {status.state}"
                + (f" (boot {status.boot_id})" if status.boot_id else ""),
                boot_id=status.boot_id,
            )

    def _settle_offline(self, now_ns: int) -> None:
        """A held 'offline' after ``offline_grace_s`` without contradiction: the robot really went offline."""
        pending = self._pending_offline
        if pending is not None and now_ns - pending[1] >= self._grace_ns:
            self._apply_status(*pending)

    def _contradict_offline(self, arrival_ns: int) -> None:
        """A sample accepted while an 'offline' of the running boot is held or in force.

        Held (data were flowing when it came) and samples still arrive after half the grace time (not the
        stragglers of a clean stop), with the twin's link up all along: the status contradicts the data and is
        flagged, not obeyed. In force (the data had stopped) or across an interruption of the twin's own link:
        the robot is back (e.g. it reconnected without re-announcing): online again, nothing to flag.
        """
        pending = self._pending_offline
        held = pending if pending is not None else self._offline
        status, since, topic, payload = held
        if arrival_ns - since <= self._grace_ns // 2:
            return
        self._pending_offline = None
        self._offline = None
        if pending is None or self._pending_epoch != self._link_epoch:
            if pending is None:
                self._apply_status(Status(status.robot_id, "online", status.boot_id), arrival_ns)
            return
        self._reject(
            topic,
            payload,
            since,
            RejectReason.CONTRADICTED_STATUS,
            f"robot {status.robot_id!r} was announced offline (boot {status.boot_id or '?'}) but its joint states keep "
            f"arriving {(arrival_ns - since) / 1e9:.3g} s later: the status is not obeyed",
        )

    # ---- refusals and recording -------------------------------------------------------------------------------

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
