# SPDX-License-Identifier: Apache-2.0
"""`RunningSpread`: a residual's spread and correlation learned online, so residuals can be normalised."""

from __future__ import annotations

import numpy as np

__all__ = ["RunningSpread"]


class RunningSpread:
    """Per-channel exponentially weighted variance and lag-1 correlation of a zero-mean residual.

    Args:
        channels: number of channels. floor: smallest standard deviation reported (sensor noise), same unit
            as the residual. memory: number of samples the estimate remembers (EWMA weight ``1 / memory``).

    Samples taken while an event is active are left out by the caller (an event must not teach the monitor
    that events are normal). Each sample's contribution is clipped at 16x the current variance (4 sigma),
    so a single outlier moves the estimate little.
    """

    def __init__(self, channels: int, *, floor: float, memory: float) -> None:
        self.floor = float(floor)
        self.weight = 1.0 / max(float(memory), 1.0)
        self.var = np.full(channels, self.floor**2)
        self._cov1 = np.zeros(channels)
        self._last: np.ndarray | None = None
        self._last_used = np.zeros(channels, dtype=bool)
        self.counts = np.zeros(channels, dtype=np.int64)
        self.samples = 0  # samples of the least-updated channel

    def std(self) -> np.ndarray:
        """``[channels]`` current one-sigma spread (at least ``floor``)."""
        return np.sqrt(np.maximum(self.var, self.floor**2))

    def correlation(self) -> np.ndarray:
        """``[channels]`` lag-1 autocorrelation in [0, 0.99] (negative correlation is treated as none)."""
        return np.clip(self._cov1 / np.maximum(self.var, 1e-300), 0.0, 0.99)

    def variance_inflation(self) -> np.ndarray:
        """``[channels]`` factor by which correlated residuals inflate the variance of an average over them
        (``(1 + rho) / (1 - rho)`` for an AR(1) residual): confidence intervals are widened by its square root."""
        rho = self.correlation()
        return (1.0 + rho) / (1.0 - rho)

    def update(self, x: np.ndarray, *, weight: float | None = None, mask: np.ndarray | None = None) -> None:
        """Add one residual sample ``x [channels]`` with EWMA ``weight`` (default ``1 / memory``); ``mask [channels]``
        (bool) limits the update to some channels. Each channel's first samples are averaged plainly (weight
        ``1 / n``), so its estimate is usable after a few dozen samples."""
        use = np.ones(x.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        n = self.counts
        x2 = np.where(n > 0, np.minimum(x * x, 16.0 * np.maximum(self.var, self.floor**2)), x * x)
        w = np.maximum(self.weight if weight is None else weight, 1.0 / (n + 1))
        self.var = np.where(use, (1.0 - w) * self.var + w * x2, self.var)
        if self._last is not None:
            bound = 4.0 * np.sqrt(np.maximum(self.var, self.floor**2))
            prod = np.clip(x, -bound, bound) * np.clip(self._last, -bound, bound)
            self._cov1 = np.where(use & self._last_used, (1.0 - w) * self._cov1 + w * prod, self._cov1)
        self._last = x.copy()
        self._last_used = use
        self.counts = n + use
        self.samples = int(self.counts.min())

    def forget_history(self) -> None:
        """The next sample does not follow the previous one (a gap or a reset): no lag-1 pair across it."""
        self._last = None
