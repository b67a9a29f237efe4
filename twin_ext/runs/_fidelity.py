# SPDX-License-Identifier: Apache-2.0
"""Twin fidelity against the plant: the emulator's impaired telemetry through the real pipeline, offline.

`evaluate_fidelity` runs the emulator (`EmulatedRobot.simulate`, deterministic, faster than real time),
delivers every payload into a `TelemetryIngest` at its arrival time on a virtual twin clock, ticks a
`LiveTwin` at the display rate, and compares what would be displayed with the plant's ground truth at each
display instant. Beside the twin it scores two naive bridges computed from the same deliveries:

- **last-sample-hold**: show the joint state of the message that arrived last (what a raw joint-state
  bridge does; a late, reordered message makes it jump back);
- **newest-message**: show the message with the newest source stamp received so far (a reorder-aware
  bridge, still without clock sync or prediction).

Nothing here is mocked: decoding, validation, ordering, clock sync, estimation and snapshots are the
production code paths; only time is virtual, which makes the result exactly reproducible for a seed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..estimation import EstimatorSettings
from ..robot import RobotModel

__all__ = ["FidelityResult", "OfflineFeed", "VirtualClock", "evaluate_fidelity", "error_stats", "fusable_samples"]


class VirtualClock:
    """A settable twin clock (int ns) for offline runs: ``clock()`` returns the current time."""

    def __init__(self, start_ns: int = 0) -> None:
        self.t_ns = int(start_ns)

    def __call__(self) -> int:
        return self.t_ns

    def set(self, t_ns: int) -> None:
        self.t_ns = max(self.t_ns, int(t_ns))


class OfflineFeed:
    """Delivers a simulation's payloads into an ingest in arrival order, on a `VirtualClock`.

    ``advance(t_ns)`` pushes every delivery that arrived by ``t_ns`` (the clock set to each arrival, then to
    ``t_ns``); ``on_delivery(d)``, if given, sees each one after the ingest did.
    """

    def __init__(self, deliveries, ingest: Any, clock: VirtualClock, *, on_delivery=None) -> None:
        self.deliveries = deliveries
        self.ingest = ingest
        self.clock = clock
        self.on_delivery = on_delivery
        self._next = 0

    def advance(self, t_ns: int) -> None:
        deliveries = self.deliveries
        while self._next < len(deliveries) and deliveries[self._next].arrival_ns <= t_ns:
            d = deliveries[self._next]
            self.clock.set(d.arrival_ns)
            self.ingest.on_payload(d.topic, d.payload, d.arrival_ns)
            if self.on_delivery is not None:
                self.on_delivery(d)
            self._next += 1
        self.clock.set(t_ns)


def error_stats(err: np.ndarray) -> dict[str, float]:
    """RMS, p99 and max of ``|err|`` over finite entries (rad|m)."""
    a = np.abs(err[np.isfinite(err)])
    if a.size == 0:
        return {"rms": float("nan"), "p99": float("nan"), "max": float("nan")}
    return {"rms": float(np.sqrt(np.mean(a * a))), "p99": float(np.percentile(a, 99)), "max": float(a.max())}


@dataclass
class FidelityResult:
    """Errors at display time against the plant, after the warm-up (rad|m; arm and fingers together)."""

    twin: dict[str, float]
    last_sample_hold: dict[str, float]
    newest_message: dict[str, float]
    twin_when_ok: dict[str, float]
    """The twin's error over the ticks where it reported health ``ok`` (what it claims to know)."""
    hold_when_ok: dict[str, float]
    """Last-sample-hold over the same ticks."""
    display_ticks: int
    duration_s: float
    profile: str
    seed: int
    telemetry: dict[str, Any] = field(default_factory=dict)
    series: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    """``t_s [T]``, ``truth/twin/hold/newest/std [T, ndof]``, ``health [T]`` for plots."""
    worst_window_ratio: float = float("nan")
    """The largest twin RMS / last-sample-hold RMS over the 1 s windows after the warm-up (goal <= 1)."""
    worst_window_s: float = float("nan")
    """Start of that window, s from the start of the run."""
    fused_fraction: float = float("nan")
    """Samples the estimator fused / distinct samples delivered within the lag window (duplicates counted once;
    see `fusable_samples`)."""
    delivered: int = 0
    """Distinct joint-state samples delivered to the twin by the last display tick (duplicates counted once)."""
    beyond_lag: int = 0
    """Of those, samples that arrived more than ``estimator.max_lag_ms`` (in true sample time) behind the newest
    sample delivered before them: older than the lag window, dropped by design (e.g. a stalled link's backlog
    released in random order)."""
    fused_late: int = 0
    """Samples fused at their own time after a newer one had arrived (out-of-sequence fusion)."""
    too_late: int = 0
    """Samples the estimator dropped as older than ``estimator.max_lag_ms``."""
    offset_error_ms: float = float("nan")
    """Sample-time mapping error at the newest sample, minus the smallest latency the channel produced since
    the last restart (which one-way traffic cannot see), ms."""
    drift_error_ppm: float = float("nan")
    """Estimated minus true robot clock drift, ppm."""

    @property
    def ratio_to_hold(self) -> float:
        """Twin RMS / last-sample-hold RMS (goal <= 1/3)."""
        return self.twin["rms"] / self.last_sample_hold["rms"]


def evaluate_fidelity(
    model: RobotModel,
    profile: Any,
    *,
    duration_s: float = 20.0,
    seed: int = 0,
    display_rate_hz: float = 60.0,
    warmup_s: float = 2.0,
    estimator_settings: EstimatorSettings | None = None,
    simulation: Any = None,
) -> FidelityResult:
    """Score the twin against the plant under an impairment ``profile`` (an `ImpairmentProfile`).

    Args:
        model: the robot model the twin uses (joint names must match the emulator's).
        duration_s: simulated seconds.
        seed: emulator seed (noise, loss, latency draws).
        display_rate_hz: display ticks per second.
        warmup_s: the first seconds (clock sync and filter converging) are not scored.
        simulation: a precomputed `Simulation` (then ``profile``/``duration_s``/``seed`` describe it).
    """
    from ..emulator import EmulatedRobot
    from ..live import LiveTwin, TwinSettings
    from ..telemetry import TelemetryIngest, TelemetrySettings, decode

    sim = simulation or EmulatedRobot(profile=profile).simulate(duration_s, seed=seed)
    names = sim.truth.joint_names
    cols = [names.index(n) for n in model.dof_names]
    clock = VirtualClock(sim.start_ns)
    robot_id = sim.settings.robot_id
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id=robot_id), model=model, now_ns=clock)
    twin = LiveTwin(
        model,
        ingest,
        settings=TwinSettings(display_rate_hz=display_rate_hz),
        estimator_settings=estimator_settings,
        now_ns=clock,
    )

    period = int(round(1e9 / display_rate_hz))
    ticks = np.arange(sim.start_ns + period, sim.end_ns, period, dtype=np.int64)
    n = model.ndof
    twin_q = np.full((len(ticks), n), np.nan)
    std = np.full((len(ticks), n), np.nan)
    hold = np.full((len(ticks), n), np.nan)
    newest = np.full((len(ticks), n), np.nan)
    health = np.zeros(len(ticks), dtype=np.int8)
    order = {name: i for i, name in enumerate(model.dof_names)}
    code = {"ok": 0, "stale": 1, "lost": 2}
    naive = {"hold": np.full(n, np.nan), "newest": np.full(n, np.nan), "newest_stamp": None}
    stamps: list[int] = []  # source stamps of the joint-state deliveries, in arrival order

    def baselines(d) -> None:
        if d.kind != "joint_states":
            return
        msg = decode(d.payload)
        q = np.full(n, np.nan)
        for j, name in enumerate(msg.names):
            if name in order:
                q[order[name]] = msg.position[j]
        naive["hold"] = q
        stamps.append(msg.stamp_ns)
        if naive["newest_stamp"] is None or msg.stamp_ns > naive["newest_stamp"]:
            naive["newest_stamp"], naive["newest"] = msg.stamp_ns, q

    feed = OfflineFeed(sim.deliveries, ingest, clock, on_delivery=baselines)
    for i, t in enumerate(ticks):
        feed.advance(int(t))
        snap = twin.tick(int(t))
        twin_q[i], std[i] = snap.q, snap.std_q
        hold[i], newest[i] = naive["hold"], naive["newest"]
        health[i] = code[snap.health.value]
    truth_q, _ = sim.truth.interpolate(ticks)
    truth_q = truth_q[:, cols]
    scored = ticks >= sim.start_ns + int(warmup_s * 1e9)
    ok = scored & (health == 0)
    stats = ingest.stats
    status = twin.status()
    worst, worst_at = _worst_window(ticks, sim.start_ns, scored, twin_q - truth_q, hold - truth_q)
    est = twin.estimator.stats
    # Distinct samples delivered by the last display tick (later ones could not have been fused yet), and of those
    # the ones within the lag window (the goal's denominator).
    delivered, within = fusable_samples(sim.samples, stamps, twin.estimator.settings.max_lag_ms)
    offset_error, drift_error = _clock_errors(sim, ingest)
    return FidelityResult(
        twin=error_stats(twin_q[scored] - truth_q[scored]),
        last_sample_hold=error_stats(hold[scored] - truth_q[scored]),
        newest_message=error_stats(newest[scored] - truth_q[scored]),
        twin_when_ok=error_stats(twin_q[ok] - truth_q[ok]),
        hold_when_ok=error_stats(hold[ok] - truth_q[ok]),
        display_ticks=int(scored.sum()),
        duration_s=(sim.end_ns - sim.start_ns) * 1e-9,
        profile=getattr(profile, "description", "") or str(profile),
        seed=sim.seed,
        telemetry={
            "accepted": stats.accepted,
            "rejected": dict(stats.rejected_by_reason),
            "clock_offset_ms": status.clock_offset_ms,
            "clock_drift_ppm": status.clock_drift_ppm,
            "latency_ms": status.latency_ms,
            "estimator_late": status.estimator_late,
            "estimator_gated": status.estimator_gated,
            "errors": list(status.errors),
        },
        series={
            "t_s": (ticks - sim.start_ns) * 1e-9,
            "truth": truth_q,
            "twin": twin_q,
            "hold": hold,
            "newest": newest,
            "std": std,
            "health": health,
        },
        worst_window_ratio=worst,
        worst_window_s=worst_at,
        # Clipped at 1: a sample at the window's edge may be fused although the truth puts it just beyond.
        fused_fraction=min(1.0, est.fused / within) if within else float("nan"),
        delivered=delivered,
        beyond_lag=delivered - within,
        fused_late=est.fused_late,
        too_late=est.late,
        offset_error_ms=offset_error,
        drift_error_ppm=drift_error,
    )


def fusable_samples(samples: Any, stamps: Sequence[int], max_lag_ms: float) -> tuple[int, int]:
    """(distinct samples delivered, of them within the lag window) for joint-state deliveries with source stamps
    ``stamps`` (ns, in arrival order), against the emulator's `SampleLog` ``samples`` (ground truth).

    Counted from what was delivered, not from the log's delivery counts (a sample in flight when the robot's
    telemetry restarts is logged as delivered but never arrives). A sample is within the lag window when its true
    sample time is at most ``max_lag_ms`` older than the newest sample of the same boot delivered before it; older
    ones are dropped by design (``too_late``) and are not in the goal's denominator."""
    row_of = {int(stamp): k for k, stamp in enumerate(samples.stamp_ns)}
    lag_ns = int(round(max_lag_ms * 1e6))
    seen: set[int] = set()
    newest: dict[int, int] = {}  # boot -> newest true sample time delivered so far, ns
    delivered = within = 0
    for stamp in stamps:
        row = row_of.get(int(stamp))
        if row is None or row in seen:
            continue  # not one of the robot's samples, or a duplicate
        seen.add(row)
        delivered += 1
        boot, host = int(samples.boot[row]), int(samples.host_ns[row])
        front = newest.get(boot)
        if front is None or host >= front - lag_ns:
            within += 1
        newest[boot] = host if front is None else max(front, host)
    return delivered, within


def _worst_window(ticks, start_ns, scored, twin_err, hold_err, window_s: float = 1.0) -> tuple[float, float]:
    """Largest twin RMS / hold RMS over consecutive ``window_s`` windows of scored ticks (``[T, ndof]`` errors)."""
    t = (ticks - start_ns) * 1e-9
    window = np.floor(t / window_s).astype(np.int64)
    worst, worst_at = float("nan"), float("nan")
    for w in np.unique(window[scored]):
        m = scored & (window == w)
        if m.sum() < 10:
            continue
        hold_rms = error_stats(hold_err[m])["rms"]
        twin_rms = error_stats(twin_err[m])["rms"]
        if not (np.isfinite(hold_rms) and hold_rms > 0 and np.isfinite(twin_rms)):
            continue
        ratio = twin_rms / hold_rms
        if not ratio <= worst:  # also replaces the initial NaN
            worst, worst_at = ratio, float(w * window_s)
    return worst, worst_at


def _clock_errors(sim, ingest) -> tuple[float, float]:
    """(offset error ms, drift error ppm) of the ingest's clock sync at the end of the run, against the emulator's
    truth: the newest accepted sample's true sample time, and the profile's drift."""
    latest = ingest.latest
    clock = ingest.clock
    samples = sim.samples
    if latest is None or clock.samples == 0:
        return float("nan"), float("nan")
    stamp = latest.message.stamp_ns
    rows = np.flatnonzero(samples.stamp_ns == stamp)
    if rows.size == 0:
        return float("nan"), float("nan")
    row = rows[-1]
    boot = samples.boot[row]
    # The smallest latency since the clock estimate last started over (restart or clock jump: the same boot,
    # within the clock window) is the part of the offset no one-way method can see.
    since = max(samples.host_ns[row] - int(30e9), samples.host_ns[samples.boot == boot].min())
    mine = (samples.boot == boot) & (samples.first_arrival_ns >= 0) & (samples.host_ns >= since)
    mine &= samples.host_ns <= samples.host_ns[row]
    min_latency = int((samples.first_arrival_ns[mine] - samples.host_ns[mine]).min())
    mapped = clock.to_twin_ns(stamp)
    offset_error = (mapped - int(samples.host_ns[row]) - min_latency) * 1e-6
    drift_error = clock.drift * 1e6 - sim.profile.drift_ppm
    return float(offset_error), float(drift_error)
