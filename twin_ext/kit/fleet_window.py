# SPDX-License-Identifier: Apache-2.0
"""The ``Fleet`` omni.ui window: a thin binding of a table of labels to `FleetPanelViewModel`.

Clicking a header sorts by it; clicking a robot's row selects it (the view-model tells the telemetry panel).
omni.ui does not run on this machine: everything shown and done lives in the tested view-model.
"""

from __future__ import annotations

from typing import Any

import omni.ui as ui

from .fleet_viewmodel import FLEET_COLUMNS, FleetPanelViewModel

__all__ = ["FleetWindow"]

_COLORS = {0: 0xFF4CAF50, 1: 0xFF3BC4FF, 2: 0xFF4040E0}  # AABBGGRR: ok green, stale amber, lost red


class FleetWindow:
    """Every robot of the fleet in one sortable table."""

    TITLE = "Fleet"

    def __init__(self, view_model: FleetPanelViewModel, *, visible: bool = False) -> None:
        self.vm = view_model
        self.window = ui.Window(self.TITLE, width=900, height=480, visible=visible)
        self._summary: Any = None
        self._table: Any = None
        self.window.frame.set_build_fn(self._build)

    def _build(self) -> None:
        with ui.VStack(spacing=4):
            self._summary = ui.Label(self.vm.summary(), height=20)
            self._table = ui.ScrollingFrame()
        self.refresh()

    def refresh(self) -> None:
        """Redraw the table (call at a few Hz)."""
        if self._table is None:
            return
        self._summary.text = self.vm.summary()
        with self._table:
            with ui.VStack(spacing=1):
                with ui.HStack(height=22):
                    for (key, _), header in zip(FLEET_COLUMNS, self.vm.headers(), strict=True):
                        ui.Button(header, clicked_fn=lambda k=key: self._sort(k))
                for cell in self.vm.table():
                    with ui.HStack(height=20):
                        for i, text in enumerate(cell.texts):
                            style = {"color": _COLORS[cell.level]} if i == 1 else {}
                            ui.Button(text, style=style, clicked_fn=lambda r=cell.robot_id: self.vm.click(r))

    def _sort(self, key: str) -> None:
        self.vm.sort_by(key)
        self.refresh()

    def destroy(self) -> None:
        self.window.destroy()
