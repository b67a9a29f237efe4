# SPDX-License-Identifier: Apache-2.0
"""The omni.ui windows: thin bindings of widgets to `TelemetryPanelViewModel`, `WhatIfPanelViewModel` and (the
what-if window's "send to robot") `CommandPanelViewModel`.

Written against omni.ui as Isaac Sim 6 / Kit 110 uses it (ui.Window, frame.set_build_fn, ui.VStack/HStack,
ui.Label, ui.Button(clicked_fn=...), ui.FloatField/IntField/StringField with SimpleValueModels,
ui.ComboBox, ui.CheckBox, ui.ProgressBar, ui.FloatSlider, ui.CollapsableFrame, ui.ScrollingFrame, a widget's
``enabled``; colours are 0xAABBGGRR). omni.ui does not run on this machine: everything shown and every action
lives in the view-models, which are tested; this module only copies values into widgets.
"""

from __future__ import annotations

from typing import Any

import omni.ui as ui

from .viewmodels import TelemetryPanelViewModel, WhatIfPanelViewModel

__all__ = ["TelemetryWindow", "WhatIfWindow"]

_GREEN, _YELLOW, _RED, _GREY = 0xFF4CAF50, 0xFF3BC4FF, 0xFF4040E0, 0xFFAAAAAA  # AABBGGRR
_HEALTH_COLOR = {0: _GREEN, 1: _YELLOW, 2: _RED}
_STATUS_COLOR = {"pass": _GREEN, "fail": _RED, "unknown": _YELLOW}
_GATE_COLOR = {"open": _GREEN, "blocked": _YELLOW, "closed": _GREY}
_VERDICT_COLOR = {"accepted": _GREEN, "refused": _RED}
_ACK_COLOR = {"done": _GREEN, "rejected": _RED, "failed": _RED}


class TelemetryWindow:
    """Connection, rates, latency, clock, rejects, estimator health and the per-joint table."""

    TITLE = "Twin Telemetry"

    def __init__(self, view_model: TelemetryPanelViewModel, *, visible: bool = False) -> None:
        self.vm = view_model
        self.window = ui.Window(
            self.TITLE, width=560, height=520, visible=visible, dockPreference=ui.DockPreference.RIGHT_BOTTOM
        )
        self._labels: dict[str, Any] = {}
        self._joint_rows: list[dict[str, Any]] = []
        self._health_rows: list[dict[str, Any]] = []
        self.window.frame.set_build_fn(self._build)

    def _row(self, key: str, title: str) -> None:
        with ui.HStack(height=20):
            ui.Label(title, width=120, style={"color": _GREY})
            self._labels[key] = ui.Label("—")

    def _build(self) -> None:
        view = self.vm.view()
        self._labels.clear()
        self._joint_rows.clear()
        self._health_rows.clear()
        with ui.ScrollingFrame():
            with ui.VStack(spacing=4, height=0):
                with ui.HStack(height=24, spacing=6):
                    ui.Button("Start", clicked_fn=self._start, width=70)
                    ui.Button("Stop", clicked_fn=self.vm.stop, width=70)
                    ui.Button("Restart", clicked_fn=self._start_again, width=70)
                for key, title in (
                    ("connection", "Broker"),
                    ("robot", "Robot"),
                    ("health", "Estimate"),
                    ("rate", "Telemetry"),
                    ("latency", "Latency"),
                    ("clock_offset", "Clock offset"),
                    ("clock_drift", "Clock drift"),
                    ("estimator", "Estimator"),
                    ("drive", "Stage"),
                ):
                    self._row(key, title)
                with ui.CollapsableFrame("Rejected payloads", height=0, collapsed=True):
                    self._labels["rejects"] = ui.Label("none", word_wrap=True)
                with ui.CollapsableFrame("Joints: measured vs estimated", height=0):
                    with ui.VStack(spacing=2, height=0):
                        with ui.HStack(height=18):
                            for text, width in (
                                ("joint", 110),
                                ("measured", 80),
                                ("estimated", 80),
                                ("±1σ", 70),
                                ("speed", 80),
                                ("position within limits", 0),
                            ):
                                ui.Label(text, width=width, style={"color": _GREY})
                        for row in view.joints:
                            with ui.HStack(height=18):
                                cells = {"name": ui.Label(row.name, width=110)}
                                for key, width in (
                                    ("measured", 80),
                                    ("estimated", 80),
                                    ("sigma", 70),
                                    ("velocity", 80),
                                ):
                                    cells[key] = ui.Label("—", width=width)
                                cells["bar"] = ui.ProgressBar()
                                self._joint_rows.append(cells)
                with ui.CollapsableFrame("Health: the robot against its model", height=0):
                    with ui.VStack(spacing=2, height=0):
                        self._row("health_state", "State")
                        self._row("payload", "Payload")
                        with ui.HStack(height=18):
                            for text, width in (
                                ("joint", 110),
                                ("state", 110),
                                ("external", 90),
                                ("friction", 150),
                                ("bias", 0),
                            ):
                                ui.Label(text, width=width, style={"color": _GREY})
                        for _row in view.health_rows:
                            with ui.HStack(height=18):
                                cells = {
                                    key: ui.Label("—", width=width)
                                    for key, width in (
                                        ("name", 110),
                                        ("state", 110),
                                        ("external_torque", 90),
                                        ("friction", 150),
                                        ("bias", 0),
                                    )
                                }
                                self._health_rows.append(cells)
                        self._labels["health_events"] = ui.Label("", word_wrap=True)
                with ui.CollapsableFrame("Errors", height=0, collapsed=False):
                    self._labels["errors"] = ui.Label("", word_wrap=True, style={"color": _RED})
        self.refresh()

    def _start(self) -> None:
        self.vm.start()
        self.window.frame.rebuild()

    def _start_again(self) -> None:
        self.vm.restart()
        self.window.frame.rebuild()

    def refresh(self) -> None:
        """Copy the view-model's current view into the widgets (called at ``kit.ui_refresh_hz``)."""
        if not self.window.visible or not self._labels:
            return
        view = self.vm.view()
        if len(view.joints) != len(self._joint_rows) or len(view.health_rows) != len(self._health_rows):
            self.window.frame.rebuild()
            return
        for key in (
            "connection",
            "robot",
            "health",
            "rate",
            "latency",
            "clock_offset",
            "clock_drift",
            "estimator",
            "drive",
        ):
            self._labels[key].text = str(getattr(view, key)) + (
                f"  ({view.clock_note})" if key == "clock_offset" and view.clock_note else ""
            )
        self._labels["connection"].style = {"color": _GREEN if view.connection_ok else _RED}
        self._labels["health"].style = {"color": _HEALTH_COLOR[view.health_level]}
        self._labels["rejects"].text = ", ".join(f"{k}: {v}" for k, v in view.rejects) or "none"
        self._labels["errors"].text = "\n".join(view.errors)
        for cells, row in zip(self._joint_rows, view.joints, strict=False):
            cells["measured"].text, cells["estimated"].text = row.measured, row.estimated
            cells["sigma"].text, cells["velocity"].text = row.sigma, row.velocity
            cells["velocity"].style = {"color": _RED if row.too_fast else 0xFFDDDDDD}
            cells["bar"].model.set_value(0.0 if row.bar != row.bar else row.bar)
            cells["bar"].style = {"color": _RED if row.near_limit else _GREEN}
        self._labels["health_state"].text = view.health_state
        self._labels["payload"].text = view.payload or "none identified"
        self._labels["health_events"].text = "\n".join(view.health_events)
        for cells, row in zip(self._health_rows, view.health_rows, strict=False):
            for key in ("name", "state", "external_torque", "friction", "bias"):
                cells[key].text = getattr(row, key)
            cells["state"].style = {"color": _HEALTH_COLOR[row.level]}

    def destroy(self) -> None:
        self.window.destroy()
        self.window = None


class WhatIfWindow:
    """Pick or edit a scenario, Run, read the verdicts, scrub or clear the ghost; with the view-model's ``commands``
    (a `CommandPanelViewModel`): send the run's candidate command to the robot, stop it, follow the acks."""

    TITLE = "Twin What-If"

    def __init__(self, view_model: WhatIfPanelViewModel, *, visible: bool = False) -> None:
        self.vm = view_model
        self.window = ui.Window(
            self.TITLE, width=560, height=640, visible=visible, dockPreference=ui.DockPreference.RIGHT_BOTTOM
        )
        self._models: dict[str, Any] = {}
        self._status_label = None
        self._table = None
        self._command_labels: dict[str, Any] = {}
        self._command_buttons: dict[str, Any] = {}
        self._command_table = None
        self._command_rows: tuple = ()
        self.window.frame.set_build_fn(self._build)

    def _float(self, key: str, title: str, value: float) -> None:
        with ui.HStack(height=20):
            ui.Label(title, width=200)
            model = ui.SimpleFloatModel(value)
            ui.FloatField(model)
            self._models[key] = model

    def _build(self) -> None:
        form = self.vm.form
        presets = self.vm.presets
        with ui.ScrollingFrame():
            with ui.VStack(spacing=4, height=0):
                with ui.HStack(height=22):
                    ui.Label("Scenario preset", width=200)
                    self._preset_combo = ui.ComboBox(
                        presets.index(form.preset) if form.preset in presets else 0, *presets
                    )
                with ui.HStack(height=22):
                    ui.Label("Command", width=200)
                    self._source_combo = ui.ComboBox(
                        ("preset", "file", "hold").index(form.command_source),
                        "the preset's program",
                        "a trajectory file",
                        "hold the current target",
                    )
                with ui.HStack(height=20):
                    ui.Label("Command file (TOML)", width=200)
                    self._models["command_file"] = ui.SimpleStringModel(form.command_file)
                    ui.StringField(self._models["command_file"])
                with ui.HStack(height=20):
                    ui.Label("Start where the robot is now", width=200)
                    self._models["align"] = ui.SimpleBoolModel(form.align_to_state)
                    ui.CheckBox(self._models["align"])
                self._float("speed_scale", "Speed scale", form.speed_scale)
                self._float("payload_mass", "Payload mass [kg]", form.payload_mass)
                with ui.HStack(height=20):
                    ui.Label('Payload link ("" = last)', width=200)
                    self._models["payload_link"] = ui.SimpleStringModel(form.payload_link)
                    ui.StringField(self._models["payload_link"])
                self._float("kp_scale", "Stiffness (kp) scale", form.kp_scale)
                self._float("kd_scale", "Damping (kd) scale", form.kd_scale)
                self._float("friction_scale", "Friction scale", form.friction_scale)
                self._float("latency_s", "Command latency [s]", form.latency_s)
                self._float("push_y", "Push force, world Y [N]", form.push_force_n[1])
                self._float("push_start_s", "Push start [s]", form.push_start_s)
                self._float("push_duration_s", "Push duration [s]", form.push_duration_s)
                self._float("horizon_s", "Horizon [s]", form.horizon_s)
                with ui.HStack(height=20):
                    ui.Label("Samples per variant", width=200)
                    self._models["samples"] = ui.SimpleIntModel(form.samples)
                    ui.IntField(self._models["samples"])
                ui.Button("Run what-if", height=28, clicked_fn=self._run)
                self._status_label = ui.Label(self.vm.message or "idle", word_wrap=True)
                self._table = ui.VStack(spacing=2, height=0)
                with ui.HStack(height=22, spacing=6):
                    ui.Label("Ghost", width=60)
                    self._scrub = ui.FloatSlider(min=0.0, max=1.0)
                    self._scrub.model.add_value_changed_fn(lambda m: self.vm.set_scrub(m.get_value_as_float()))
                    ui.Button("Clear ghost", width=100, clicked_fn=self.vm.clear_ghost)
                if self.vm.commands is not None:
                    self._build_commands()
        self._fill_table()
        self._fill_commands()

    def _build_commands(self) -> None:
        self._command_labels.clear()
        self._command_rows = ()
        with ui.CollapsableFrame("Send to robot", height=0):
            with ui.VStack(spacing=2, height=0):
                for key, title in (("gate", "Commands"), ("proposal", "Proposed"), ("verdict", "Pre-flight"),
                                   ("acks", "Robot says")):  # fmt: skip
                    with ui.HStack(height=20):
                        ui.Label(title, width=100, style={"color": _GREY})
                        self._command_labels[key] = ui.Label("—", word_wrap=True)
                with ui.HStack(height=26, spacing=6):
                    self._command_buttons["send"] = ui.Button(
                        "Send to robot",
                        clicked_fn=self._send,
                        tooltip="pre-flight (bounds, health, simulation) then send; only while the gate is open",
                    )
                    self._command_buttons["stop"] = ui.Button("Stop robot", width=110, clicked_fn=self._stop_robot)
                self._command_table = ui.VStack(spacing=2, height=0)

    def _send(self) -> None:
        self.vm.send_to_robot()
        self._fill_commands()

    def _stop_robot(self) -> None:
        self.vm.commands.stop()
        self._fill_commands()

    def _fill_commands(self) -> None:
        """Copy the command view (gate, proposal, verdict, acks, last commands) into the widgets."""
        commands = self.vm.commands
        if commands is None or not self._command_labels:
            return
        view = commands.view()
        labels = self._command_labels
        labels["gate"].text, labels["gate"].style = view.gate_text, {"color": _GATE_COLOR.get(view.gate, _GREY)}
        labels["proposal"].text = view.proposal
        labels["verdict"].text = view.verdict or "—"
        labels["verdict"].style = {"color": _VERDICT_COLOR.get(view.verdict_level, _GREY)}
        labels["acks"].text = view.acks or "—"
        labels["acks"].style = {"color": _ACK_COLOR.get(view.pending_state, _GREY)}
        self._command_buttons["send"].enabled = view.send_enabled
        self._command_buttons["stop"].enabled = view.stop_enabled
        if view.rows == self._command_rows or self._command_table is None:
            return
        self._command_rows = view.rows
        self._command_table.clear()
        with self._command_table:
            if view.rows:
                with ui.HStack(height=18):
                    for text, width in (("command", 110), ("type", 110), ("asked by", 110), ("state", 0)):
                        ui.Label(text, width=width, style={"color": _GREY})
            for row in view.rows:
                with ui.HStack(height=18):
                    ui.Label(row.id, width=110)
                    ui.Label(row.kind, width=110)
                    ui.Label(row.requester, width=110)
                    ui.Label(
                        row.state + (f" ({row.reason})" if row.reason else ""),
                        style={"color": _ACK_COLOR.get(row.state, _GREY)},
                    )

    def _read_form(self) -> None:
        f = self.vm.form
        presets = self.vm.presets
        if presets:
            f.preset = presets[self._preset_combo.model.get_item_value_model().as_int]
        f.command_source = ("preset", "file", "hold")[self._source_combo.model.get_item_value_model().as_int]
        f.command_file = self._models["command_file"].as_string
        f.align_to_state = self._models["align"].as_bool
        for key in (
            "speed_scale",
            "payload_mass",
            "kp_scale",
            "kd_scale",
            "friction_scale",
            "latency_s",
            "push_start_s",
            "push_duration_s",
            "horizon_s",
        ):
            setattr(f, key, self._models[key].as_float)
        f.payload_link = self._models["payload_link"].as_string
        f.push_force_n = (0.0, self._models["push_y"].as_float, 0.0)
        f.samples = self._models["samples"].as_int

    def _run(self) -> None:
        self._read_form()
        self.vm.run()
        self.refresh(force=True)

    def _fill_table(self) -> None:
        if self._table is None:
            return
        self._table.clear()
        with self._table:
            if not self.vm.rows:
                return
            with ui.HStack(height=18):
                for text, width in (
                    ("variant", 150),
                    ("verdict", 60),
                    ("P(violation)", 100),
                    ("95% CI", 100),
                    ("clearance", 220),
                    ("first violation", 0),
                ):
                    ui.Label(text, width=width, style={"color": _GREY})
            for row in self.vm.rows:
                with ui.HStack(height=18):
                    ui.Button(
                        row.variant,
                        width=150,
                        clicked_fn=lambda v=row.variant: self.vm.select_ghost(v),
                        tooltip="show this variant's predicted motion as the ghost",
                    )
                    ui.Label(row.status, width=60, style={"color": _STATUS_COLOR.get(row.status, _GREY)})
                    ui.Label(row.p_violation, width=100)
                    ui.Label(row.ci, width=100)
                    ui.Label(row.clearance, width=220)
                    ui.Label(row.first_violation)

    def refresh(self, *, force: bool = False) -> None:
        """Collect a finished run and update the status line and table; follow the commands (every refresh)."""
        changed = self.vm.poll()
        if self._status_label is not None and (changed or force):
            self._status_label.text = self.vm.message or self.vm.state
            self._fill_table()
        if self.vm.commands is not None:
            self.vm.commands.poll()
            self._fill_commands()

    def destroy(self) -> None:
        self.window.destroy()
        self.window = None
