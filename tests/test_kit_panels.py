# SPDX-License-Identifier: Apache-2.0
"""The omni.ui windows bound to real view-models, with a recording stand-in for omni.ui (it cannot run here).

The stand-in builds a widget tree from the same calls omni.ui receives (window frames, stacks, labels,
buttons, fields with their value models, combo boxes, sliders) and lets the test click and type. What is
proven: every widget the windows build is filled from the view-model, and every button, field and slider
reaches the view-model action it is bound to. Whether omni.ui draws it as intended is not (see docs/kit.md).
"""

from __future__ import annotations

import sys
import time
import types
from types import SimpleNamespace

import pytest
from test_kit_viewmodels import running  # noqa: F401  (fixture: a controller fed 4 s of telemetry)

from twin_ext.control import CommandAck, CommandGate, ControlSettings, PreflightVerdict, encode_ack
from twin_ext.kit.command_viewmodel import NO_PROPOSAL, CommandPanelViewModel
from twin_ext.kit.viewmodels import TelemetryPanelViewModel, WhatIfPanelViewModel

_open: list = []  # the container widgets being built (``with`` blocks)


class _Model:
    """omni.ui's Simple*Model: one value, typed getters, change callbacks."""

    def __init__(self, value=None) -> None:
        self.value = value
        self._callbacks: list = []

    as_float = property(lambda self: float(self.value))
    as_int = property(lambda self: int(self.value))
    as_bool = property(lambda self: bool(self.value))
    as_string = property(lambda self: str(self.value))

    def get_value_as_float(self) -> float:
        return float(self.value)

    def set_value(self, value) -> None:
        self.value = value
        for fn in self._callbacks:
            fn(self)

    def add_value_changed_fn(self, fn) -> None:
        self._callbacks.append(fn)


class _Widget:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs
        self.text = args[0] if args and isinstance(args[0], str) else ""
        self.style = kwargs.get("style")
        self.children: list[_Widget] = []
        self.model = args[0] if args and isinstance(args[0], _Model) else _Model(0.0)
        if _open:
            _open[-1].children.append(self)

    def __enter__(self):
        _open.append(self)
        return self

    def __exit__(self, *exc) -> None:
        _open.pop()

    def clear(self) -> None:
        self.children = []

    def walk(self):
        yield self
        for child in self.children:
            yield from child.walk()


class _ComboBox(_Widget):
    def __init__(self, index: int, *items: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.items = items
        selected = _Model(index)
        self.model = SimpleNamespace(get_item_value_model=lambda: selected)


class _Frame(_Widget):
    def set_build_fn(self, fn) -> None:
        self.build_fn = fn

    def rebuild(self) -> None:
        self.clear()
        with self:
            self.build_fn()


class _Window:
    def __init__(self, title: str, **kwargs) -> None:
        self.title, self.visible, self.frame = title, kwargs.get("visible", False), _Frame()

    def destroy(self) -> None:
        self.frame = None


def _fake_omni_ui(monkeypatch) -> None:
    ui = types.ModuleType("omni.ui")
    widgets = (
        "ScrollingFrame",
        "VStack",
        "HStack",
        "CollapsableFrame",
        "Label",
        "Button",
        "ProgressBar",
        "StringField",
        "FloatField",
        "IntField",
        "CheckBox",
        "FloatSlider",
    )
    for name in widgets:
        setattr(ui, name, type(name, (_Widget,), {}))
    for name in ("SimpleFloatModel", "SimpleIntModel", "SimpleStringModel", "SimpleBoolModel"):
        setattr(ui, name, type(name, (_Model,), {}))
    ui.Window, ui.ComboBox = _Window, _ComboBox
    ui.DockPreference = SimpleNamespace(RIGHT_BOTTOM="right-bottom")
    omni = sys.modules.get("omni") or types.ModuleType("omni")
    monkeypatch.setitem(sys.modules, "omni", omni)
    monkeypatch.setattr(omni, "ui", ui, raising=False)
    monkeypatch.setitem(sys.modules, "omni.ui", ui)
    monkeypatch.delitem(sys.modules, "twin_ext.kit.panels", raising=False)  # re-import against the stand-in


@pytest.fixture
def panels(monkeypatch):
    _fake_omni_ui(monkeypatch)
    import twin_ext.kit.panels as panels

    yield panels
    sys.modules.pop("twin_ext.kit.panels", None)


def _shown(window) -> list[_Widget]:
    """Open the window (Kit builds the frame when it becomes visible)."""
    window.window.visible = True
    window.window.frame.rebuild()
    return list(window.window.frame.walk())


def _button(widgets, title: str) -> _Widget:
    return next(w for w in widgets if type(w).__name__ == "Button" and w.text == title)


class _GateTwin:
    """The command side of a LiveTwin (gate_state, commands, send_command): a real CommandGate whose pre-flight
    passes (the pre-flight itself is tested in test_control_preflight and test_kit_command_viewmodel)."""

    def __init__(self, snapshot) -> None:
        verdict = PreflightVerdict(True, simulated=True, whatif_status="pass", p_violation=0.0, samples=32)
        preflight = SimpleNamespace(settings=ControlSettings(), check=lambda *args, **kwargs: verdict)
        self.commands = CommandGate(preflight, now_ns=time.monotonic_ns)
        self.snapshot, self.gate, self.sent = snapshot, "blocked", []

    def gate_state(self):
        return self.gate, "" if self.gate == "open" else "the twin is stale: only stop is sent"

    def send_command(self, command, *, requester="local"):
        clock = SimpleNamespace(ready=True, to_robot_ns=lambda t: t)
        return self.commands.send(command, snapshot=self.snapshot, publish=lambda p: self.sent.append(p) or True,
                                  clock=clock, requester=requester)  # fmt: skip


def test_the_telemetry_window_shows_the_view_model_and_its_buttons_act(panels, running):  # noqa: F811
    """Every row of the telemetry view reaches a label (health coloured by level, rejects by reason, one table
    row per joint with a limit bar); Stop stops the twin and the labels follow on the next refresh."""
    controller, _ = running
    vm = TelemetryPanelViewModel(controller)
    window = panels.TelemetryWindow(vm)
    widgets = _shown(window)
    view = vm.view()
    texts = [w.text for w in widgets if type(w).__name__ == "Label"]
    assert view.connection in texts and view.drive in texts and str(view.health) in texts
    health = next(w for w in widgets if type(w).__name__ == "Label" and w.text == str(view.health))
    assert health.style == {"color": panels._GREEN}  # ok
    assert any(w.text.startswith("duplicate:") for w in widgets)
    bars = [w for w in widgets if type(w).__name__ == "ProgressBar"]
    assert len(bars) == len(view.joints) == 9 and all(0.0 <= b.model.value <= 1.0 for b in bars)
    assert [row["estimated"].text for row in window._joint_rows] == [r.estimated for r in view.joints]
    assert [row["name"].text for row in window._joint_rows] == [r.name for r in view.joints]

    _button(widgets, "Stop").kwargs["clicked_fn"]()
    assert not controller.running
    window.refresh()
    stopped = [w.text for w in window.window.frame.walk() if type(w).__name__ == "Label"]
    assert vm.view().connection in stopped
    window.destroy()


def test_the_whatif_window_reads_its_fields_runs_and_binds_the_ghost(panels, running):  # noqa: F811
    """Typed fields reach the form; Run starts the what-if; refresh shows one coloured verdict row per variant;
    a variant's button shows its ghost, the slider scrubs it and Clear ghost hides it."""
    controller, _ = running
    twin = _GateTwin(controller.latest_snapshot())
    vm = WhatIfPanelViewModel(controller, commands=CommandPanelViewModel(lambda: twin, requester="panel"))
    window = panels.WhatIfWindow(vm)
    widgets = _shown(window)
    for key, value in (
        ("speed_scale", 1.5),
        ("payload_mass", 2.0),
        ("horizon_s", 0.5),
        ("samples", 4),
        ("push_y", 30.0),
    ):
        window._models[key].set_value(value)
    _button(widgets, "Run what-if").kwargs["clicked_fn"]()
    assert vm.form.speed_scale == 1.5 and vm.form.payload_mass == 2.0 and vm.form.samples == 4
    assert vm.form.push_force_n == (0.0, 30.0, 0.0)
    assert vm.state == "running" and window._status_label.text.startswith("running")
    deadline = time.monotonic() + 180
    while vm.state == "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        window.refresh()
    assert vm.state == "done", vm.message
    assert window._status_label.text == vm.message
    rows = window._table.children[1:]  # after the header
    assert [row.children[0].text for row in rows] == ["as programmed", "as edited"]
    for row, verdict in zip(rows, vm.rows, strict=False):
        status = row.children[1]
        assert status.text == verdict.status and status.style == {"color": panels._STATUS_COLOR[verdict.status]}

    rows[0].children[0].kwargs["clicked_fn"]()  # the baseline's button
    assert vm.ghost_variant == "as programmed"
    window._scrub.model.set_value(1.0)
    assert controller.ghost.visible and vm.ghost_time == pytest.approx(float(vm.ghost_times[-1]))
    _button(list(window.window.frame.walk()), "Clear ghost").kwargs["clicked_fn"]()
    assert not controller.ghost.visible
    _send_to_robot(panels, window, twin)
    window.destroy()


def _send_to_robot(panels, window, twin) -> None:
    """The "Send to robot" section after a finished run: every label filled from the command view, Send enabled
    only with the gate open and reaching the pre-flight and the robot, the acks and the last-commands rows following,
    Stop robot sending a stop."""
    commands = window.vm.commands
    labels, buttons = window._command_labels, window._command_buttons
    window.refresh()
    view = commands.view()
    assert commands.proposal is not None and labels["proposal"].text == view.proposal != NO_PROPOSAL
    assert labels["gate"].text == view.gate_text and "stale" in view.gate_text
    assert labels["gate"].style == {"color": panels._YELLOW} and labels["verdict"].text == labels["acks"].text == "—"
    assert buttons["send"].enabled is False and buttons["stop"].enabled is True
    buttons["send"].kwargs["clicked_fn"]()
    assert twin.sent == [] and labels["verdict"].text == "—"  # blocked: nothing happened

    twin.gate = "open"
    window.refresh()
    assert buttons["send"].enabled is True and labels["gate"].style == {"color": panels._GREEN}
    buttons["send"].kwargs["clicked_fn"]()
    assert labels["verdict"].text == "pre-flight running …" and buttons["send"].enabled is False
    deadline = time.monotonic() + 10
    while commands.tracked is None and time.monotonic() < deadline:
        time.sleep(0.01)
        window.refresh()
    tracked = commands.tracked
    assert len(twin.sent) == 1 and labels["verdict"].text.startswith("accepted — pre-flight pass")
    assert labels["verdict"].style == {"color": panels._GREEN} and labels["acks"].text == f"{tracked.id} sent"
    for state in ("received", "started", "done"):
        twin.commands.on_ack_payload(encode_ack(CommandAck(tracked.id, state)))
        twin.commands.poll()
    window.refresh()
    assert labels["acks"].text == f"{tracked.id} sent -> received -> started -> done"
    assert labels["acks"].style == {"color": panels._GREEN}
    rows = window._command_table.children[1:]  # after the header
    assert [[c.text for c in row.children] for row in rows] == [[tracked.id, "MoveTo", "panel", "done"]]

    buttons["stop"].kwargs["clicked_fn"]()
    assert len(twin.sent) == 2 and labels["verdict"].text == "stop sent"
    window.refresh()
    assert [row.children[1].text for row in window._command_table.children[1:]] == ["MoveTo", "Stop"]
    commands.close()
