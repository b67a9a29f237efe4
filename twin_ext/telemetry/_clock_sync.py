# SPDX-License-Identifier: Apache-2.0
"""Robot-to-twin clock mapping from (source stamp, arrival time) pairs: offset, drift, latency, jumps.

Model. A sample stamped ``s`` (robot clock, ns) arrives at twin time ``a = T(s) + L`` where ``T``
maps robot time to twin time (offset and drift: a straight line over minutes) and ``L >= L_min``
is the one-way latency. The residual ``r = a - s`` therefore lies on or above the line
``T(s) - s + L_min``; its LOWER ENVELOPE is what we fit. Jitter only ever pushes points up, so the
envelope converges to the truth as soon as a few samples travel near the minimum latency — much
faster than averaging, which would be biased by the mean jitter.

Method.
1. Blocks: samples are grouped in blocks of ``block_ms`` of robot time; each block keeps its lowest
   residual and its ``_KEEP`` (16) lowest samples; the others are only counted (O(1) per sample; they lie
   above any low-quantile line, where only their number and stamps enter the fit).
2. Drift: the slope of a LOW-QUANTILE regression line of the residuals over the window (Koenker &
   Bassett's check loss, intercept profiled out, golden-section search on the slope), refitted every
   ``_REFIT_NS`` (0.5 s) of robot time. Any quantile line is parallel to the envelope for a stationary
   delay process (FIFO bunching included); which quantile is chosen per fit from the data (`_QUANTILES`,
   0.2-10 %): the one whose slope has the smallest estimated variance ``tau (1 - tau) / f(q_tau)^2``.
   Gamma delays whose density vanishes like x^(k-1) at their floor (k = (latency / jitter)^2) pick ~10 %, so
   the fit does not rest on the few lowest points, which scatter by milliseconds; that is near the
   information limit, the Cramér-Rao bound ``sd(drift) = theta * sqrt(k - 2) / (sqrt(N) * std(t))`` (57 ppm
   after 10 s for 20 +- 10 ms at 200 Hz, theta = jitter^2 / latency). A SHARP floor (the estimated variance
   falls towards the lowest quantile: `_choose_quantile`) takes the envelope itself: the lower-hull segment of
   the block minima spanning the window's mean stamp (the linear-programming line of Moon, Skelly & Towsley
   1999), which converges like 1 / (N T): median drift error after 10 s 2 ppm at 100 Hz, 0.2 ppm at 1 kHz
   with exponential delays; 1.8-11 ppm on the independent-delay profiles given a floor of latency - jitter.
   Each fit is weighed against a prior (``drift_prior_ppm``; after a restart the last estimate) by inverse
   variance; its standard error grows when the floor wanders within the window (`_wander_slope_sd`). The offset is the tightest line of that slope
   under every sample, updated with each sample.
3. Short histories: until ``drift_min_span_s`` of robot time is available the slope is not
   trusted (a 2 s span gives ±200 ppm of noise); the line keeps the previous drift estimate
   (0 at first start) and takes the tightest offset under every sample. Ignoring a 100 ppm drift
   over 5 s costs at most 0.5 ms.
4. Jumps: a stamp that goes back by more than ``jump_threshold_ms``, ``jump_confirm_samples``
   consecutive samples more than the threshold BELOW the envelope (impossible without a clock
   step), or every sample for ``jump_confirm_s`` more than the threshold ABOVE it (a clock step
   back or a new, slower network path; a silence of more than a quarter of ``jump_confirm_s`` starts
   that run afresh) re-initialise the estimate (counted in `jumps`). A single
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
import math
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
    ``samples`` (used since the last (re)start), ``span_ns`` (robot time covered by the window),
    ``drift_sd_ppm`` (the drift's estimated standard error, ppm; inf before the first fit).
    """

    offset_ns: int
    drift_ppm: float
    latency_ns: int
    jumps: int
    ready: bool
    samples: int
    span_ns: int
    drift_sd_ppm: float = math.inf


_QUANTILES = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1)
"""Quantiles the drift's regression line may use; per fit the one with the smallest estimated slope variance."""

_KEEP = 16
"""Lowest residuals kept per block for the quantile fit; the others are only counted (they lie above the
fitted line, where only their number and mean stamp enter the fit)."""

_REFIT_NS = 500_000_000
"""Robot time between two slope fits, ns (the drift changes over minutes; the offset follows every sample)."""

_FIT_TOL = 2e-8
"""Slope resolution of the fit (dimensionless: 0.02 ppm)."""

_GOLDEN = 0.5 * (5.0**0.5 - 1.0)

_SHARP_EXPONENT = 0.5
"""The quantile slope's estimated variance must fall at least like ``tau^0.5`` towards the bottom for the delays
to count as having a sharp floor (`_choose_quantile`); exponential queueing above a floor gives ``tau^1``, the
shipped floorless gamma profiles ``tau^-0.2`` to ``tau^-0.7``."""


def _choose_quantile(e: np.ndarray, n_total: int) -> tuple[float, bool, float]:
    """The quantile of `_QUANTILES` whose regression slope has the smallest asymptotic variance for residuals
    ``e`` (``[n]`` float, ns, detrended by the previous slope; the lowest ``n`` of ``n_total``), whether the
    delays have a sharp floor, and the chosen quantile's ``tau (1 - tau) / f(q_tau)^2`` (ns^2; inf if unknown).

    A quantile-regression slope's variance is proportional to ``tau (1 - tau) / f(q_tau)^2`` (``f``: the
    density of the residuals at their ``tau`` quantile); ``1 / f`` is estimated by the spread of the
    ``tau / 2`` and ``3 tau / 2`` quantiles, each resting on at least 4 samples. A sharp floor (a fixed minimum
    latency: ``f`` is large at the bottom) picks the lowest quantile; a delay density that vanishes at the
    floor (gamma-like) picks a higher one.

    Sharp floor: over the lowest three usable quantiles that variance falls at least like ``tau^0.5`` towards
    the bottom (``f`` roughly constant there gives ``tau^1``; a gamma density of shape ``k`` gives
    ``tau^(2/k - 1)``, rising for ``k > 2``). Then the lower envelope itself (``tau -> 0``) is the best line.
    """
    n = len(e)
    pairs = [
        (t, int(0.5 * t * n_total), int(1.5 * t * n_total))
        for t in _QUANTILES
        if 0.5 * t * n_total >= 4 and 1.5 * t * n_total < n
    ]
    if not pairs:
        return _QUANTILES[-1], False, math.inf
    part = np.partition(e, sorted({i for _, lo, hi in pairs for i in (lo, hi)}))
    costs = []
    for t, lo, hi in pairs:
        spread = (part[hi] - part[lo]) / t
        costs.append(t * (1.0 - t) * spread * spread)
    best = int(np.argmin(costs))
    choice = pairs[best][0]
    low = costs[:3]
    sharp = (
        len(low) >= 2
        and low[0] > 0.0
        and math.log(low[-1] / low[0]) > _SHARP_EXPONENT * math.log(pairs[len(low) - 1][0] / pairs[0][0])
    )
    return choice, sharp, float(costs[best])


def _envelope_slope(x: np.ndarray, y: np.ndarray, x_mean: float) -> float | None:
    """Slope of the lower envelope line of Moon, Skelly & Towsley (1999): the line under every point ``(x, y)``
    (``[n]`` float ns, ``x`` ascending: the block minima) that is highest at ``x_mean`` (ns, the mean stamp of
    all samples) -- the segment of the lower convex hull that spans ``x_mean``. None if no segment does."""
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            i1, i2 = hull[-2], hull[-1]
            if (y[i2] - y[i1]) * (x[i] - x[i1]) >= (y[i] - y[i1]) * (x[i2] - x[i1]):
                hull.pop()  # i2 lies on or above the chord i1 -> i: not on the lower hull
            else:
                break
        hull.append(i)
    for i1, i2 in zip(hull, hull[1:], strict=False):
        if x[i1] <= x_mean <= x[i2] and x[i2] > x[i1]:
            return float((y[i2] - y[i1]) / (x[i2] - x[i1]))
    return None


def _wander_slope_sd(blocks, e: np.ndarray, tau: float, cost: float, span: float) -> float:
    """Slope uncertainty (dimensionless) from a latency floor that wanders within the window (a loaded host, a
    path that changes): the ``tau`` quantile of the detrended residuals ``e`` (``[n]`` float ns, the kept samples
    in block order) in the window's first, middle and last thirds (by sample count) should lie on a line; a
    middle that bows by more than its noise (each quantile's variance ``cost / (N / 3)``, ``cost`` in ns^2 from
    `_choose_quantile`) means the fitted slope cannot be trusted by more than that bow over a third of ``span``
    (ns). 0 when the floor is steady (the usual case) or the window is too short to tell."""
    if not (math.isfinite(cost) and span > 0.0) or len(blocks) < 6:
        return 0.0
    totals = np.fromiter((len(blk[3]) + blk[4] for blk in blocks), dtype=np.int64, count=len(blocks))
    kept = np.fromiter((len(blk[3]) for blk in blocks), dtype=np.int64, count=len(blocks))
    edges = np.searchsorted(np.cumsum(totals), [totals.sum() / 3.0, 2.0 * totals.sum() / 3.0])
    starts = np.concatenate(([0], np.cumsum(kept)))
    bounds = [0, int(edges[0]) + 1, int(edges[1]) + 1, len(blocks)]
    quantiles = []
    for g in range(3):
        a, b = bounds[g], bounds[g + 1]
        part = e[starts[a] : starts[b]]
        k = int(tau * totals[a:b].sum())
        if b <= a or k >= len(part):
            return 0.0
        quantiles.append(float(np.partition(part, k)[k]))
    bow = quantiles[1] - 0.5 * (quantiles[0] + quantiles[2])
    noise = 1.5 * cost / (totals.sum() / 3.0)  # variance of the bow: 1 + 1/4 + 1/4 times one quantile's
    excess = bow * bow - 4.0 * noise  # beyond two standard deviations of noise
    return math.sqrt(excess) / (span / 3.0) if excess > 0.0 else 0.0


def _quantile_slope(
    x: np.ndarray, y: np.ndarray, n_above: int, sx_above: float, lo: float, hi: float, tau: float
) -> float:
    """Slope ``b`` of the ``tau`` quantile regression line of ``y`` on ``x`` (both ``[n]`` float, ns from a reference).

    ``n_above`` further points known to lie above the line enter only through their count and the sum of their
    ``x`` (``sx_above``). The objective (the check loss, with the intercept profiled out: the ``tau``
    quantile of ``y - b x``) is convex in ``b``, so a golden-section search on ``[lo, hi]`` finds its minimum to
    ``_FIT_TOL``; ~25 evaluations of O(n) each.
    """
    k = min(len(x) - 1, int(tau * (len(x) + n_above)))

    def loss(b: float) -> float:
        e = y - b * x
        a = float(np.partition(e, k)[k])
        u = e - a
        return float(tau * u.sum() - np.minimum(u, 0.0).sum()) - tau * (a * n_above + b * sx_above)

    c, d = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
    fc, fd = loss(c), loss(d)
    while hi - lo > _FIT_TOL:
        if fc < fd:
            hi, d, fd = d, c, fc
            c = hi - _GOLDEN * (hi - lo)
            fc = loss(c)
        else:
            lo, c, fc = c, d, fd
            d = lo + _GOLDEN * (hi - lo)
            fd = loss(d)
    return 0.5 * (lo + hi)


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
        drift_prior_ppm: float = 200.0,
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
            drift_prior_ppm = settings.drift_prior_ppm
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
        self._slope_prior = 0.0
        self._slope_sd = math.inf  # standard error of _slope_prior (dimensionless)
        self._prior_sd = float(drift_prior_ppm) * 1e-6 if drift_prior_ppm > 0 else math.inf
        self._prior = (0.0, self._prior_sd)  # (mean, sd) of the slope before this (re)start's data
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
            self._slope_sd = math.inf
        # The oscillator outlives a restart: its last estimate is this start's prior (or the general one).
        self._prior = (self._slope_prior, min(self._slope_sd, self._prior_sd))
        # Blocks in robot-time order: [block index, lowest stamp_ns, lowest residual_ns, kept [(residual_ns,
        # stamp_ns), ...] (the _KEEP lowest), count of the others, sum of their (stamp_ns - x0) as float].
        self._blocks: deque[list] = deque()
        self._line: tuple[int, int, float, float] | None = None  # (x_ref, r_ref, c, b)
        self._x0 = 0  # reference stamp and residual of the fit (the first sample since the (re)start), ns
        self._r0 = 0
        self._c_index: int | None = None  # block index of the sample the line rests on
        self._fit_slope: float | None = None  # the last fitted slope since the (re)start (None: none yet)
        self._fit_at: int | None = None  # stamp_ns of the last slope fit
        self._samples = 0
        self._was_ready = False  # ready stays true until the next reset (samples and span only grow)
        self._first_stamp: int | None = None
        self._last_stamp: int | None = None
        self._excess_ns = 0.0
        self._below_run = 0
        self._above_since: int | None = None
        self._above_last = 0  # arrival_ns of the last sample of the run above the envelope
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
        if line is not None and not self.ready:
            # Warm-up: a few samples do not make a trustworthy envelope (the first ones often queue
            # behind a connection set-up); a lower sample simply lowers it, it is not a clock step.
            x_ref, r_ref, c, b = line
            excess = (residual - r_ref) - (c + b * (stamp_ns - x_ref))
            self._excess_ns += 0.01 * (max(excess, 0.0) - self._excess_ns)
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
                if self._above_since is None or arrival_ns - self._above_last > self._jump_confirm_ns // 4:
                    # A new run; also after a silence (a pause of the robot or a stalled link): a run of high
                    # samples before it and a few after it are not "every sample for jump_confirm_s".
                    self._above_since, self._above_run = arrival_ns, 0
                self._above_run += 1
                self._above_last = arrival_ns
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
        self._add(stamp_ns, residual)

    def _add(self, stamp_ns: int, residual: int) -> None:
        blocks = self._blocks
        last = self._last_stamp
        if last is not None and stamp_ns < last:
            return  # a stamp slightly back in time (below the jump threshold): keep the envelope monotonic in x
        if last is None:
            self._first_stamp = self._x0 = stamp_ns
            self._r0 = residual
            self._c_index = None
        self._last_stamp = stamp_ns
        self._samples += 1
        index = stamp_ns // self._block_ns
        if blocks and blocks[-1][0] == index:
            blk = blocks[-1]
            if residual < blk[2]:
                blk[1], blk[2] = stamp_ns, residual
            kept = blk[3]
            if len(kept) < _KEEP:
                kept.append((residual, stamp_ns))
            else:
                top = max(kept)
                if residual < top[0]:
                    kept[kept.index(top)] = (residual, stamp_ns)
                    top_stamp = top[1]
                else:
                    top_stamp = stamp_ns
                blk[4] += 1
                blk[5] += float(top_stamp - self._x0)
        else:
            blocks.append([index, stamp_ns, residual, [(residual, stamp_ns)], 0, 0.0])
            horizon = stamp_ns - self._window_ns
            expired = False
            while len(blocks) > 2 and blocks[0][1] < horizon:
                expired |= blocks.popleft()[0] == self._c_index
            if self.span_ns >= self._drift_span_ns and (self._fit_at is None or stamp_ns - self._fit_at >= _REFIT_NS):
                self._fit(stamp_ns)
                return
            if expired:
                self._rest(self._line[3] if self._line is not None else self._slope_prior)
                return
        # The offset: the tightest line of the current slope under every sample (follows each sample).
        line = self._line
        slope = line[3] if line is not None else self._slope_prior
        c = float(residual - self._r0) - slope * float(stamp_ns - self._x0)
        if line is None or c < line[2]:
            self._line = (self._x0, self._r0, c, slope)
            self._c_index = index

    def _rest(self, slope: float) -> None:
        """Set the line of ``slope`` (dimensionless) to rest on the lowest block minimum (the tightest under all)."""
        x0, r0 = self._x0, self._r0
        best, where = None, None
        for blk in self._blocks:
            c = float(blk[2] - r0) - slope * float(blk[1] - x0)
            if best is None or c < best:
                best, where = c, blk[0]
        self._c_index = where
        self._line = (x0, r0, best, slope)

    def _fit(self, stamp_ns: int) -> None:
        """Refit the slope (the drift): a low-quantile regression over every kept sample of the window."""
        blocks = self._blocks
        self._fit_at = stamp_ns
        pairs = [pair for blk in blocks for pair in blk[3]]  # (residual, stamp) ns
        n = len(pairs)
        y = (np.fromiter((pair[0] for pair in pairs), dtype=np.int64, count=n) - self._r0).astype(np.float64)
        x = (np.fromiter((pair[1] for pair in pairs), dtype=np.int64, count=n) - self._x0).astype(np.float64)
        n_above = sum(blk[4] for blk in blocks)
        sx_above = sum(blk[5] for blk in blocks)
        limit = self._max_slope
        prev = self._fit_slope
        lo, hi = (-limit, limit) if prev is None else (max(-limit, prev - 2e-4), min(limit, prev + 2e-4))
        tau, sharp, cost = _choose_quantile(y - (self._slope_prior if prev is None else prev) * x, n + n_above)
        # The quantile slope's standard error, sqrt(cost / sum((x - mean x)^2)), with the stamps ~uniform over the
        # window's span. On the shipped profiles it is within 0.5-1.7x of the actual error's rms over 24 seeds;
        # for a sharp floor the envelope line does better than this, so it stays an upper figure there.
        span = float(blocks[-1][1] - blocks[0][1])
        sd = math.sqrt(cost * 12.0 / (n + n_above)) / span if span > 0.0 else math.inf
        b = None
        if sharp:
            # A sharp floor: the envelope line converges faster than any quantile line above it.
            bx = np.fromiter((float(blk[1] - self._x0) for blk in blocks), dtype=np.float64, count=len(blocks))
            by = np.fromiter((float(blk[2] - self._r0) for blk in blocks), dtype=np.float64, count=len(blocks))
            b = _envelope_slope(bx, by, (float(x.sum()) + sx_above) / (n + n_above))
        if b is None:
            b = _quantile_slope(x, y, n_above, sx_above, lo, hi, tau)
            if prev is not None and (b - lo < 2 * _FIT_TOL < lo + limit or hi - b < 2 * _FIT_TOL < limit - hi):
                b = _quantile_slope(x, y, n_above, sx_above, -limit, limit, tau)  # the minimum is outside the bracket
        if abs(b) < limit - 2 * _FIT_TOL:
            self._fit_slope = b  # the data's own slope: the next fit's bracket
            sd = math.hypot(sd, _wander_slope_sd(blocks, y - b * x, tau, cost, span))
            self._slope_prior, self._slope_sd = self._with_prior(b, sd)
        self._rest(self._slope_prior)

    def _with_prior(self, slope: float, sd: float) -> tuple[float, float]:
        """The fitted ``slope`` (dimensionless, standard error ``sd``) combined with the prior of this (re)start
        (`_prior`: mean, sd), by inverse-variance weighting: a short or wandering history moves the drift little,
        a long steady one decides it alone."""
        mean0, sd0 = self._prior
        if not math.isfinite(sd0) or sd0 <= 0.0:
            return slope, sd
        if not math.isfinite(sd):
            return mean0, sd0
        if sd <= 0.0:
            return slope, sd  # exact data (no jitter at all)
        w, w0 = 1.0 / (sd * sd), 1.0 / (sd0 * sd0)
        return (w * slope + w0 * mean0) / (w + w0), 1.0 / math.sqrt(w + w0)

    def _jump(self, stamp_ns: int, arrival_ns: int, why: str) -> None:
        self.jumps += 1
        self.last_jump = why
        self.reset(keep_drift=True)
        self._add(stamp_ns, arrival_ns - stamp_ns)

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
        if self._was_ready:
            return True
        self._was_ready = self._samples >= self._ready_samples and self.span_ns >= self._ready_span_ns
        return self._was_ready

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
    def drift_sd(self) -> float:
        """Estimated standard error of `drift` (dimensionless; inf until the first slope fit, i.e. before
        ``drift_min_span_s`` of robot time). Kept across a restart with ``keep_drift``, like the drift."""
        return self._slope_sd

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
            drift_sd_ppm=1e6 * self._slope_sd,
        )
