# SPDX-License-Identifier: Apache-2.0
"""`HealthSettings`: the ``[health]`` section (documented in docs/SETTINGS.md and docs/health.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import section_from_mapping

__all__ = ["HealthSettings"]


@dataclass(frozen=True)
class HealthSettings:
    """Model-based health monitoring of the robot (SI units; revolute joints in rad, N·m)."""

    enabled: bool = True
    """Compare the robot with its model: residuals, identification, anomaly events, wear forecasts."""
    joints: tuple = ()
    """Joints to monitor; empty = every revolute joint (grippers' prismatic fingers are left out: their
    coupling constraint is not in the rigid-body model)."""
    payload_link: str = ""
    """Link a payload is held by; "" = the link moved by the last monitored joint (a Panda's hand)."""
    observer_gain: float = 50.0
    """Gain K of the generalized momentum observer, 1/s: its output follows an external torque with time
    constant 1/K (20 ms)."""
    confirm_samples: int = 2
    """Consecutive samples above the threshold that open an episode: a hit holds the observer up for many
    samples, while a single sample's numerical error (a long step over lost samples) does not."""
    sigma_effort: float = 0.05
    """Smallest assumed effort noise (1 sigma), N·m: the floor of every residual's learned spread."""
    false_alarm_hours: float = 8.0
    """Target mean time between false alarms of the whole robot, h; detection thresholds are set from it."""
    noise_window_s: float = 60.0
    """Time over which each residual's spread is learned (outside events), s."""
    identification_window_s: float = 60.0
    """Memory of the recursive least-squares identification (forgetting factor from it), s."""
    friction_smoothing: float = 0.02
    """Velocity scale of the smooth Coulomb term ``F_c tanh(qd / eps)``, rad/s."""
    reference_speed: float = 0.0
    """Joint speed at which friction is compared with its nominal value (``F_c + F_v v_ref``), rad/s; 0 = each
    joint's own typical speed while moving (where its friction is measured, not extrapolated)."""
    min_speed: float = 0.05
    """A joint counts as moving (for identifiability and stuck encoders) above this speed, rad/s."""
    wear_alarm_ratio: float = 1.1
    """A ``friction_rise`` event is raised when the identified friction exceeds nominal by this factor (its
    95 % lower bound does)."""
    service_limit_ratio: float = 2.0
    """Friction / nominal at which a joint needs service: the wear forecast's target."""
    persistent_s: float = 0.5
    """An external torque lasting longer than this is not a collision but a payload, contact or sensor bias."""
    min_payload_kg: float = 0.2
    """Smallest payload change reported, kg."""
    min_bias: float = 0.5
    """Smallest torque-sensor bias reported, N·m."""
    saturation_ratio: float = 0.98
    """Fraction of a joint's effort limit at which its drive counts as saturated."""
    saturation_min_s: float = 0.02
    """Continuous saturation that raises a ``drive_saturation`` event, s."""
    encoder_jump: float = 0.005
    """A measured position this far off the one predicted from the previous samples is an encoder glitch, rad."""
    stuck_s: float = 0.2
    """A joint whose measured position stays bit-identical this long while it should move is stuck, s."""
    trend_interval_s: float = 60.0
    """How often the wear trend stores a point (friction ratio, energy per cycle), s."""
    history_path: str = ""
    """JSON-lines file keeping the wear trend across runs; "" = in memory only."""
    max_samples_per_tick: int = 32
    """Most samples the live twin's health service judges per display tick (~110 µs each); beyond it (a flood)
    an even spread, always with the newest, is judged and the rest counted as thinned, so health cannot stall
    the display. 32 per tick at 60 Hz is ~1.9 kHz judged in full; a thinned sample is a lost one to the
    observer."""
    tick_budget_ms: float = 3.0
    """Time the live twin's health service may spend judging per display tick in a real-time twin, ms (0 = no
    time bound): from the measured cost per sample it judges fewer than ``max_samples_per_tick`` (but at least 16)
    when the machine is busy (a flood competes for the GIL), so the display keeps its rate. Offline runs are bounded
    by count only."""

    def __post_init__(self) -> None:
        positive = (
            "observer_gain",
            "sigma_effort",
            "false_alarm_hours",
            "noise_window_s",
            "identification_window_s",
            "friction_smoothing",
            "min_speed",
            "persistent_s",
            "encoder_jump",
            "stuck_s",
            "trend_interval_s",
        )
        for name in positive:
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("min_payload_kg", "min_bias", "saturation_min_s", "reference_speed"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.confirm_samples < 1:
            raise ValueError(f"confirm_samples must be >= 1, got {self.confirm_samples}")
        if not (math.isfinite(self.tick_budget_ms) and self.tick_budget_ms >= 0):
            raise ValueError(f"tick_budget_ms must be a finite number >= 0, got {self.tick_budget_ms!r}")
        if self.max_samples_per_tick < 1:
            raise ValueError(f"max_samples_per_tick must be >= 1, got {self.max_samples_per_tick}")
        if not 1.0 < self.wear_alarm_ratio < self.service_limit_ratio:
            raise ValueError(
                f"need 1 < wear_alarm_ratio ({self.wear_alarm_ratio}) < service_limit_ratio ({self.service_limit_ratio})"
            )
        if not 0.5 <= self.saturation_ratio <= 1.0:
            raise ValueError(f"saturation_ratio must be in [0.5, 1], got {self.saturation_ratio}")
        if not all(isinstance(j, str) and j for j in self.joints):
            raise ValueError(f"joints must be a list of joint names, got {list(self.joints)!r}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> HealthSettings:
        """Build from the ``[health]`` table; unknown keys and wrong types raise `twin_ext.config.ConfigError`."""
        return section_from_mapping(cls, mapping, section="health")
