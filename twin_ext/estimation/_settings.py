# SPDX-License-Identifier: Apache-2.0
"""`EstimatorSettings`: the ``[estimator]`` section (documented in docs/SETTINGS.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import section_from_mapping

__all__ = ["EstimatorSettings"]


@dataclass(frozen=True)
class EstimatorSettings:
    """Kalman estimator parameters (SI units; angular values in rad, prismatic ones in m)."""

    jerk_psd: float = 300.0
    """White-jerk power spectral density of the constant-acceleration model, rad²/s⁵ (m²/s⁵)."""
    sigma_q: float = 2e-4
    """Position measurement noise, 1 sigma, rad (m); with ``noise_adapt_rate`` > 0 the smallest assumed."""
    sigma_qd: float = 3e-3
    """Velocity measurement noise, 1 sigma, rad/s (m/s); with ``noise_adapt_rate`` > 0 the smallest assumed."""
    noise_adapt_rate: float = 0.01
    """Weight of each innovation in the online measurement-noise estimate (0 = use sigma_q/sigma_qd as
    they are). A robot noisier than configured is then followed instead of being gated out as outliers."""
    use_velocity: bool = True
    """Fuse the robot's velocity measurements when messages carry them."""
    gate_chi2: float = 16.0
    """Squared Mahalanobis distance above which one joint's measurement is rejected as an outlier."""
    gate_reset_after: int = 10
    """Consecutive rejections of one joint after which that joint is re-initialised from the measurement
    (the robot really is somewhere else: a restart, a manual move)."""
    max_lag_ms: float = 250.0
    """Out-of-sequence window, ms: a measurement that arrives after a newer one and is at most this much older
    than the newest is fused at its own sample time (the filter re-runs from just before it); older ones are
    dropped and counted as too late. 0 = no re-filtering (then only ``late_tolerance_s`` applies)."""
    late_tolerance_s: float = 0.002
    """Without re-filtering history (``max_lag_ms`` = 0, or just after a reset), measurements at most this much
    older than the filter (clock-sync wobble) are fused at the filter's time; older ones are dropped as late,
    so the state never moves backwards."""
    max_extrapolation_s: float = 1.0
    """Longest prediction beyond the newest measurement that is displayed; beyond it the displayed state
    holds while its covariance keeps growing."""
    coast_after_s: float = 0.15
    """Horizon beyond the newest measurement up to which the display uses the full constant-acceleration
    prediction (network latency plus a sample period or two), s. Beyond it the bounded predictor coasts."""
    coast_time_constant_s: float = 0.1
    """Time constant of the bounded predictor, s: beyond ``coast_after_s`` the acceleration is dropped and the
    velocity decays as ``exp(-t / tau)``, so through a gap the display moves at most ``|qd| tau`` further and
    never runs away (0 = hold at once)."""
    stillness_sigma: float = 5.0
    """How clearly a joint must move before the display extrapolates it, in standard deviations of its velocity
    estimate: the predicted motion (velocity and acceleration) is scaled by ``qd² / (qd² + (k σ_qd)²)`` (``k`` =
    this, ``σ_qd`` the filter's velocity standard deviation). A joint at rest is shown still instead of following
    the noise of its acceleration estimate (at 100 Hz with 1e-2 rad/s velocity noise that noise is ~1 rad/s², i.e.
    6 mrad at a 100 ms horizon against 0.7 mrad for holding the last sample); a moving joint (``|qd|`` >> ``k σ_qd``)
    is extrapolated as before. With it on, the acceleration is also shrunk by its own signal-to-noise ratio and a
    decelerating joint is shown coming to rest (`shown_prediction`). 0 = plain constant-acceleration extrapolation."""
    use_reference: bool = True
    """When joint states carry the robot controller's reference (``reference_position`` / ``reference_velocity``),
    bridge gaps with it: beyond ``coast_after_s`` the joints follow the extrapolated reference (see
    ``reference_coast_after_s``) instead of coasting (false: the bounded predictor only)."""
    reference_coast_after_s: float = 0.25
    """Horizon past the newest reference up to which a gap extrapolates the reference at constant acceleration (its
    last two velocities' difference), s; beyond it the reference's velocity decays with ``coast_time_constant_s``
    (measured on the pick-and-place program: 0.25 s; a linear extrapolation overshoots the program's stops)."""
    reference_model: str = "drive"
    """How the joints follow the extrapolated reference through a gap: ``"drive"`` = their tracking error dies out
    through a linearised PD drive with the robot model's gains (kp, kd) and its mass-matrix diagonal; ``"track"`` =
    the tracking error decays with ``coast_time_constant_s`` (also used for joints without drive gains)."""
    time_sigma_s: float = 0.0015
    """Uncertainty (1 sigma) of the sample-time mapping, s: one-way clock sync cannot separate the clock
    offset from the minimum network latency, so every sample time carries this much unknown shift. It
    enters the snapshot's covariance as ``qd qdᵀ σt²`` (positions) and ``qdd qddᵀ σt²`` (velocities)."""
    stale_after_s: float = 0.25
    """Health becomes ``stale`` when no measurement was accepted for this long."""
    kalman_backend: str = "warp"
    """How runs of full measurements (every joint's position and velocity) are fused: ``"warp"`` = one compiled Warp
    CPU kernel call per run (an in-order sample, or a display tick's re-filter of late samples); ``"numpy"`` = one
    NumPy filter step per measurement. The same filter to rounding (~1e-14 relative); at 1 kHz the kernel costs
    ~25-30 µs per sample against ~45 (in order) and ~80 (reordered, per display tick) with NumPy. The kernel builds
    once per process in the background (~0.3 s with a warm kernel cache, ~1.9 s with a cold one); until it is ready,
    and for partial or position-only messages and gaps, the NumPy path runs."""

    def __post_init__(self) -> None:
        for name in ("jerk_psd", "sigma_q", "sigma_qd", "gate_chi2"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")
        for name in (
            "late_tolerance_s",
            "max_extrapolation_s",
            "stale_after_s",
            "time_sigma_s",
            "max_lag_ms",
            "coast_after_s",
            "coast_time_constant_s",
            "reference_coast_after_s",
            "stillness_sigma",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                unit = "ms" if name.endswith("_ms") else "sigma" if name.endswith("_sigma") else "s"
                raise ValueError(f"{name} must be a finite number >= 0 {unit}, got {value}")
        if self.kalman_backend not in ("numpy", "warp"):
            raise ValueError(f"kalman_backend must be 'numpy' or 'warp', got {self.kalman_backend!r}")
        if self.reference_model not in ("drive", "track"):
            raise ValueError(f"reference_model must be 'drive' or 'track', got {self.reference_model!r}")
        if not (0.0 <= self.noise_adapt_rate < 1.0):
            raise ValueError(f"noise_adapt_rate must be in [0, 1), got {self.noise_adapt_rate}")
        if self.gate_reset_after < 1:
            raise ValueError(f"gate_reset_after must be >= 1, got {self.gate_reset_after}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> EstimatorSettings:
        return section_from_mapping(cls, mapping, section="estimator")
