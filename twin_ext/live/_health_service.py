# SPDX-License-Identifier: Apache-2.0
"""`HealthService`: the health monitor inside the live twin — fed every accepted sample, once per display tick.

The twin hands it each accepted joint state (`on_sample`, called from the display thread while the tick drains
the ingest); on the tick's `poll` the batch goes to the `HealthMonitor` in the robot's source-time order
(source stamps: smooth and self-consistent; the twin clock's mapping of them moves while the clock sync
converges). What it finds goes to:

* MQTT (when a link is given): every event on ``<prefix>/<robot_id>/health/events`` (QoS 1) and a summary,
  retained, on ``<prefix>/<robot_id>/health`` at most every ``summary_every_s`` and on every event (JSON,
  docs/health.md);
* the MCAP recording (when the ingest records): channels ``twin/health_events`` and ``twin/health``;
* the views: `summary`, `events`.

A failure inside the monitor is reported once in `error` and the service stops judging (the twin goes on).
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from typing import Any

import numpy as np

from ..health import HealthEvent, HealthMonitor, HealthSummary

__all__ = ["HEALTH_EVENTS_TOPIC", "HEALTH_SUMMARY_TOPIC", "HealthService"]

_MIN_JUDGED = 16
"""The time budget never cuts a tick below this many samples (1 kHz at 60 Hz is judged in full)."""

HEALTH_EVENTS_TOPIC = "twin/health_events"
"""MCAP channel of the health events (JSON, `HealthEvent.to_dict`)."""
HEALTH_SUMMARY_TOPIC = "twin/health"
"""MCAP channel of the health summaries (JSON, `HealthSummary.to_dict`)."""


class HealthService:
    """Runs a `HealthMonitor` on the live twin's accepted samples.

    Args:
        monitor: the `HealthMonitor` of the twin's robot.
        link: the `MqttLink` to publish on (None: no MQTT).
        topics: the robot's `Topics` (for the health topics).
        recorder: an `McapRecorder` to record events and summaries to (None: none).
        summary_every_s: least time between two retained summaries, s.
        now_ns: the twin clock, int ns.
        realtime: the twin runs against the wall clock: each tick also stays within ``health.tick_budget_ms``
            of judging (from the measured cost per sample). False (offline runs): bounded by count only, so
            results do not depend on how busy the machine is.
    """

    def __init__(
        self,
        monitor: HealthMonitor,
        *,
        link: Any = None,
        topics: Any = None,
        recorder: Any = None,
        summary_every_s: float = 1.0,
        now_ns=time.monotonic_ns,
        realtime: bool = False,
    ) -> None:
        self.monitor = monitor
        self.link = link
        self.topics = topics
        self.recorder = recorder
        self.summary_every_ns = int(summary_every_s * 1e9)
        self.now_ns = now_ns
        self.events: deque[HealthEvent] = deque(maxlen=100)
        self.error: str | None = None
        self._pending: list[Any] = []  # accepted JointState messages of this tick
        self._index = {name: i for i, name in enumerate(monitor.model.dof_names)}
        self._ndof = monitor.model.ndof
        self._names = tuple(monitor.model.dof_names)
        self._last_summary_ns = -(1 << 62)
        self._summary: HealthSummary | None = None
        self._lock = threading.Lock()
        self.published = 0
        self.thinned = 0
        self.realtime = realtime
        self._cost_s: float | None = None  # smoothed wall time the monitor takes per sample, s
        """Samples not judged because a tick brought more than ``max_samples_per_tick`` (a flood)."""
        self._trace: list[tuple[int, np.ndarray]] = []  # (twin ns, external torque per monitored joint)
        self._friction_trace: list[tuple[int, np.ndarray]] = []  # (twin ns, friction / nominal per joint)
        self._next_friction_ns = 0
        self.trace_limit = 100_000  # rows kept for the report (~28 min at 60 Hz)

    # ---- feeding (display thread) --------------------------------------------------------------------------
    def on_sample(self, message: Any) -> None:
        """One accepted `JointState` (names in any order; velocities and efforts may be missing).

        Only kept here (called for every sample of a tick, so it must be cheap); `poll` reads it."""
        if self.error is None:
            self._pending.append(message)

    def _arrays(self, message: Any) -> tuple[float, np.ndarray, np.ndarray, np.ndarray] | None:
        """``(t_s, q [ndof], qd [ndof], tau [ndof])`` of one message in the model's dof order (NaN where not
        measured), or None for names that are not the model's (the twin reports those itself)."""
        q, qd, tau = (np.full(self._ndof, np.nan) for _ in range(3))
        idx = [self._index.get(n, -1) for n in message.names]
        if min(idx, default=0) < 0:
            return None
        q[idx] = message.position
        if message.velocity is not None and len(message.velocity):
            qd[idx] = message.velocity
        if message.effort is not None and len(message.effort):
            tau[idx] = message.effort
        return message.stamp_ns * 1e-9, q, qd, tau

    def on_robot_restarted(self) -> None:
        """The robot restarted (new boot): its clock and numbering start over; so does the monitor's time."""
        self._pending.clear()
        self.monitor.restart_clock()

    def poll(self) -> None:
        """Judge the samples of this tick; publish and record what was found (called on every twin tick)."""
        samples = self.take_samples()
        if samples is None:
            return
        try:
            started = time.perf_counter()
            events = self.monitor.observe(*samples)
            seconds = time.perf_counter() - started
        except Exception as exc:  # noqa: BLE001 - the twin must go on; say why health stopped
            self.judgement_failed(exc)
            return
        self.judged(events, samples=len(samples[0]), seconds=seconds)

    # The parts of `poll`, for a fleet that judges many robots' samples in one batched pass (`BatchedHealthMonitor`):
    # take_samples -> the monitor's judgement -> judged (or judgement_failed).
    def take_samples(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """The samples this poll judges, ``(t_s [N], q, qd, tau [N, ndof])`` in the model's dof order (thinned to
        ``max_samples_per_tick``), or None when there are none (the summary is then refreshed when due)."""
        if self.error is not None or not self._pending:
            self._publish_summary(force=False)
            return None
        messages = sorted(self._pending, key=lambda m: m.stamp_ns)
        self._pending = []
        limit = self.monitor.settings.max_samples_per_tick
        budget_s = self.monitor.settings.tick_budget_ms * 1e-3
        if self.realtime and budget_s > 0 and self._cost_s:
            limit = min(limit, max(_MIN_JUDGED, int(budget_s / self._cost_s)))
        if len(messages) > limit:
            # A flood: judging every sample (~110 µs each) would stall the display loop; an even spread that
            # keeps the newest looks to the observer like telemetry loss, which it handles.
            self.thinned += len(messages) - limit
            step = (len(messages) - 1) / (limit - 1) if limit > 1 else 0.0
            messages = [messages[round(k * step)] for k in range(limit)] if limit > 1 else messages[-1:]
        ndof = self._ndof
        if all(
            m.names == self._names and m.velocity is not None and len(m.velocity) == ndof
            and m.effort is not None and len(m.effort) == ndof
            for m in messages
        ):  # fmt: skip
            # The usual case (every joint, in the model's order): stack the messages' arrays as they are.
            return (
                np.array([m.stamp_ns * 1e-9 for m in messages]),
                np.stack([m.position for m in messages]),
                np.stack([m.velocity for m in messages]),
                np.stack([m.effort for m in messages]),
            )
        batch = [a for a in map(self._arrays, messages) if a is not None]
        if not batch:
            self._publish_summary(force=False)
            return None
        return (
            np.array([b[0] for b in batch]),
            np.stack([b[1] for b in batch]),
            np.stack([b[2] for b in batch]),
            np.stack([b[3] for b in batch]),
        )

    def judgement_failed(self, exc: BaseException) -> None:
        """The monitor raised on `take_samples`' samples: say why once and stop judging (the twin goes on)."""
        self.error = f"the health monitor failed and stopped: {exc!r}"

    def judged(self, events: list[HealthEvent], *, samples: int, seconds: float) -> None:
        """The monitor judged ``samples`` samples in ``seconds`` (its share of a batch) and raised ``events``:
        learn the cost per sample, trace, publish and record."""
        if samples >= _MIN_JUDGED and self.monitor.samples > samples:
            # Measured on full batches after the first (warm-up) call: on small ones the call's fixed cost
            # would pass for a per-sample cost and starve a normal stream.
            cost = seconds / samples
            self._cost_s = cost if self._cost_s is None else 0.8 * self._cost_s + 0.2 * cost
        now = self.now_ns()
        if len(self._trace) < self.trace_limit:
            self._trace.append((now, self.monitor.external_torque().copy()))
            if now >= self._next_friction_ns:
                self._next_friction_ns = now + 100_000_000  # 10 Hz is plenty for a trend that moves over minutes
                ratios = [f.ratio if f.identifiable else np.nan for f in self.monitor.friction()]  # NaN: not yet known
                self._friction_trace.append((now, np.array(ratios)))
        for event in events:
            self.events.append(event)
            doc = event.to_dict()
            doc["time_base"] = "robot"  # t_s, detected_s: the robot's clock (its source stamps), s
            doc["detected_unix_s"] = time.time()  # wall clock when the twin raised it
            if self.link is not None and self.topics is not None:
                self.link.publish(self.topics.health_events, _encode(doc), qos=1)
            if self.recorder is not None:
                self._record(HEALTH_EVENTS_TOPIC, doc, now, "twin_ext.HealthEvent")
        self._publish_summary(force=bool(events))

    # ---- views -----------------------------------------------------------------------------------------------
    def trace(self) -> dict[str, Any]:
        """What the service saw, for reports: ``t_ns [T]`` (twin clock) with ``external_torque [T, J]`` (N·m),
        ``friction_t_ns [F]`` with ``friction_ratio [F, J]``, ``joints [J]``, and the events (`HealthEvent`)."""
        joints = self.monitor.joint_names
        nj = len(joints)
        return {
            "joints": joints,
            "t_ns": np.array([t for t, _ in self._trace], dtype=np.int64),
            "external_torque": np.stack([r for _, r in self._trace]) if self._trace else np.zeros((0, nj)),
            "friction_t_ns": np.array([t for t, _ in self._friction_trace], dtype=np.int64),
            "friction_ratio": (
                np.stack([r for _, r in self._friction_trace]) if self._friction_trace else np.zeros((0, nj))
            ),
            "events": list(self.monitor.events),
        }

    @property
    def summary(self) -> HealthSummary | None:
        """The latest summary (refreshed at most every ``summary_every_s``), or None before the first one."""
        with self._lock:
            return self._summary

    def _publish_summary(self, *, force: bool) -> None:
        now = self.now_ns()
        if self.monitor.samples == 0 or (not force and now - self._last_summary_ns < self.summary_every_ns):
            return
        self._last_summary_ns = now
        summary = self.monitor.summary()
        with self._lock:
            self._summary = summary
        doc = summary.to_dict()
        doc["thinned_samples"] = self.thinned
        if self.error:
            doc["notes"].append(self.error)
        if self.link is not None and self.topics is not None:
            if self.link.publish(self.topics.health, _encode(doc), qos=1, retain=True):
                self.published += 1
        if self.recorder is not None:
            self._record(HEALTH_SUMMARY_TOPIC, doc, now, "twin_ext.HealthSummary")

    def _record(self, topic: str, doc: dict, now: int, schema: str) -> None:
        try:
            self.recorder.record_json(topic, doc, now, schema)
        except Exception as exc:  # noqa: BLE001 - recording trouble must not stop health monitoring
            self.error = self.error or f"recording health to MCAP failed: {exc!r}"


def _encode(doc: dict) -> bytes:
    return json.dumps(doc, separators=(",", ":"), allow_nan=False).encode("utf-8")
