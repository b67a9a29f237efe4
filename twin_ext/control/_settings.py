# SPDX-License-Identifier: Apache-2.0
"""``[control]``: the bounds every command to the robot is checked against, its lease and its acknowledgement."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import section_from_mapping

__all__ = ["ControlSettings"]


@dataclass(frozen=True)
class ControlSettings:
    """``[control]``: pre-flight bounds, leases and acknowledgement timeouts of twin -> robot commands (docs/control.md)."""

    max_violation_probability: float = 0.01
    """A move_to is refused when its simulated P(violation) (what-if from the current snapshot and covariance)
    is above this (fraction; with 32 samples one violating sample is 0.031, so 0.01 means none may violate)."""
    preflight_samples: int = 32
    """Monte-Carlo samples of the pre-flight simulation (initial states drawn from the twin's covariance)."""
    position_margin_rad: float = 0.02
    """A move_to target of a revolute joint must lie at least this far inside its limits, rad."""
    position_margin_m: float = 0.002
    """A move_to target of a prismatic joint must lie at least this far inside its limits, m."""
    max_speed_fraction: float = 0.8
    """A move_to's peak joint speed (minimum-jerk: 1.875 x distance / duration) may be at most this fraction of the
    joint's velocity limit."""
    min_duration_s: float = 0.2
    """Shortest move_to accepted, s."""
    max_duration_s: float = 30.0
    """Longest move_to accepted, s."""
    max_speed_override: float = 1.0
    """Largest speed override the twin sends (dimensionless)."""
    max_state_age_s: float = 0.1
    """A move_to is refused (check ``state``) while the twin's newest sample is older than this, s: in a gap the
    velocity spread grows by the motion model (to ~1.5 rad/s std after 0.24 s, while health is still ``ok``), and a
    simulation drawn from that spread fails on it rather than on the move."""
    require_clock_sync: bool = True
    """Refuse leased commands while the clock sync is not ready (a lease in the robot's clock needs it)."""
    lease_margin_s: float = 1.0
    """A command's lease ends this long after the end of its motion (move_to: now + duration + margin; speed
    override and resume: now + margin), in the robot's clock, s. A robot refuses a command that arrives after its
    lease and holds a motion still running at its end."""
    ack_timeout_s: float = 1.0
    """A command without any acknowledgement after this long ends ``failed`` (reason ``no_ack``), s."""
    done_timeout_margin_s: float = 2.0
    """A started command not ``done`` by its lease plus this long ends ``failed`` (reason ``no_done``), s."""
    history: int = 64
    """Commands the twin keeps (with their states) for views and idempotent re-sending."""

    def __post_init__(self) -> None:
        if not 0.0 <= self.max_violation_probability < 1.0:
            raise ValueError(f"max_violation_probability must be in [0, 1), got {self.max_violation_probability}")
        for name in ("preflight_samples", "history"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
        for name in ("position_margin_rad", "position_margin_m", "lease_margin_s", "done_timeout_margin_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name in ("min_duration_s", "max_duration_s", "ack_timeout_s", "max_speed_override", "max_state_age_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not 0.0 < self.max_speed_fraction <= 1.0:
            raise ValueError(f"max_speed_fraction must be in (0, 1], got {self.max_speed_fraction}")
        if self.min_duration_s > self.max_duration_s:
            raise ValueError(
                f"min_duration_s ({self.min_duration_s}) must not be above max_duration_s ({self.max_duration_s})"
            )

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> ControlSettings:
        """Build from the ``[control]`` table; unknown keys and wrong types raise `twin_ext.config.ConfigError`."""
        return section_from_mapping(cls, mapping, section="control")
