# SPDX-License-Identifier: Apache-2.0
"""Robot-to-twin clock mapping from (source stamp, arrival time) pairs: offset, drift, latency, jumps.

Model. A sample stamped ``s`` (robot clock, ns) arrives at twin time ``a = T(s) + L`` where ``T``
maps robot time to twin time (offset and drift: a straight line over minutes) and ``L >= L_min``
is the one-way latency. The residual ``r = a - s`` therefore lies on or above the line
``T(s) - s + L_min``; its LOWER ENVELOPE is what we fit. Jitter only ever pushes points up, so the
envelope converges to the truth as soon as a few samples travel near the minimum latency — much
faster than averaging, which would be biased by the mean jitter.

Method.
1. Minimum filter: samples are grouped in blocks of ``block_ms`` of robot time; each block keeps
   only its lowest residual (cheap O(1) per sample; a block's envelope point is its minimum).
2. Drift: the slope of the lower envelope, robustly. The minima of coarser blocks (``_SLOPE_BLOCKS``
   blocks each, 200 ms at the default ``block_ms``) are paired, one from the first half of the
   window with one from the second, at least a quarter of the span apart, and the median of the
   pairs' slopes is the drift (a Theil-Sen estimate of the envelope's slope). The supporting line
   of the lower convex hull at the window's centre (the linear-programming estimator of Moon,
   Skelly & Towsley 1999) used before rests on the two hull vertices next to the centre, and
   gamma-like jitter or FIFO bunching moves those by milliseconds: its drift was off by 80-900 ppm
   after 10 s on the shipped profiles, the median of slopes by 15-140 (3-30 after 30 s; see
   docs/telemetry.md, "Clock sync accuracy"). The offset is then the tightest line of that slope
   under every block minimum.
3. Short histories: until ``drift_min_span_s`` of robot time is available the slope is not
   trusted (a 2 s span gives ±200 ppm of noise); the line keeps the previous drift estimate
   (0 at first start) and takes the tightest offset under every sample. Ignoring a 100 ppm drift
   over 5 s costs at most 0.5 ms.
4. Jumps: a stamp that goes back by more than ``jump_threshold_ms``, ``jump_confirm_samples``
   consecutive samples more than the threshold BELOW the envelope (impossible without a clock
   step), or every sample for ``jump_confirm_s`` more than the threshold ABOVE it (a clock step
   back or a new, slower network path) re-initialise the estimate (counted in `jumps`). A single
   sample below the envelope is treated as a bad stamp and not used. Until the estimate is
   ``ready`` only the first rule applies: a warm-up envelope built from a handful of samples
   (often queued behind the connection set-up) is simply lowered by later, faster samples.

What "offset" means. From one-way traffic the minimum latency ``L_min`` cannot be told apart from
the clock offset: the envelope measures ``offset + L_min``. ``min_latency_ms`` (default 0) is the
assumed ``L_min``; `to_twin_ns` subtracts it, so it answers "when, in twin time, was this sampled"
exactly when the assumption is right, and is late by ``L_min - min_latency_ms`` otherwise (on
loopback/LAN that is tens of microseconds; give the measured minimum for a WAN link).

Conventions: twin time is the injectable twin clock (default ``time.monotonic_ns``);
``twin_ns ≈ robot_ns + offset_ns`` near the latest sample; ``drift`` is the robot clock's rate
relative to the twin clock minus one (+50e-6: the robot clock gains 50 µs per second).
"""

from __future__ import annotations

import copy
from collections import deque
from dataclasses import dataclass

import numpy as np

from .. import TwinExtError

__all__ = ["ClockSync", "ClockSyncError", "ClockSnapshot"]


class ClockSyncError(TwinExtError, RuntimeError):
    """The clock mapping was asked for before any sample was seen."""


@dataclass(frozen=True)
class ClockSnapshot:
    """Clock-sync state at one moment (for status displays and logs).

    Attributes: ``offset_ns`` (twin - robot, ns), ``drift_ppm`` (robot rate - 1, ppm),
    ``latency_ns`` (one-way latency estimate, ns), ``jumps`` (re-initialisations), ``ready``,
    ``samples`` (used since the last (re)start), ``span_ns`` (robot time covered by the window).
    """

    offset_ns: int
    drift_ppm: float
    latency_ns: int
    jumps: int
    ready: bool
    samples: int
    span_ns: int


def _lower_hull(xs: list[float], ys: list[float]) -> list[int]:
    """Indices of the lower convex hull of points sorted by x (Andrew's monotone chain)."""
    hull: list[int] = []
    for i in range(len(xs)):
        x, y = xs[i], ys[i]
        while len(hull) >= 2:
            j, k = hull[-2], hull[-1]
            if (xs[k] - xs[j]) * (y - ys[j]) - (ys[k] - ys[j]) * (x - xs[j]) <= 0.0:
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


_SLOPE_BLOCKS = 4
"""Blocks merged into one envelope point of the drift estimate (more samples per minimum: a tighter one)."""


def _envelope_slope(blocks, x0: int, r0: int, coarse_ns: int) -> float | None:
    """Median slope between coarse block minima of the first and the second half of the window, at least a
    quarter of the span apart (ns of residual per ns of robot time), or None with fewer than 2 per half."""
    stamps = np.fromiter((blk[1] for blk in blocks), dtype=np.int64, count=len(blocks))
    resid = np.fromiter((blk[2] for blk in blocks), dtype=np.int64, count=len(blocks))
    group = (stamps - stamps[0]) // coarse_ns
    starts = np.flatnonzero(np.r_[True, group[1:] != group[:-1]])
    lows = np.minimum.reduceat(resid, starts)
    # the stamp of each coarse minimum: argmin within its group
    pick = np.array(
        [s + int(np.argmin(resid[s:e])) for s, e in zip(starts, np.r_[starts[1:], len(resid)], strict=True)]
    )
    x = (stamps[pick] - x0).astype(np.float64)
    y = (lows - r0).astype(np.float64)
    span = x[-1] - x[0]
    half = x[0] + 0.5 * span
    first, second = x < half, x >= half
    if first.sum() < 2 or second.sum() < 2:
        return None
    dx = x[second][None, :] - x[first][:, None]
    dy = y[second][None, :] - y[first][:, None]
    far = dx >= 0.25 * span
    if not far.any():
        return None
    return float(np.median(dy[far] / dx[far]))


class ClockSync:
    """Estimates the robot->twin clock mapping from (stamp, arrival) pairs of accepted samples.

    Args (see docs/SETTINGS.md ``[clock]`` for units and defaults): ``window_s``, ``block_ms``,
    ``min_latency_ms``, ``drift_min_span_s``, ``ready_span_s``, ``ready_samples``,
    ``jump_threshold_ms``, ``jump_confirm_samples``, ``jump_confirm_s``, ``max_drift_ppm``, ``max_future_ms``;
    or ``settings=`` a `twin_ext.telemetry.ClockSettings`.

    Feed it with `update` from ONE thread (the ingest does); `to_twin_ns`, `to_robot_ns` and the
    properties may be read from any thread (the mapping is replaced atomically).
    """

    def __init__(
        self,
        *,
        settings=None,
        window_s: float = 30.0,
        block_ms: float = 50.0,
        min_latency_ms: float = 0.0,
        drift_min_span_s: float = 5.0,
        ready_span_s: float = 1.0,
        ready_samples: int = 20,
        jump_threshold_ms: float = 20.0,
        jump_confirm_samples: int = 3,
        jump_confirm_s: float = 1.0,
        max_drift_ppm: float = 1000.0,
        max_future_ms: float = 1000.0,
    ) -> None:
        if settings is not None:
            window_s, block_ms, min_latency_ms = settings.window_s, settings.block_ms, settings.min_latency_ms
            drift_min_span_s, ready_span_s, ready_samples = (
                settings.drift_min_span_s,
                settings.ready_span_s,
                settings.ready_samples,
            )
            jump_threshold_ms, jump_confirm_samples = settings.jump_threshold_ms, settings.jump_confirm_samples
            jump_confirm_s, max_drift_ppm = settings.jump_confirm_s, settings.max_drift_ppm
            max_future_ms = settings.max_future_ms
        if not (window_s > 0 and block_ms > 0 and block_ms * 1e-3 < window_s):
            raise ValueError(f"clock window_s ({window_s}) and block_ms ({block_ms}) must be > 0 with block < window")
        if min_latency_ms < 0 or jump_threshold_ms <= 0 or jump_confirm_samples < 1 or ready_samples < 1:
            raise ValueError(
                "clock min_latency_ms must be >= 0, jump_threshold_ms > 0, jump_confirm_samples and ready_samples >= 1"
            )
        self._window_ns = int(window_s * 1e9)
        self._block_ns = max(1, int(block_ms * 1e6))
        self._min_latency_ns = int(round(min_latency_ms * 1e6))
        self._drift_span_ns = int(drift_min_span_s * 1e9)
        self._ready_span_ns = int(ready_span_s * 1e9)
        self._ready_samples = int(ready_samples)
        self._jump_ns = int(jump_threshold_ms * 1e6)
        self._jump_samples = int(jump_confirm_samples)
        self._jump_confirm_ns = int(jump_confirm_s * 1e9)
        self._max_slope = float(max_drift_ppm) * 1e-6
        self._future_ns = max(int(max_future_ms * 1e6), self._jump_ns)
        self._refit_ns = min(50_000, self._jump_ns)  # a sample this far below the line triggers a refit
        self._slope_prior = 0.0
        self.jumps = 0
        """Number of re-initialisations caused by clock steps or latency steps."""
        self.last_jump: str = ""
        """What the last jump was (for the ingest's event message)."""
        self.reset(keep_drift=True)

    # ------------------------------------------------------------------------------ feeding

    def reset(self, *, keep_drift: bool = True) -> None:
        """Forget all samples (e.g. the robot rebooted). ``keep_drift`` keeps the drift estimate:
        the robot's oscillator is the same after a reboot, its clock's zero is not."""
        if not keep_drift:
            self._slope_prior = 0.0
        self._blocks: deque[list[int]] = deque()  # [block index, stamp_ns, residual_ns], robot-time order
        self._line: tuple[int, int, float, float] | None = None  # (x_ref, r_ref, c, b)
        self._samples = 0
        self._first_stamp: int | None = None
        self._last_stamp: int | None = None
        self._excess_ns = 0.0
        self._below_run = 0
        self._above_since: int | None = None
        self._above_run = 0

    def update(self, stamp_ns: int, arrival_ns: int) -> None:
        """Add one sample: ``stamp_ns`` robot clock (ns), ``arrival_ns`` twin clock (ns)."""
        stamp_ns = int(stamp_ns)
        arrival_ns = int(arrival_ns)
        last = self._last_stamp
        if last is not None and stamp_ns < last - self._jump_ns:
            self._jump(stamp_ns, arrival_ns, f"robot clock stepped back by {(last - stamp_ns) / 1e6:.1f} ms")
            return
        line = self._line
        residual = arrival_ns - stamp_ns
        below_line = False
        if line is not None and not self.ready:
            # Warm-up: a few samples do not make a trustworthy envelope (the first ones often queue
            # behind a connection set-up); a lower sample simply lowers it, it is not a clock step.
            x_ref, r_ref, c, b = line
            excess = (residual - r_ref) - (c + b * (stamp_ns - x_ref))
            self._excess_ns += 0.01 * (max(excess, 0.0) - self._excess_ns)
            below_line = excess < -self._refit_ns
        elif line is not None:
            x_ref, r_ref, c, b = line
            excess = (residual - r_ref) - (c + b * (stamp_ns - x_ref))
            if excess < -self._jump_ns:
                self._below_run += 1
                if self._below_run >= self._jump_samples:
                    self._jump(
                        stamp_ns,
                        arrival_ns,
                        f"samples arrive {-excess / 1e6:.1f} ms earlier than possible: robot clock stepped forward",
                    )
                return  # a lone impossible sample is a bad stamp: do not let it pull the envelope down
            self._below_run = 0
            if excess > self._jump_ns:
                if self._above_since is None:
                    self._above_since, self._above_run = arrival_ns, 0
                self._above_run += 1
                if arrival_ns - self._above_since >= self._jump_confirm_ns and self._above_run >= self._jump_samples:
                    self._jump(
                        stamp_ns,
                        arrival_ns,
                        f"every sample for {self._jump_confirm_ns / 1e9:.1f} s arrived {excess / 1e6:.1f} ms late: robot clock stepped back or the network path changed",
                    )
                    return
            else:
                self._above_since = None
            # One-way latency above the envelope: exponential average over ~100 samples.
            self._excess_ns += 0.01 * (max(excess, 0.0) - self._excess_ns)
            below_line = excess < -self._refit_ns
        self._add(stamp_ns, residual, below_line)

    def _add(self, stamp_ns: int, residual: int, force_fit: bool) -> None:
        blocks = self._blocks
        if self._last_stamp is not None and stamp_ns < self._last_stamp:
            return  # a stamp slightly back in time (below the jump threshold): keep the envelope monotonic in x
        index = stamp_ns // self._block_ns
        new_block = not blocks or blocks[-1][0] != index
        if new_block:
            blocks.append([index, stamp_ns, residual])
        elif residual < blocks[-1][2]:
            blocks[-1][1] = stamp_ns
            blocks[-1][2] = residual
        if self._first_stamp is None:
            self._first_stamp = stamp_ns
        if self._last_stamp is None or stamp_ns > self._last_stamp:
            self._last_stamp = stamp_ns
        self._samples += 1
        horizon = self._last_stamp - self._window_ns
        while len(blocks) > 2 and blocks[0][1] < horizon:
            blocks.popleft()
        if new_block or force_fit or self._line is None or self._samples <= self._ready_samples:
            self._fit()

    def _fit(self) -> None:
        blocks = self._blocks
        x0, r0 = blocks[0][1], blocks[0][2]
        xs = [float(blk[1] - x0) for blk in blocks]
        ys = [float(blk[2] - r0) for blk in blocks]
        span = xs[-1] - xs[0]
        slope = None
        if span >= self._drift_span_ns and len(xs) >= 3:
            b = _envelope_slope(blocks, x0, r0, self._block_ns * _SLOPE_BLOCKS)
            if b is not None and abs(b) <= self._max_slope:
                slope = b
                self._slope_prior = b
        if slope is None:
            slope = self._slope_prior
        c = min(y - slope * x for x, y in zip(xs, ys, strict=False))
        self._line = (x0, r0, c, slope)

    def _jump(self, stamp_ns: int, arrival_ns: int, why: str) -> None:
        self.jumps += 1
        self.last_jump = why
        self.reset(keep_drift=True)
        self._add(stamp_ns, arrival_ns - stamp_ns, True)

    # ------------------------------------------------------------------------------ plausibility (the ingest's gate)

    @property
    def jump_threshold_ns(self) -> int:
        """``jump_threshold_ms`` in ns: how far off the envelope a stamp is a candidate clock step."""
        return self._jump_ns

    @property
    def jump_confirm_samples(self) -> int:
        """Consecutive samples that confirm a clock step (``jump_confirm_samples``)."""
        return self._jump_samples

    def implausible(self, stamp_ns: int, arrival_ns: int) -> str | None:
        """Why ``stamp_ns`` (arrived at ``arrival_ns``) would be a clock step, or None if it fits the estimate.

        A stamp more than ``jump_threshold_ms`` before the newest one (the robot clock stepped back, or a
        stamp of 0), or one mapping to more than ``max_future_ms`` AFTER its arrival (sampled in the future:
        the clock stepped forward, or a corrupt stamp). Before the estimate is `ready` nothing is implausible. The ingest refuses such
        samples until ``jump_confirm_samples`` consecutive ones agree, then calls `restart`: one bad stamp
        must not re-initialise the estimate.
        """
        line = self._line
        last = self._last_stamp
        if line is None or last is None or not self.ready:
            return None
        stamp_ns = int(stamp_ns)
        if stamp_ns < last - self._jump_ns:
            return (
                f"{(last - stamp_ns) / 1e6:.6g} ms before the previous sample's stamp (a step back of the robot clock?)"
            )
        x_ref, r_ref, c, b = line
        excess = (int(arrival_ns) - stamp_ns - r_ref) - (c + b * (stamp_ns - x_ref))
        if excess < -self._future_ns:
            return f"{-excess / 1e6:.6g} ms after it arrived, by the clock estimate (sampled in the future?)"
        return None

    def restart(self, stamp_ns: int, arrival_ns: int, why: str) -> None:
        """Re-initialise the estimate at this sample (a clock step confirmed elsewhere); counted in `jumps`."""
        self._jump(int(stamp_ns), int(arrival_ns), why)

    def copy(self) -> ClockSync:
        """An independent copy (e.g. to keep the estimate of a boot that may not have ended)."""
        return copy.deepcopy(self)

    # ------------------------------------------------------------------------------ mapping

    def _require_line(self) -> tuple[int, int, float, float]:
        line = self._line
        if line is None:
            raise ClockSyncError(
                "no telemetry sample yet: feed ClockSync.update (the ingest does) before mapping times; check .ready"
            )
        return line

    def to_twin_ns(self, stamp_ns):
        """Twin time (ns) at which a sample stamped ``stamp_ns`` (robot clock, ns) was taken.

        Accepts an int or an int64 array ``[...]`` (returns the same shape). Raises
        `ClockSyncError` before the first sample.
        """
        x_ref, r_ref, c, b = self._require_line()
        if isinstance(stamp_ns, np.ndarray):
            stamps = stamp_ns.astype(np.int64, copy=False)
            frac = np.rint(c + b * (stamps - x_ref).astype(np.float64)).astype(np.int64)
            return stamps + (r_ref - self._min_latency_ns) + frac
        stamp_ns = int(stamp_ns)
        return stamp_ns + r_ref - self._min_latency_ns + round(c + b * (stamp_ns - x_ref))

    def to_robot_ns(self, twin_ns):
        """Robot-clock time (ns) that corresponds to twin time ``twin_ns`` (inverse of `to_twin_ns`)."""
        x_ref, r_ref, c, b = self._require_line()
        if isinstance(twin_ns, np.ndarray):
            base = (twin_ns.astype(np.int64, copy=False) - (x_ref + r_ref - self._min_latency_ns)).astype(np.float64)
            return x_ref + np.rint((base - c) / (1.0 + b)).astype(np.int64)
        twin_ns = int(twin_ns)
        return x_ref + round((twin_ns - (x_ref + r_ref - self._min_latency_ns) - c) / (1.0 + b))

    # ------------------------------------------------------------------------------ state

    @property
    def ready(self) -> bool:
        """True once ``ready_samples`` samples spanning ``ready_span_s`` of robot time were used."""
        return self._samples >= self._ready_samples and self.span_ns >= self._ready_span_ns

    @property
    def samples(self) -> int:
        """Samples used since the last (re)initialisation."""
        return self._samples

    @property
    def span_ns(self) -> int:
        """Robot time covered since the last (re)initialisation, ns."""
        if self._first_stamp is None or self._last_stamp is None:
            return 0
        return self._last_stamp - self._first_stamp

    @property
    def offset_ns(self) -> int:
        """Twin minus robot clock at the latest sample, ns (``twin ≈ robot + offset_ns``); 0 before any sample."""
        last = self._last_stamp
        if last is None or self._line is None:
            return 0
        return self.to_twin_ns(last) - last

    @property
    def drift(self) -> float:
        """Robot clock rate relative to the twin clock, minus one (dimensionless; ppm = 1e6 * drift)."""
        line = self._line
        slope = line[3] if line is not None else self._slope_prior
        return 1.0 / (1.0 + slope) - 1.0

    @property
    def latency_ns(self) -> int:
        """One-way latency estimate, ns: ``min_latency_ms`` plus the average time above the envelope."""
        return self._min_latency_ns + int(round(self._excess_ns))

    def snapshot(self) -> ClockSnapshot:
        """All the state a status display needs, read once."""
        return ClockSnapshot(
            offset_ns=self.offset_ns,
            drift_ppm=1e6 * self.drift,
            latency_ns=self.latency_ns,
            jumps=self.jumps,
            ready=self.ready,
            samples=self._samples,
            span_ns=self.span_ns,
        )
