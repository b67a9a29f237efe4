# SPDX-License-Identifier: Apache-2.0
"""`FleetRobot`: one robot of a fleet — its own ingest, `LiveTwin` (estimator) and `HealthService`."""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from ..health import HealthMonitor
from ..live import HealthService, LiveTwin
from ..telemetry import TelemetryIngest
from ._batched_estimation import BatchedEstimator

__all__ = ["FleetRobot", "FusedState"]


class FusedState(NamedTuple):
    """A robot's estimate right after its newest fused sample, not predicted (``FleetRobot.fused``): what a reader
    that needs the freshest state takes between display ticks. The arrays are this record's own (read-only)."""

    t_ns: int
    """Twin time of the newest fused sample, ns."""
    x: np.ndarray
    """``[ndof, 3]`` per joint: position rad|m, velocity rad/s|m/s, acceleration rad/s²|m/s²."""
    P: np.ndarray
    """``[ndof, 3, 3]`` per-joint covariance of ``x``."""
    arrival_ns: int
    """Twin-clock arrival of the newest sample fused, ns."""
    fused_ns: int
    """Twin clock when this state was committed, ns (``fused_ns - arrival_ns``: the sample's added latency)."""

    @property
    def q(self) -> np.ndarray:
        """``[ndof]`` rad|m."""
        return self.x[:, 0]

    @property
    def qd(self) -> np.ndarray:
        """``[ndof]`` rad/s|m/s."""
        return self.x[:, 1]


class _MeasuredIngest(TelemetryIngest):
    """A `TelemetryIngest` that remembers the arrival times of the samples the twin takes, until the fleet records
    their receive -> state latency (twin clock, ns; `FleetRobot.record_latency`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.taken_arrivals: list[int] = []

    def poll_states(self):  # noqa: D102 - see TelemetryIngest.poll_states
        batch = super().poll_states()
        if batch:
            self.taken_arrivals.extend([r.arrival_ns for r in batch])
        return batch


class _FleetTwin(LiveTwin):
    """A `LiveTwin` whose tick can be split for the fleet's batched estimation: `drain` takes the tick's events and
    samples (the estimator defers its common-path samples), the fleet fuses them across robots, then `tick` does
    the rest (snapshot, services, commands) without draining again."""

    _drained = False

    def drain(self) -> None:
        """The first part of a tick: events and samples (listeners, thinning, fusing or deferring). Called again
        before the tick (fusion on arrival), each call takes what arrived since the last."""
        self._drained = False
        estimator = self.estimator
        defer = isinstance(estimator, BatchedEstimator)
        if defer:
            estimator.deferring = True
        try:  # LiveTwin's own steps: this twin's overrides below only skip what this call already took
            LiveTwin._drain_events(self)
            LiveTwin._drain_states(self)
        finally:
            if defer:
                estimator.deferring = False
        self._drained = True

    def _drain_events(self) -> None:
        if not self._drained:
            super()._drain_events()

    def _drain_states(self) -> None:
        if self._drained:
            self._drained = False  # this tick's samples were taken by `drain`
            return
        super()._drain_states()


_RESTARTED = object()
"""In a robot's health inbox: the robot restarted here, between the samples before and after (`_RestartRelay`)."""


class _RestartRelay:
    """A twin service (`LiveTwin.services`) that only passes the robot's restarts on to its health service, as a
    marker in the health inbox: the health service belongs to the thread that judges health, and a restart must
    reach it between the old boot's samples and the new one's (`FleetRobot.feed_health`)."""

    def __init__(self, inbox: deque[Any]) -> None:
        self._inbox = inbox

    def poll(self) -> None:
        """Nothing per tick."""

    def on_robot_restarted(self) -> None:
        self._inbox.append(_RESTARTED)


class FleetRobot:
    """The parts that mirror one robot inside a fleet process.

    Args:
        robot_id: the robot.
        model: its `RobotModel`; ``model_note`` says where it came from (shown in the views).
        config: the fleet's `TwinConfig` (telemetry, clock, estimator, twin and health settings apply per robot).
        fuse_per_tick: most samples fused into the estimate per tick.
        link: the shared `MqttLink` (health events and summaries are published on the robot's topics).
        now_ns: the twin clock, int ns.
        batched: the estimator is a `BatchedEstimator`, so the fleet fuses and predicts this robot together with
            the others (`FleetSession.advance`, `FleetSession.fuse_arrivals`). Either way the twin can split its tick
            (`drain`): the fleet fuses samples as they arrive and ticks at the display rate.
    """

    def __init__(
        self,
        robot_id: str,
        model: Any,
        config: Any,
        *,
        fuse_per_tick: int,
        link: Any = None,
        now_ns: Callable[[], int] = time.monotonic_ns,
        model_note: str = "",
        batched: bool = False,
    ) -> None:
        self.robot_id = robot_id
        self.model = model
        self.model_note = model_note
        telemetry = dataclasses.replace(config.telemetry, robot_id=robot_id, record_path="")
        self.ingest = _MeasuredIngest(settings=telemetry, clock_settings=config.clock, model=model, now_ns=now_ns)
        # No burst allowance per robot: a fleet tick's cost is bounded by fuse_per_tick for every robot at once.
        twin_settings = dataclasses.replace(
            config.twin, watchdog_s=0.0, max_samples_per_tick=fuse_per_tick, max_burst_samples=0, serve_whatif=False
        )
        # The shared link is passed for commands only: the fleet starts and stops it, never this twin.
        self.batched = bool(batched)
        estimator = BatchedEstimator(model, config.estimator) if batched else None
        self.twin = _FleetTwin(
            model, self.ingest, link=link, estimator=estimator, estimator_settings=config.estimator,
            settings=twin_settings, now_ns=now_ns,
        )  # fmt: skip
        self.health: HealthService | None = None
        self._health_inbox: deque[Any] = deque()
        if config.health.enabled:
            monitor = HealthMonitor(model, config.health, robot_id=robot_id)
            self.health = HealthService(
                monitor, link=link, topics=self.ingest.topics, now_ns=now_ns, realtime=self.twin.realtime
            )
            # Samples may be drained on the fusion thread; the health service takes them on the thread that judges
            # health (`feed_health`: the display tick, or the fleet's health thread), so they wait in a deque
            # (appends and pops are atomic) in between.
            self.twin.sample_listeners.append(self._health_inbox.append)
            # A restart resets the monitor's clock (as `LiveTwin` tells a single robot's health service); without
            # it the new boot's earlier stamps were ignored until they passed the old boot's last one.
            self.twin.services.append(_RestartRelay(self._health_inbox))
        self.error = ""  # the last failure of this robot's parts (they go on; the other robots never see it)
        self.failures = 0
        self.latencies_ns: deque[int] = deque(maxlen=4096)  # receive -> state of recent samples, ns
        self.fused: FusedState | None = None
        """The estimate right after the newest fused sample (see `FusedState`; None before one and after a reset);
        replaced, never changed."""
        self._fused_version = -1
        self.last_event: dict | None = None
        self._last_event_obj: Any = None

    def drain(self) -> bool:
        """Batched robots: take this tick's events and samples (common-path samples wait for the fleet's batched
        fusion); False on a failure (the robot's `tick` then drains on its own)."""
        try:
            self.twin.drain()
        except Exception as exc:  # noqa: BLE001 - one robot's failure must not stop the fleet's tick
            self.failures += 1
            self.error = f"tick failed: {exc!r}"
            return False
        return True

    def tick(self, now_ns: int, *, feed_health: bool = True) -> Any:
        """Advance the estimate to ``now_ns`` (twin clock); returns the `TwinSnapshot` or None on a failure.
        Display thread only. ``feed_health``: also hand the samples drained since the last tick to the health service
        (`feed_health`); False when the fleet's health thread does that."""
        try:
            snapshot = self.twin.tick(now_ns)
        except Exception as exc:  # noqa: BLE001 - one robot's failure must not stop the fleet's tick
            self.failures += 1
            self.error = f"tick failed: {exc!r}"
            snapshot = None
        if feed_health:
            self.feed_health()
        if snapshot is not None:
            self.publish_fused(now_ns)
        return snapshot

    def feed_health(self) -> None:
        """Hand the samples drained since the last call to the health service (or drop them without one). Call it
        from the thread that judges this robot's health, and from that thread only."""
        inbox, health = self._health_inbox, self.health
        if not inbox:
            return
        pop = inbox.popleft
        if health is None:
            while inbox:
                pop()
            return
        on_sample = health.on_sample
        try:
            while inbox:
                item = pop()
                if item is _RESTARTED:
                    health.on_robot_restarted()
                else:
                    on_sample(item)
        except Exception as exc:  # noqa: BLE001 - as in tick: this robot's health stops, the fleet goes on
            self.failures += 1
            self.error = f"health failed: {exc!r}"

    def publish_fused(self, now_ns: int) -> None:
        """After fusing: make the estimate readable as ``fused`` if it moved, and record the receive -> state
        latency of the samples taken since the last call (done = the wall clock in a real-time twin, else
        ``now_ns``; twin clock, ns)."""
        estimator = self.twin.estimator
        version = estimator.stats.fused  # counts every fused sample, late ones too (which keep the filter time)
        realtime = self.twin.realtime
        if version != self._fused_version and estimator.filter_time_ns is not None:
            self._fused_version = version
            committed = getattr(estimator, "committed", None)  # the batched step's copies, if still current
            if committed is not None and committed[0] == version:
                x, P = committed[1], committed[2]
            else:
                kf = estimator.filter
                x, P = kf.x.copy(), kf.P.copy()
                x.flags.writeable = P.flags.writeable = False
            done = time.monotonic_ns() if realtime else now_ns
            self.fused = FusedState(estimator.filter_time_ns, x, P, int(estimator._last_arrival), done)
        elif self.fused is not None and estimator.filter_time_ns is None:
            self.fused = None  # the estimator was reset (robot restart): nothing fused since
        ingest = self.ingest
        taken = ingest.taken_arrivals
        if taken:
            done = time.monotonic_ns() if realtime else now_ns
            ingest.taken_arrivals = []
            if len(taken) == 1:  # the usual case at fusion on arrival: one sample per robot and step
                self.latencies_ns.append(done - taken[0])
            else:
                self.latencies_ns.extend([done - a for a in taken])

    def judge_health(self) -> list[dict]:
        """Run the health monitor over the samples buffered since the last call; returns new events (dicts)."""
        if self.health is None:
            return []
        try:
            self.health.poll()
        except Exception as exc:  # noqa: BLE001 - as above
            self.failures += 1
            self.error = f"health failed: {exc!r}"
            return []
        return self.new_health_events()

    def new_health_events(self) -> list[dict]:
        """The health service's events since the last call (dicts, oldest first); the newest is kept in
        ``last_event``. (`judge_health` and the fleet's batched judgement, `judge_fleet_health`, end with it.)"""
        if self.health is None:
            return []
        events = list(self.health.events)
        new = []
        if events and events[-1] is not self._last_event_obj:
            for e in reversed(events):
                if e is self._last_event_obj:
                    break
                new.append(e)
            new.reverse()
            self._last_event_obj = events[-1]
            self.last_event = events[-1].to_dict()
        return [e.to_dict() for e in new]

    def wear(self) -> float:
        """Largest identified friction / nominal over the monitored joints (NaN before it is identifiable)."""
        if self.health is None:
            return float("nan")
        ratios = [f.ratio for f in self.health.monitor.friction() if f.identifiable]
        return float(np.nanmax(ratios)) if ratios else float("nan")

    def p99_latency_ms(self) -> float:
        if not self.latencies_ns:
            return float("nan")
        return float(np.percentile(np.asarray(self.latencies_ns), 99) * 1e-6)
