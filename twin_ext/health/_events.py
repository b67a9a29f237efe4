# SPDX-License-Identifier: Apache-2.0
"""`HealthEvent`: one thing the health monitor noticed, with joint(s), kind, magnitude, time and confidence."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EVENT_KINDS", "HealthEvent"]

EVENT_KINDS = {
    "collision": "a short external torque (a contact or a hit), from the momentum observer; magnitude: the external "
    "torque when it was detected, N·m (the episode's peak is in the summary's last_episode)",
    "contact": "an external torque that lasts and is neither a payload nor a sensor bias; magnitude: N·m",
    "payload_change": "the held mass changed; magnitude: change in kg (detail: mass, centre of mass)",
    "friction_rise": "identified friction above nominal (wear); magnitude: friction / nominal at the reference speed",
    "drive_saturation": "a drive at its effort limit for longer than saturation_min_s; magnitude: N·m",
    "encoder_glitch": "a measured position jumped away from the motion; magnitude: rad",
    "encoder_stuck": "a measured position froze while the joint moved; magnitude: s frozen",
    "torque_sensor_bias": "a constant offset on a joint's measured effort; magnitude: N·m",
}
"""Every event kind with what it means and the unit of its magnitude (docs/health.md lists the same)."""


@dataclass(frozen=True)
class HealthEvent:
    """One health event.

    Attributes:
        kind: one of `EVENT_KINDS`.
        joints: the joint(s) concerned (most affected first); empty when it concerns the robot as a whole.
        magnitude: size of the event in ``unit``.
        unit: "N·m", "kg", "ratio", "rad" or "s".
        t_s: when it began, s on the clock of the samples (the live twin feeds the robot's source stamps).
        detected_s: the time of the sample that raised it, same clock (``detected_s - t_s`` is how long the
            evidence took; network latency comes on top).
        confidence: in [0, 1]: how unlikely the evidence is for a healthy robot within an hour of monitoring.
        detail: extra values (e.g. ``{"mass_kg": 2.03, "com_m": [...]}``), JSON-able.
        message: one sentence for people.
    """

    kind: str
    joints: tuple[str, ...]
    magnitude: float
    unit: str
    t_s: float
    detected_s: float
    confidence: float
    message: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (the ``twin/v1/<robot_id>/health/events`` payload; docs/health.md)."""

        def num(x: float) -> float | None:
            return float(x) if math.isfinite(x) else None

        return {
            "version": 1,
            "kind": self.kind,
            "joints": list(self.joints),
            "magnitude": num(self.magnitude),
            "unit": self.unit,
            "t_s": num(self.t_s),
            "detected_s": num(self.detected_s),
            "confidence": num(self.confidence),
            "message": self.message,
            "detail": self.detail,
        }
