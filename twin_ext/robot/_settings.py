# SPDX-License-Identifier: Apache-2.0
"""`RobotSettings`: the ``[robot]`` section — which robot the twin mirrors, and what to add to its USD.

`RobotSettings.load_model` reads the USD (`load_robot`, with ``balance_inertia``) and gives undriven joints
their gains from ``[robot.drives]`` / ``drive_rule`` (`twin_ext.robot.apply_drive_settings`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._paths import default_robot_usd, resolve_shipped
from ..config import ConfigError, check_robot_id, section_from_mapping
from ._drives import DRIVE_RULES, JointDriveGains, apply_drive_settings, drive_gains_from_mapping
from ._model import RobotModel

__all__ = ["RobotSettings", "default_robot_path"]


@dataclasses.dataclass(frozen=True)
class RobotSettings:
    """``[robot]``: which robot the twin mirrors."""

    usd: str = ""
    """Robot USD file; "" means the shipped Franka Panda (usd/franka_panda/panda.usda)."""
    prim_path: str = ""
    """Articulation root to read when the file holds several robots; "" = the only one."""
    robot_id: str = "panda"
    """Robot id in MQTT topics ``twin/v1/<robot_id>/...``; "" = follow the first robot heard from."""
    drives: tuple[JointDriveGains, ...] = ()
    """Per-joint servo gains, the ``[robot.drives]`` table (joint = { kp, kd, max_force }); () = none."""
    drive_rule: str = "none"
    """Gains for joints the USD leaves undriven: "none" or "bandwidth" (drive_bandwidth_hz, drive_damping_ratio)."""
    drive_bandwidth_hz: float = 5.0
    """Natural frequency of the servos drive_rule = "bandwidth" gives undriven joints, Hz."""
    drive_damping_ratio: float = 1.0
    """Damping ratio of the servos drive_rule = "bandwidth" gives undriven joints (1 = critical)."""
    balance_inertia: bool = False
    """Repair link inertias that violate the triangle inequality (MuJoCo's balanceinertia) instead of refusing."""

    def __post_init__(self) -> None:
        check_robot_id(self.robot_id, key="[robot] robot_id", allow_empty=True)
        try:
            object.__setattr__(self, "drives", drive_gains_from_mapping(self.drives))
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        if self.drive_rule not in DRIVE_RULES:
            raise ConfigError(f"[robot] drive_rule = {self.drive_rule!r}; fix: use one of {list(DRIVE_RULES)}")
        if not self.drive_bandwidth_hz > 0 or self.drive_bandwidth_hz == float("inf"):
            raise ConfigError(f"[robot] drive_bandwidth_hz = {self.drive_bandwidth_hz}; fix: a frequency > 0 Hz")
        if not 0 <= self.drive_damping_ratio < float("inf"):
            raise ConfigError(f"[robot] drive_damping_ratio = {self.drive_damping_ratio}; fix: a ratio >= 0")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> RobotSettings:
        """Build from a ``[robot]`` table; unknown keys and wrong types raise `twin_ext.config.ConfigError`.

        ``[robot.drives]`` arrives as a sub-table ``{joint: {kp, kd[, max_force]}}`` (TOML, Kit settings) and
        is parsed into `JointDriveGains`.
        """
        mapping = dict(mapping or {})
        if "drives" in mapping:
            try:
                mapping["drives"] = drive_gains_from_mapping(mapping["drives"])
            except ValueError as exc:
                raise ConfigError(str(exc)) from None
        return section_from_mapping(cls, mapping, section="robot")

    def load_model(self, base: Path | None = None) -> RobotModel:
        """Read the robot (`resolved_usd`, ``prim_path``, ``balance_inertia``) and apply the drive settings.

        Raises:
            RobotModelError: the USD cannot be used, or ``[robot.drives]`` names a joint the robot lacks.
        """
        from ._usd_reader import load_robot

        robot = load_robot(
            self.resolved_usd(base), prim_path=self.prim_path or None, balance_inertia=self.balance_inertia
        )
        return apply_drive_settings(
            robot,
            drives=self.drives,
            rule=self.drive_rule,
            bandwidth_hz=self.drive_bandwidth_hz,
            damping_ratio=self.drive_damping_ratio,
        )

    def resolved_usd(self, base: Path | None = None) -> str:
        """Absolute robot USD path; a relative ``usd`` resolves against ``base`` (default: the shipped files'
        folder, i.e. the extension folder)."""
        if not self.usd:
            return default_robot_path()
        if base is not None and not Path(self.usd).expanduser().is_absolute():
            return str(Path(base) / self.usd)
        return str(resolve_shipped(self.usd))


def default_robot_path() -> str:
    """Path of the shipped Franka Panda USD (``usd/franka_panda/panda.usda``), what ``usd = ""`` means."""
    return str(default_robot_usd())
