# SPDX-License-Identifier: Apache-2.0
"""`RobotSettings`: the ``[robot]`` section — which robot the twin mirrors."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .._paths import default_robot_usd, resolve_shipped
from ..config import check_robot_id, section_from_mapping

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

    def __post_init__(self) -> None:
        check_robot_id(self.robot_id, key="[robot] robot_id", allow_empty=True)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> RobotSettings:
        """Build from a ``[robot]`` table; unknown keys and wrong types raise `twin_ext.config.ConfigError`."""
        return section_from_mapping(cls, mapping, section="robot")

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
