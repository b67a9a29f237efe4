# SPDX-License-Identifier: Apache-2.0
"""`LiveTwin`: the live loop — telemetry -> estimator -> snapshot -> sinks — and what-if on snapshots.

One display tick (`LiveTwin.tick`):
1. drain the ingest's events (link up/down, robot online/offline, restarts, rejections) into health and
   the error list;
2. drain the accepted samples and fuse each at the twin time it was sampled (source stamp through the
   clock sync);
3. predict the estimate to the display time and publish it as an immutable `TwinSnapshot`;
4. hand the snapshot to every sink (a failing sink is reported and disabled, never crashing the twin).

What-if requests run on a worker thread against the snapshot that was current when they were asked, so
ingest and display never wait for them; a twin whose health is not ``ok`` answers ``unknown``.
Commands to the robot go out only when ``[twin] commands_enabled`` is true (the gate is closed by default), and
then only after their pre-flight (`twin_ext.control`: bounds, health, a what-if simulation; docs/control.md).
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..config import section_from_mapping
from ..control import CommandGate, CommandLog, CommandRefused, ControlSettings, Preflight, TrackedCommand
from ..estimation import EstimatorSettings, Health, TwinEstimator, TwinSnapshot
from ..robot import RobotModel
from ..sinks import Sink

__all__ = ["CommandGateClosed", "LiveTwin", "TwinSettings", "TwinStatus", "JointReading"]

_EXPECTED_REJECTS = ("out_of_order", "duplicate")
_consume = deque(maxlen=0).extend  # runs an iterator to its end (or its first exception), keeping nothing
_STATUS_COMMANDS = 5  # the last commands a TwinStatus carries (dashboard, status file)


class CommandGateClosed(CommandRefused):
    """A command to the robot was refused because the command channel is disabled or has no running link
    (``check == "gate"``); other refusals are `twin_ext.control.CommandRefused`."""

    def __init__(self, message: str, fix: str = "") -> None:
        super().__init__("gate", message, fix or "see docs/control.md")


@dataclass(frozen=True)
class TwinSettings:
    """``[twin]``: the live loop."""

    display_rate_hz: float = 60.0
    """Display ticks per second (snapshots to sinks and views)."""
    rate_window_s: float = 2.0
    """Window over which message rates are measured, s."""
    commands_enabled: bool = False
    """Open the twin -> robot command channel (speed override, stop, move_to). Off by default: the robot must
    also be configured to accept commands."""
    whatif_timeout_s: float = 60.0
    """Longest a what-if request may take before it is reported as failed, s."""
    serve_whatif: bool = True
    """Answer what-if requests on ``<prefix>/<robot_id>/whatif/request`` with results on ``.../whatif/result``."""
    max_errors: int = 20
    """How many recent error messages the status keeps."""
    max_samples_per_tick: int = 32
    """Most telemetry samples fused per display tick; under a flood the tick fuses this many, evenly spread over
    what arrived (always the newest), and counts the rest as ``thinned``: the display keeps its rate (fusing one
    sample costs ~80 µs). 32 per tick at 60 Hz is ~1.9 kHz of telemetry fused in full."""
    max_burst_samples: int = 256
    """Samples a tick may fuse beyond ``max_samples_per_tick`` out of the capacity earlier ticks left unused (a
    token bucket of this size, refilled by ``max_samples_per_tick`` per tick): a stalled link's released backlog
    (120 samples after 0.6 s at 200 Hz) is fused in full, a sustained flood is thinned to ``max_samples_per_tick``
    once the bucket is empty (after a few ticks). 0 = no bursts."""
    fuse_budget_ms: float = 4.0
    """Time one tick may spend fusing samples (a quarter of a 60 Hz tick); beyond it the remaining samples but the
    newest are thinned (counted). Only a flood on a busy machine reaches it: 32 samples take ~2.7 ms alone."""
    watchdog_s: float = 1.0
    """If the display loop itself has not ticked for this long (a sink or service blocking it), health turns
    ``stale`` with the reason, in the status and on ``twin/status``; 0 = no watchdog. Armed once the twin has
    ticked regularly (10 ticks, each within half this time of the previous one)."""

    def __post_init__(self) -> None:
        if not (0.5 <= self.display_rate_hz <= 1000):
            raise ValueError(f"display_rate_hz must be in [0.5, 1000], got {self.display_rate_hz}")
        if not self.rate_window_s > 0:
            raise ValueError(f"rate_window_s must be > 0, got {self.rate_window_s}")
        if self.max_samples_per_tick < 1:
            raise ValueError(f"max_samples_per_tick must be >= 1, got {self.max_samples_per_tick}")
        if self.max_burst_samples < 0:
            raise ValueError(f"max_burst_samples must be >= 0 (0: no bursts), got {self.max_burst_samples}")
        if not (math.isfinite(self.fuse_budget_ms) and self.fuse_budget_ms > 0):
            raise ValueError(f"fuse_budget_ms must be a finite number > 0 ms, got {self.fuse_budget_ms}")
        if not (math.isfinite(self.watchdog_s) and self.watchdog_s >= 0):
            raise ValueError(f"watchdog_s must be a finite number >= 0 s (0 = off), got {self.watchdog_s}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> TwinSettings:
        return section_from_mapping(cls, mapping, section="twin")


@dataclass(frozen=True)
class JointReading:
    """One joint as the views show it: the newest measurement beside the estimate (rad|m, rad/s|m/s)."""

    name: str
    measured_q: float
    measured_qd: float
    estimated_q: float
    estimated_qd: float
    std_q: float
    lower: float
    upper: float
    velocity_limit: float


@dataclass(frozen=True)
class TwinStatus:
    """Everything the dashboards show, in one consistent snapshot (plain values; safe to keep)."""

    t_ns: int
    health: Health
    snapshot: TwinSnapshot
    joints: tuple[JointReading, ...]
    link_connected: bool
    robot_online: bool | None
    robot_id: str | None
    msg_rate_hz: float
    accepted: int
    rejected: int
    rejected_by_reason: Mapping[str, int]
    duplicates: int
    late: int
    clock_ready: bool
    clock_offset_ms: float
    clock_drift_ppm: float
    latency_ms: float
    clock_jumps: int
    restarts: int
    estimator_late: int
    estimator_gated: int
    display_rate_hz: float
    errors: tuple[str, ...]
    events: tuple[str, ...]
    noise_note: str = ""
    """Joints whose sensors the estimator found noisier than configured (learned vs configured position
    sigma), or "" when every joint is within 2x of ``estimator.sigma_q``."""
    clock_drift_sd_ppm: float = math.nan
    """Standard error of ``clock_drift_ppm`` (ppm; inf until the drift is first fitted, NaN without a clock line)."""
    health_reason: str = ""
    """Why health is not what the estimate says (e.g. the display loop stopped ticking), or ""."""
    states_dropped: int = 0
    """Samples the ingest's hand-off buffer dropped (oldest first) because the display loop did not poll in time."""
    thinned: int = 0
    """Samples not fused because more than ``twin.max_samples_per_tick`` arrived within one tick (a flood)."""
    seq_gaps: int = 0
    """Sequence numbers skipped by the robot's stream (an upper bound of samples lost before the twin)."""
    estimator_resets: int = 0
    """Whole-estimate resets (a robot restart confirmed by its data)."""
    fused_late: int = 0
    """Samples that arrived after a newer one (reordered by the network) and were fused at their own time."""
    command_gate: str = "closed"
    """The command channel (`LiveTwin.gate_state`): "open" (commands are pre-flighted and sent), "blocked" (only
    stop is sent) or "closed" (no commands at all)."""
    command_gate_reason: str = ""
    """Why the gate is not open ("" when open), e.g. "the twin is stale: only stop is sent"."""
    commands: tuple[Mapping[str, Any], ...] = ()
    """The last commands sent, newest last (`TrackedCommand.to_dict`: id, type, requester, state, reason, detail,
    sent_ns, lease_ns, justification)."""

    @property
    def clock_drift_text(self) -> str:
        """The clock drift with its standard error ("+50 ± 12 ppm"), or "pending" before it is first fitted (the
        value would be the prior, 0 ppm at first start), "—" without a clock line: for dashboards and panels."""
        drift, sd = self.clock_drift_ppm, self.clock_drift_sd_ppm
        if not math.isfinite(drift):
            return "—"
        if not math.isfinite(sd):
            return "pending"
        return f"{drift:+.0f} ± {sd:.0f} ppm"

    def to_dict(self) -> dict[str, Any]:
        """The status as plain JSON-able values (no arrays but the per-joint rows): for status files and logs.

        Units as in the attribute names (ms, ppm, Hz); joint values in rad|m and rad/s|m/s; NaN becomes None.
        """

        def num(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "t_ns": int(self.t_ns),
            "health": self.health.value,
            "age_s": num(self.snapshot.age_s),
            "link_connected": self.link_connected,
            "robot_online": self.robot_online,
            "robot_id": self.robot_id,
            "msg_rate_hz": num(self.msg_rate_hz),
            "accepted": self.accepted,
            "rejected": self.rejected,
            "rejected_by_reason": dict(self.rejected_by_reason),
            "clock_ready": self.clock_ready,
            "clock_offset_ms": num(self.clock_offset_ms),
            "clock_drift_ppm": num(self.clock_drift_ppm),
            "clock_drift_sd_ppm": num(self.clock_drift_sd_ppm),
            "latency_ms": num(self.latency_ms),
            "clock_jumps": self.clock_jumps,
            "restarts": self.restarts,
            "estimator_late": self.estimator_late,
            "estimator_gated": self.estimator_gated,
            "display_rate_hz": num(self.display_rate_hz),
            "errors": list(self.errors),
            "events": list(self.events),
            "noise_note": self.noise_note,
            "health_reason": self.health_reason,
            "states_dropped": self.states_dropped,
            "thinned": self.thinned,
            "seq_gaps": self.seq_gaps,
            "estimator_resets": self.estimator_resets,
            "fused_late": self.fused_late,
            "commands": {
                "gate": self.command_gate,
                "reason": self.command_gate_reason,
                "recent": [dict(c) for c in self.commands],
            },
            "joints": [
                {
                    "name": j.name,
                    "measured_q": num(j.measured_q),
                    "estimated_q": num(j.estimated_q),
                    "std_q": num(j.std_q),
                    "estimated_qd": num(j.estimated_qd),
                }
                for j in self.joints
            ],
        }


class LiveTwin:
    """The live twin of one robot.

    Args:
        model: the robot.
        ingest: a `twin_ext.telemetry.TelemetryIngest` (fed by an MQTT link, a replay or a simulation).
        link: the transport feeding ``ingest`` (started/stopped with the twin), e.g. `MqttLink`; optional.
        estimator: default `TwinEstimator(model, estimator_settings)`.
        sinks: where snapshots go.
        settings: `TwinSettings`.
        whatif: optional evaluator with ``evaluate(snapshot, request) -> result`` (the what-if engine's
            service); requests run on a worker thread.
        now_ns: the twin clock (int ns), default `time.monotonic_ns` (tests and offline runs inject one).
        control: `twin_ext.control.ControlSettings` (``[control]``) of the command channel's pre-flight.
        realtime: the display loop runs against the wall clock, so a tick's fusing is also bounded by
            ``settings.fuse_budget_ms`` of wall time. Default: True exactly when ``now_ns`` is the default.
            Offline runs (replay, simulation, benchmarks on a virtual clock) must not depend on how busy the
            machine is: there only the count bound (``max_samples_per_tick``) thins, so they reproduce bit
            for bit.
    """

    def __init__(
        self,
        model: RobotModel,
        ingest: Any,
        *,
        link: Any = None,
        estimator: TwinEstimator | None = None,
        estimator_settings: EstimatorSettings | None = None,
        sinks: Iterable[Sink] = (),
        settings: TwinSettings | None = None,
        whatif: Any = None,
        now_ns: Callable[[], int] = time.monotonic_ns,
        realtime: bool | None = None,
        control: ControlSettings | None = None,
    ) -> None:
        self.model = model
        self.realtime = now_ns is time.monotonic_ns if realtime is None else bool(realtime)
        self.ingest = ingest
        self.link = link
        self.settings = settings or TwinSettings()
        self.estimator = estimator or TwinEstimator(model, estimator_settings)
        self.sinks: list[Sink] = list(sinks)
        self.services: list[Any] = []
        """Objects with ``poll()`` run after the sinks on every tick (e.g. `RemoteWhatIf`, `HealthService`); one
        with ``on_robot_restarted()`` is told when the robot restarts (a new boot confirmed by its data)."""
        self.sample_listeners: list[Callable[[Any], None]] = []
        """Called on the display thread with every accepted in-order `JointState` of a tick (late, reordered ones are
        only fused by the estimator), in arrival order, before the
        estimator's flood thinning (a health monitor needs every sample; its cost is per tick, not per sample)."""
        self.whatif = whatif
        self.now_ns = now_ns
        self._link_connected = link is None  # no transport (replay, simulation): the feed is the link
        self._errors: deque[str] = deque(maxlen=self.settings.max_errors)
        self._events: deque[str] = deque(maxlen=50)
        self._accept_times: deque[int] = deque()  # arrival times of fused samples in the rate window
        self._tick_times: deque[int] = deque(maxlen=120)
        self._latest: TwinSnapshot | None = None
        self._lock = threading.Lock()
        self._tick_lock = threading.RLock()
        self._executor: ThreadPoolExecutor | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._thinned = 0
        self._fuse_tokens = float(self.settings.max_samples_per_tick + self.settings.max_burst_samples)
        self._last_tick_wall: float | None = None  # time.monotonic() of the last tick
        self._regular_ticks = 0  # consecutive ticks at least twice per watchdog_s: the watchdog is armed at 10
        self._stalled_reason = ""  # set by the watchdog while the display loop does not tick
        self._watchdog: threading.Thread | None = None
        self._watchdog_stop = threading.Event()
        self.commands = CommandGate(
            Preflight(model, control, evaluate=self._simulate_command),
            audit=CommandLog(getattr(ingest, "recorder", None)),
            now_ns=now_ns,
        )
        """The command channel: pre-flight, leases, acknowledgements (``.tracker``) and the audit log (``.audit``)."""

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the transport (if any). Never raises for a dead broker: the link reports and retries."""
        if self._started:
            return
        self._started = True
        if self.link is not None:
            add_handler = getattr(self.link, "add_handler", None)
            topics = getattr(self.ingest, "topics", None)
            if self.settings.commands_enabled and add_handler is not None and topics is not None:
                try:
                    add_handler(topics.command_ack, self.commands.on_ack_payload)
                except RuntimeError:  # the link was started by someone else: acks are not followed
                    self._error("command acknowledgements are not followed: the link started before the twin")
            self.link.start()
        if self.settings.watchdog_s > 0 and self._watchdog is None:
            self._watchdog_stop.clear()
            self._watchdog = threading.Thread(target=self._watch, name="twin_ext-watchdog", daemon=True)
            self._watchdog.start()

    def stop(self) -> None:
        """Stop the display thread, the transport, what-if workers and sinks (idempotent)."""
        self._stop.set()
        self._watchdog_stop.set()
        if self._watchdog is not None and self._watchdog is not threading.current_thread():
            self._watchdog.join(timeout=2.0)
            self._watchdog = None
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
            self._thread = None
        if self.link is not None and self._started:
            try:
                self.link.stop()
            except Exception as exc:  # noqa: BLE001 - shutting down: report, continue
                self._error(f"stopping the link failed: {exc}")
        self._started = False
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None
        for sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001
                self._error(f"closing sink {getattr(sink, 'name', sink)!r} failed: {exc}")

    def run_in_background(self) -> None:
        """Tick at ``display_rate_hz`` on a daemon thread until `stop`."""
        if self._thread is not None:
            return
        self.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="twin_ext-display", daemon=True)
        self._thread.start()

    def run_for(self, duration_s: float, *, on_tick: Callable[[TwinSnapshot], None] | None = None) -> None:
        """Tick at ``display_rate_hz`` on the calling thread for ``duration_s`` seconds (or until `stop`)."""
        self.start()
        period = 1.0 / self.settings.display_rate_hz
        end = time.monotonic() + duration_s
        next_tick = time.monotonic()
        while not self._stop.is_set() and time.monotonic() < end:
            snapshot = self.tick()
            if on_tick is not None:
                on_tick(snapshot)
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_tick = time.monotonic()  # fell behind: do not try to catch up with a burst

    def _run(self) -> None:
        period = 1.0 / self.settings.display_rate_hz
        next_tick = time.monotonic()
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - the display thread must survive anything
                self._error(f"display tick failed: {exc!r}")
            next_tick += period
            delay = next_tick - time.monotonic()
            if delay > 0:
                self._stop.wait(delay)
            else:
                next_tick = time.monotonic()

    # ---- the tick ------------------------------------------------------------------------------------
    def tick(self, now_ns: int | None = None) -> TwinSnapshot:
        """One display step at twin time ``now_ns`` (default: the twin clock). Returns the new snapshot.

        Serialised (a re-entrant lock): `status` may tick from a view thread before the display loop's first
        snapshot, and two ticks at once would drain and fuse the same samples concurrently."""
        with self._tick_lock:
            return self._tick(now_ns)

    def _tick(self, now_ns: int | None) -> TwinSnapshot:
        now = self.now_ns() if now_ns is None else int(now_ns)
        self._drain_events()
        self._drain_states()
        snapshot = self.estimator.snapshot(now)
        with self._lock:
            self._latest = snapshot
        self._tick_times.append(now)
        wall = time.monotonic()
        last_wall, self._last_tick_wall = self._last_tick_wall, wall
        if last_wall is not None and wall - last_wall < 0.5 * self.settings.watchdog_s:
            self._regular_ticks += 1
        else:
            self._regular_ticks = 0
        if self._stalled_reason:
            self._recovered()
        for sink in list(self.sinks):
            try:
                sink.on_snapshot(snapshot)
            except Exception as exc:  # noqa: BLE001
                self.sinks.remove(sink)
                self._error(f"sink {getattr(sink, 'name', sink)!r} failed and was disabled: {exc!r}")
        for service in self.services:
            try:
                service.poll()
            except Exception as exc:  # noqa: BLE001
                self._error(f"{type(service).__name__} failed: {exc!r}")
        try:
            self.commands.poll()  # acknowledgements and timeouts of commands in flight
        except Exception as exc:  # noqa: BLE001
            self._error(f"command tracking failed: {exc!r}")
        return snapshot

    def _drain_events(self) -> None:
        for event in self.ingest.poll_events():
            kind = getattr(event.kind, "value", str(event.kind))
            self._events.append(f"{kind}: {event.message}")
            if kind == "connected":
                self._link_connected = True
                self.estimator.set_link(connected=True)
            elif kind in ("disconnected", "unreachable", "refused", "stopped"):
                self._link_connected = False
                self.estimator.set_link(connected=False)
                if kind != "stopped":
                    self._error(event.message)
            elif kind == "robot_online":
                self.estimator.set_link(robot_online=True)
            elif kind == "robot_offline":
                self.estimator.set_link(robot_online=False)
            elif kind == "robot_restarted":
                self.estimator.reset()
                for service in self.services:
                    restarted = getattr(service, "on_robot_restarted", None)
                    if restarted is not None:
                        restarted()
            elif kind == "conflict":  # another twin with this client id: a misconfiguration, always shown
                if "other" not in event.detail:  # this twin's link stopped connecting
                    self._link_connected = False
                    self.estimator.set_link(connected=False)
                self._error(event.message)
            elif kind == "rejected" and event.detail.get("reason") in _EXPECTED_REJECTS:
                pass  # duplicates and late samples are the network's doing, counted in the status, not errors
            elif kind in ("birth_mismatch", "rejected", "subscribe_failed", "recording_failed", "internal_error"):
                self._error(event.message)

    def _drain_states(self) -> None:
        clock = self.ingest.clock
        batch = self.ingest.poll_states()
        # Listeners see the stream in source order; only the estimator re-filters late ones.
        in_order = [received.message for received in batch if not getattr(received, "late", False)]
        if in_order:
            for listener in list(self.sample_listeners):
                try:
                    _consume(map(listener, in_order))  # each message in turn, up to the first failure
                except Exception as exc:  # noqa: BLE001 - a listener must not stop the twin
                    self.sample_listeners.remove(listener)
                    self._error(f"sample listener {listener!r} failed and was removed: {exc!r}")
        if len(in_order) < len(batch):
            # Reordered samples: fuse this tick's batch in source order, so only samples older than what earlier
            # ticks fused need the estimator's re-filtering (done once for them all, from the earliest).
            batch = sorted(batch, key=lambda received: received.message.stamp_ns)
        # Token bucket: unused capacity of earlier ticks lets a one-off backlog through; a flood drains it.
        per_tick = self.settings.max_samples_per_tick
        self._fuse_tokens = min(self._fuse_tokens + per_tick, per_tick + self.settings.max_burst_samples)
        limit = max(per_tick, int(self._fuse_tokens))
        self._fuse_tokens -= min(len(batch), limit)
        if len(batch) > limit:
            # A flood: fuse an even spread of what arrived, always the newest (fusing costs ~80 µs per sample;
            # fusing all would stall the display). The rate window still counts every sample.
            self._thinned += len(batch) - limit
            self._accept_times.extend([r.arrival_ns for r in batch])
            step = (len(batch) - 1) / (limit - 1) if limit > 1 else 0.0
            batch = [batch[round(k * step)] for k in range(limit)] if limit > 1 else batch[-1:]
            counted = True
        else:
            counted = False
        # A time budget on top of the count: under a flood the network thread competes for the GIL and a
        # sample can cost 4x its ~80 µs; past the budget the rest but the newest are skipped (thinned).
        budget_end = (
            time.perf_counter() + self.settings.fuse_budget_ms * 1e-3 if self.realtime and len(batch) > 1 else math.inf
        )
        last = len(batch) - 1
        for k, received in enumerate(batch):
            if k < last and time.perf_counter() > budget_end:
                self._thinned += 1
                if not counted:
                    self._accept_times.append(received.arrival_ns)
                continue
            msg = received.message
            try:
                sample_ns = clock.to_twin_ns(msg.stamp_ns)
            except Exception:  # noqa: BLE001 - no clock line yet: the arrival time is the best we have
                sample_ns = received.arrival_ns
            # Nothing is sampled after it arrives: a mapping that says so is a clock jump the sync has not
            # confirmed yet, and fusing "future" samples would make every later one look late.
            sample_ns = min(sample_ns, received.arrival_ns)
            try:
                self.estimator.observe(
                    msg.names, msg.position, msg.velocity, sample_ns=sample_ns, arrival_ns=received.arrival_ns
                )
                if msg.reference_position is not None:  # the controller's reference: bridges gaps (docs/telemetry.md)
                    self.estimator.observe_reference(
                        msg.names, msg.reference_position, msg.reference_velocity, sample_ns=sample_ns
                    )
            except ValueError as exc:  # names that are not the model's joints
                self._error(str(exc))
                continue
            if not counted:
                self._accept_times.append(received.arrival_ns)
        horizon = self.now_ns() - int(self.settings.rate_window_s * 1e9)
        accepted = self._accept_times
        if accepted and accepted[0] < horizon:
            pop = accepted.popleft
            while accepted and accepted[0] < horizon:
                pop()

    def _error(self, message: str) -> None:
        if not self._errors or self._errors[-1] != message:
            self._errors.append(message)

    # ---- watchdog: the display loop itself must keep ticking ---------------------------------------------
    def _watch(self) -> None:
        """Thread: turn health ``stale`` (status, ``twin/status``) while the display loop does not tick."""
        limit = self.settings.watchdog_s
        while not self._watchdog_stop.wait(min(0.25, limit / 4)):
            last = self._last_tick_wall
            if last is None or self._stalled_reason or self._regular_ticks < 10:
                continue  # not (yet) a running display loop, or already reported
            silent = time.monotonic() - last
            if silent > limit:
                reason = (
                    f"the display loop has not ticked for {silent:.1f} s (more than twin.watchdog_s = {limit:g} s): a sink, "
                    f"a service or the host application is blocking it; the shown state is not being updated"
                )
                self._stalled_reason = reason
                self._error(reason)
                self._publish_health("stale", reason)

    def _recovered(self) -> None:
        reason, self._stalled_reason = self._stalled_reason, ""
        self._events.append(f"display: ticking again after a stall ({reason.split(':')[0]})")
        self._publish_health("ok", "")

    def _publish_health(self, health: str, reason: str) -> None:
        publish = getattr(self.link, "publish_health", None)
        if publish is not None:
            try:
                publish(health, reason)
            except Exception as exc:  # noqa: BLE001 - the watchdog must survive a broken link
                self._error(f"publishing the twin's health failed: {exc!r}")

    # ---- reading -------------------------------------------------------------------------------------
    @property
    def latest_snapshot(self) -> TwinSnapshot | None:
        """The snapshot of the latest tick (immutable), or None before the first tick."""
        with self._lock:
            return self._latest

    @property
    def errors(self) -> tuple[str, ...]:
        """Recent error messages, oldest first."""
        return tuple(self._errors)

    def status(self) -> TwinStatus:
        """A consistent status for dashboards and panels (ticks once if no snapshot exists yet)."""
        snapshot = self.latest_snapshot or self.tick()
        stats = self.ingest.stats
        clock = self.ingest.clock
        latest = self.ingest.latest
        measured_q = np.full(self.model.ndof, np.nan)
        measured_qd = np.full(self.model.ndof, np.nan)
        if latest is not None:
            lookup = {n: i for i, n in enumerate(self.model.dof_names)}
            for k, name in enumerate(latest.message.names):
                if name in lookup:
                    measured_q[lookup[name]] = latest.message.position[k]
                    if latest.message.velocity is not None:
                        measured_qd[lookup[name]] = latest.message.velocity[k]
        std = snapshot.std_q
        joints = tuple(
            JointReading(
                name=n,
                measured_q=float(measured_q[i]),
                measured_qd=float(measured_qd[i]),
                estimated_q=float(snapshot.q[i]),
                estimated_qd=float(snapshot.qd[i]),
                std_q=float(std[i]),
                lower=float(self.model.lower[i]),
                upper=float(self.model.upper[i]),
                velocity_limit=float(self.model.velocity_limit[i]),
            )
            for i, n in enumerate(self.model.dof_names)
        )
        window = self.settings.rate_window_s
        ticks = list(self._tick_times)
        display_rate = (
            (len(ticks) - 1) / ((ticks[-1] - ticks[0]) * 1e-9) if len(ticks) > 1 and ticks[-1] > ticks[0] else 0.0
        )
        ready = bool(getattr(clock, "ready", False))
        has_line = getattr(clock, "samples", 0) > 0
        by_reason = dict(stats.rejected_by_reason)
        stalled = self._stalled_reason
        health = snapshot.health
        if stalled and health is Health.OK:
            health = Health.STALE
        gate, gate_reason = self.gate_state()
        return TwinStatus(
            t_ns=snapshot.t_ns,
            health=health,
            snapshot=snapshot,
            joints=joints,
            link_connected=self._link_connected,
            robot_online=self.ingest.robot_online,
            robot_id=self.ingest.robot_id,
            msg_rate_hz=len(self._accept_times) / window,
            accepted=stats.accepted,
            rejected=stats.rejected,
            rejected_by_reason=by_reason,
            duplicates=by_reason.get("duplicate", 0),
            late=by_reason.get("out_of_order", 0),
            clock_ready=ready,
            clock_offset_ms=clock.offset_ns * 1e-6 if has_line else math.nan,
            clock_drift_ppm=clock.drift * 1e6 if has_line else math.nan,
            clock_drift_sd_ppm=clock.drift_sd * 1e6 if has_line else math.nan,
            latency_ms=clock.latency_ns * 1e-6 if has_line else math.nan,
            clock_jumps=stats.clock_jumps,
            restarts=stats.restarts,
            estimator_late=self.estimator.stats.late,
            estimator_gated=sum(self.estimator.stats.gated.values()),
            display_rate_hz=display_rate,
            errors=self.errors,
            events=tuple(self._events),
            noise_note=self._noise_note(),
            health_reason=stalled,
            states_dropped=stats.states_dropped,
            thinned=self._thinned,
            seq_gaps=stats.seq_gaps,
            estimator_resets=self.estimator.stats.resets,
            fused_late=self.estimator.stats.fused_late,
            command_gate=gate,
            command_gate_reason=gate_reason,
            commands=tuple(self.commands.tracker.recent(_STATUS_COMMANDS)),
        )

    def _noise_note(self) -> str:
        """Name the joints whose position noise the estimator learned to be > 2x the configured sigma_q."""
        noisy = self.estimator.noisier_than_configured()
        if not noisy:
            return ""
        parts = ", ".join(f"{name} {sigma:.1e}" for name, sigma in list(noisy.items())[:3])
        more = f" and {len(noisy) - 3} more" if len(noisy) > 3 else ""
        return (
            f"position noise (1 sigma, rad|m) above estimator.sigma_q ({self.estimator.settings.sigma_q:.1e}): "
            f"{parts}{more}; followed (learned online), raise sigma_q to match if this is normal for the robot"
        )

    # ---- what-if and commands ---------------------------------------------------------------------------
    def ask_whatif(
        self, request: Any, *, snapshot: TwinSnapshot | None = None, cancel: threading.Event | None = None
    ) -> Future:
        """Evaluate a what-if ``request`` on the current snapshot on a worker thread; returns a Future.

        The snapshot is taken now (immutable), so the answer refers to the state at the time of asking, and
        ingest/display continue meanwhile. Raises RuntimeError if no what-if evaluator was configured.

        Args:
            snapshot: evaluate on this snapshot instead of the current one (the remote service passes the one
                it checked and aligned the command to).
            cancel: set it to stop the evaluation early (passed to ``whatif.evaluate(..., cancel=)``; the
                engine stops after its current chunk of steps).
        """
        if self.whatif is None:
            raise RuntimeError("this twin has no what-if engine; fix: create LiveTwin(..., whatif=WhatIfService(...))")
        snapshot = snapshot or self.latest_snapshot or self.tick()
        with self._lock:  # asked from the display thread and the remote service's dispatcher
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twin_ext-whatif")
            executor = self._executor
        if cancel is None:
            return executor.submit(self.whatif.evaluate, snapshot, request)
        return executor.submit(self.whatif.evaluate, snapshot, request, cancel=cancel)

    def send_command(self, command: Any, *, requester: str = "local") -> TrackedCommand:
        """Send a command (`twin_ext.telemetry`: SpeedOverride, Stop, Resume, MoveTo) to the robot on
        ``<prefix>/<robot_id>/command`` after its pre-flight (docs/control.md); returns its `TrackedCommand`, whose
        ``state`` follows the robot's acknowledgements on the display tick (sent, received, started, done |
        rejected | failed). A stop is always allowed and sent first; anything else is checked against the joint
        limits and bounds, the twin's health and clock sync, and (move_to) simulated from the current snapshot.

        Args:
            requester: who asks (recorded in the audit log, ``twin/command_log``).

        Raises:
            CommandGateClosed: ``commands_enabled`` is false (the default), or there is no running link.
            twin_ext.control.CommandRefused: a pre-flight check failed (``check`` and ``fix`` say which and how).
        """
        if not self.settings.commands_enabled:
            raise CommandGateClosed(
                "commands to the robot are disabled",
                "set [twin] commands_enabled = true (and enable command acceptance on the robot) if this twin "
                "may steer it",
            )
        if self.link is None:
            raise CommandGateClosed("no link to the robot: commands need a live MQTT link", "run the twin with a link")
        topic = self.ingest.topics.command
        try:
            return self.commands.send(
                command,
                snapshot=self.latest_snapshot or self.tick(),
                publish=lambda payload: self.link.publish(topic, payload, qos=1),
                health=self._command_health(),
                clock=self.ingest.clock,
                requester=requester,
            )
        except CommandRefused as exc:
            if exc.check == "gate":
                raise CommandGateClosed(exc.message, exc.fix) from None
            raise

    def _simulate_command(self, snapshot: TwinSnapshot, scenario: Any) -> Any:
        """The pre-flight's simulation: the what-if engine on the calling thread (it has its own lock)."""
        if self.whatif is None:
            raise RuntimeError("this twin has no what-if engine; fix: create LiveTwin(..., whatif=WhatIfService(...))")
        return self.whatif.evaluate(snapshot, scenario)

    def _command_health(self) -> str:
        """The twin's health as the command gate sees it: stale while the display loop stalls, lost without link."""
        if self._stalled_reason:
            return "stale"
        if not self._link_connected:
            return "lost"
        return ""

    def gate_state(self) -> tuple[str, str]:
        """``("closed" | "blocked" | "open", why)``: closed = no commands at all; blocked = only stop is sent (the
        twin is not ok or its clock is not synced); open = commands are pre-flighted and sent."""
        if not self.settings.commands_enabled:
            return "closed", "[twin] commands_enabled = false"
        if self.link is None:
            return "closed", "no link to the robot"
        snapshot = self.latest_snapshot
        health = self._command_health() or (snapshot.health.value if snapshot is not None else "unknown")
        if health != "ok":
            return "blocked", f"the twin is {health}: only stop is sent"
        if self.commands.settings.require_clock_sync and not getattr(self.ingest.clock, "ready", False):
            return "blocked", "the clock sync is not ready: only stop is sent"
        return "open", ""
