# SPDX-License-Identifier: Apache-2.0
"""Detection thresholds from a false-alarm target (mean time between false alarms), for Gaussian residuals."""

from __future__ import annotations

import math

__all__ = ["gaussian_tail_probability", "two_sided_threshold", "exceedance_threshold"]


def gaussian_tail_probability(z: float) -> float:
    """``P(|Z| > z)`` for a standard normal ``Z``."""
    return math.erfc(z / math.sqrt(2.0))


def two_sided_threshold(p: float) -> float:
    """The ``z`` with ``P(|Z| > z) = p`` (``0 < p < 1``), by bisection on ``erfc`` (no SciPy needed).

    >>> round(two_sided_threshold(0.05), 3)
    1.96
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p must be in (0, 1), got {p}")
    lo, hi = 0.0, 40.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if gaussian_tail_probability(mid) > p:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def exceedance_threshold(*, false_alarm_hours: float, looks_per_second: float, channels: int, share: float) -> float:
    """Threshold ``z`` on ``|residual| / sigma`` so that ``channels`` independent Gaussian residuals, each looked
    at ``looks_per_second`` times a second, exceed it on average once per ``false_alarm_hours / share`` hours.

    ``share`` is this detector's part of the robot's false-alarm budget (the detectors' shares sum to 1).
    Counting every exceeding look as an alarm is conservative: correlated looks cluster into fewer alarms.

    >>> round(exceedance_threshold(false_alarm_hours=8, looks_per_second=200, channels=7, share=1.0), 2)
    5.57
    """
    looks = false_alarm_hours / share * 3600.0 * looks_per_second * channels
    return two_sided_threshold(1.0 / looks)
