# SPDX-License-Identifier: Apache-2.0
"""`KitSettings`: the ``[kit]`` section (how the twin lives inside Kit), and every section Kit exposes.

Plain Python (tested without Kit). The carb settings tree is read by `twin_ext.kit.carb_settings`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from ..config import section_from_mapping
from ..live import TWIN_SECTIONS

__all__ = ["DRIVE_MODES", "EXTRA_SECTIONS", "KitSettings", "kit_sections"]

DRIVE_MODES = ("auto", "articulation", "stage", "pxr", "none")


@dataclasses.dataclass(frozen=True)
class KitSettings:
    """``[kit]``: how the twin lives inside Kit / Isaac Sim."""

    autostart: bool = True
    """Start the live twin when the extension starts."""
    drive: str = "auto"
    """How the twin's state reaches the stage: "auto" (Isaac Sim articulation while the timeline plays, the
    USD kinematic mirror on the open stage otherwise, a private pxr stage in a bare Kit), "articulation",
    "stage", "pxr" or "none"."""
    robot_prim_path: str = ""
    """Where the robot is on Kit's stage; "" = /World/<robot name>."""
    add_robot_to_stage: bool = True
    """Reference the robot USD at ``robot_prim_path`` (in the session layer) when the stage lacks it."""
    disable_gravity: bool = True
    """While driving the articulation, turn off gravity on its links so nothing pulls between two writes."""
    ghost_prim_path: str = "/World/twin_ghost"
    """Where the what-if ghost (translucent predicted pose) goes."""
    ghost_opacity: float = 0.35
    """Opacity of the ghost, in [0, 1]."""
    ui_refresh_hz: float = 10.0
    """How often the panels redraw, Hz."""
    open_windows: bool = False
    """Open the telemetry and what-if windows at startup (they are always in the Window menu)."""
    save_mirror_path: str = ""
    """pxr drive only: save the mirrored motion as an animated .usda here when the twin stops ("" = no)."""
    settings_debounce_s: float = 0.5
    """A settings change restarts the twin after this quiet time, s (edits come in bursts)."""

    def __post_init__(self) -> None:
        if self.drive not in DRIVE_MODES:
            raise ValueError(f"drive {self.drive!r} must be one of {list(DRIVE_MODES)}")
        if not (0 <= self.ghost_opacity <= 1):
            raise ValueError(f"ghost_opacity must be in [0, 1], got {self.ghost_opacity}")
        if not (0 < self.ui_refresh_hz <= 120):
            raise ValueError(f"ui_refresh_hz must be in (0, 120], got {self.ui_refresh_hz}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> KitSettings:
        return section_from_mapping(cls, mapping, section="kit")


EXTRA_SECTIONS: Mapping[str, type] = {"kit": KitSettings}
"""The section the Kit skin adds to the twin's registry (`twin_ext.live.TWIN_SECTIONS`)."""


def kit_sections() -> dict[str, type]:
    """``{section: settings dataclass}`` of every section Kit exposes under ``exts."twin_ext"``, in order.

    extension.toml's ``[settings]`` block is generated from these (tools/sync_settings.py) and
    docs/SETTINGS.md documents them.
    """
    return {**TWIN_SECTIONS, **EXTRA_SECTIONS}
