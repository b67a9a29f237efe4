# SPDX-License-Identifier: Apache-2.0
"""View-model of the ``Fleet`` window: every robot with health, rates, latency, last event and wear; sortable;
a click selects a robot whose telemetry panel then shows it (plain Python, tested without Kit)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..fleet import SORT_KEYS, FleetRow, sort_rows

__all__ = ["FLEET_COLUMNS", "FleetCell", "FleetPanelViewModel"]

FLEET_COLUMNS = (
    ("robot_id", "robot"),
    ("health", "health"),
    ("robot_health", "robot"),
    ("rate_hz", "msg/s"),
    ("latency_ms", "latency"),
    ("added_p99_ms", "p99 added"),
    ("wear", "wear"),
    ("rejected", "rejected"),
    ("last_event", "last event"),
)
"""``(sort key, header)`` of the table's columns, in order."""
_LEVEL = {"ok": 0, "stale": 1, "lost": 2}


@dataclass(frozen=True)
class FleetCell:
    """One table row as text, with the health level for its colour (0 ok, 1 stale, 2 lost)."""

    robot_id: str
    texts: tuple[str, ...]
    level: int
    selected: bool


def _num(v: float, fmt: str, unit: str = "") -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:{fmt}}{unit}"


class FleetPanelViewModel:
    """What the ``Fleet`` window shows and does.

    Args:
        rows: returns the current `FleetRow` list (e.g. ``FleetSession.rows``).
        on_select: called with a robot id when the user clicks its row (e.g. point the telemetry panel at it).
    """

    def __init__(self, rows: Callable[[], list[FleetRow]], *, on_select: Callable[[str], Any] | None = None) -> None:
        self._rows = rows
        self.on_select = on_select
        self.sort_key = "health"
        self.descending = False
        self.selected: str | None = None
        self.error = ""

    def headers(self) -> tuple[str, ...]:
        """Column headers, the sorted one marked with ▲/▼."""
        mark = "▼" if self.descending else "▲"
        return tuple(f"{title} {mark}" if key == self.sort_key else title for key, title in FLEET_COLUMNS)

    def sort_by(self, key: str) -> None:
        """Sort by column ``key``; the same column again reverses the order."""
        if key not in SORT_KEYS:
            raise ValueError(f"cannot sort the fleet by {key!r}: use one of {list(SORT_KEYS)}")
        if key == self.sort_key:
            self.descending = not self.descending
        else:
            self.sort_key = key
            # Each column's natural order first: worst health first (an ascending rank), largest number first.
            self.descending = key not in ("robot_id", "health", "robot_health", "last_event")

    def table(self) -> list[FleetCell]:
        """The rows to draw, sorted; a failing source gives no rows and sets ``error``."""
        try:
            rows = sort_rows(self._rows(), self.sort_key, descending=self.descending)
            self.error = ""
        except Exception as exc:  # noqa: BLE001 - the window must keep drawing
            self.error = f"the fleet could not be read: {exc!r}"
            return []
        cells = []
        for r in rows:
            event = r.error if r.error and r.health != "ok" else r.last_event
            texts = (
                r.robot_id, r.health, r.robot_health or "—", _num(r.rate_hz, ".0f"), _num(r.latency_ms, ".1f", " ms"),
                _num(r.added_p99_ms, ".1f", " ms"), _num(r.wear, ".2f", "x"), str(r.rejected), event[:80],
            )  # fmt: skip
            cells.append(FleetCell(r.robot_id, texts, _LEVEL.get(r.health, 2), r.robot_id == self.selected))
        return cells

    def summary(self) -> str:
        """One line: how many robots and how many are ok / stale / lost."""
        cells = self.table()
        counts = [sum(c.level == k for c in cells) for k in range(3)]
        return f"{len(cells)} robots — ok {counts[0]}, stale {counts[1]}, lost {counts[2]}" + (
            f" — {self.error}" if self.error else ""
        )

    def click(self, robot_id: str) -> None:
        """The user clicked a robot: select it and hand it to ``on_select`` (the telemetry panel follows it)."""
        self.selected = robot_id
        if self.on_select is not None:
            self.on_select(robot_id)
