# SPDX-License-Identifier: Apache-2.0
"""`TwinExtension`: the Kit entry point. Thin: settings in, `KitTwinController` does the work, views out.

On startup it reads ``/exts/twin_ext``, loads the robot, and (``kit.autostart``) starts the live twin; every
Kit update ticks the twin at its display rate without blocking (the MQTT link has its own network thread,
what-if runs on a worker thread and worker processes). A settings change restarts the twin; opening another
stage re-attaches the stage driver. With omni.ui present it adds *Window > twin_ext > Telemetry / What-If*.
Nothing raises out of ``on_startup``/``on_shutdown``: failures go to the log and the panels.
"""

from __future__ import annotations

import gc
from pathlib import Path
from typing import Any

import carb
import carb.eventdispatcher
import carb.settings
import omni.ext
import omni.kit.app

from .. import TwinExtError
from ..live import TwinConfig
from ..robot import RobotModel
from .carb_settings import SETTINGS_ROOT, read_settings
from .controller import KitTwinController
from .settings import EXTRA_SECTIONS

__all__ = ["TwinExtension", "get_extension"]

_instance: TwinExtension | None = None


def get_extension() -> TwinExtension | None:
    """The running extension instance, or None when the extension is disabled."""
    return _instance


def _log(level: str, message: str) -> None:
    text = f"[twin_ext] {message}"
    {"error": carb.log_error, "warning": carb.log_warn}.get(level, carb.log_info)(text)
    if level != "info":
        return
    print(text, flush=True)


class TwinExtension(omni.ext.IExt):
    """twin_ext inside Kit / Isaac Sim."""

    controller: KitTwinController | None = None
    robot: RobotModel | None = None
    error: str | None = None

    def on_startup(self, ext_id: str) -> None:
        global _instance
        _instance = self
        self._ext_id = ext_id
        self._subs: list[Any] = []
        self._settings_sub = None
        self._windows: list[Any] = []
        self._menu = None
        self._ui_period_ns = 0
        self._last_ui_ns = 0
        manager = omni.kit.app.get_app().get_extension_manager()
        self._ext_root = Path(manager.get_extension_path(ext_id))
        try:
            self._startup()
        except Exception as exc:  # never let a bug take Kit down with it
            self.error = f"startup failed: {type(exc).__name__}: {exc}"
            _log("error", self.error)

    def _startup(self) -> None:
        from .stage_drivers import make_driver

        self.controller = KitTwinController(
            read_settings, base_dir=self._ext_root, make_driver=make_driver, make_ghost=self._make_ghost, log=_log
        )
        kit = self.controller.read_kit_settings()
        self._ui_period_ns = int(1e9 / kit.ui_refresh_hz)
        # Report the robot even when the live twin is not started (autostart off, or a broken config).
        try:
            config = TwinConfig.from_mapping(read_settings(), extra_sections=EXTRA_SECTIONS)
            self.robot = config.robot.load_model(self._ext_root)
            _log(
                "info",
                f"robot {self.robot.name!r} loaded from {self.robot.source}: {self.robot.ndof} dofs, "
                f"{self.robot.nlink} links, {self.robot.total_mass:.3f} kg",
            )
            carb.log_info(f"[twin_ext] {self.robot.describe()}")
        except TwinExtError as exc:
            self.error = str(exc)
            _log("error", self.error)
        if kit.autostart and self.error is None:
            if not self.controller.start(model=self.robot):
                self.error = self.controller.error
        dispatcher = carb.eventdispatcher.get_eventdispatcher()
        self._subs.append(
            dispatcher.observe_event(
                event_name=omni.kit.app.GLOBAL_EVENT_UPDATE, on_event=self._on_update, observer_name="twin_ext.update"
            )
        )
        self._subscribe_stage_events(dispatcher)
        self._settings_sub = carb.settings.get_settings().subscribe_to_tree_change_events(
            SETTINGS_ROOT, self._on_settings_changed
        )
        self._build_ui(kit)

    def _subscribe_stage_events(self, dispatcher) -> None:
        try:
            import omni.usd
        except ImportError:  # bare Kit: no stage to follow
            return
        context = omni.usd.get_context()
        for kind in (omni.usd.StageEventType.OPENED, omni.usd.StageEventType.CLOSED):
            self._subs.append(
                dispatcher.observe_event(
                    event_name=context.stage_event_name(kind),
                    on_event=self._on_stage_changed,
                    observer_name=f"twin_ext.stage.{kind.name.lower()}",
                )
            )

    def _build_ui(self, kit) -> None:
        try:
            import omni.ui  # noqa: F401
            from omni.kit.menu.utils import MenuItemDescription, add_menu_items
        except ImportError:  # headless / bare Kit: no panels, the twin still runs
            return
        from .command_viewmodel import CommandPanelViewModel
        from .panels import TelemetryWindow, WhatIfWindow
        from .viewmodels import TelemetryPanelViewModel, WhatIfPanelViewModel

        controller = self.controller
        self.telemetry_vm = TelemetryPanelViewModel(controller)
        self.command_vm = CommandPanelViewModel(
            lambda: controller.session.twin if controller.session is not None else None
        )
        self.whatif_vm = WhatIfPanelViewModel(
            controller, scenarios_dir=self._ext_root / "config" / "scenarios", commands=self.command_vm
        )
        self._telemetry_window = TelemetryWindow(self.telemetry_vm, visible=kit.open_windows)
        self._whatif_window = WhatIfWindow(self.whatif_vm, visible=kit.open_windows)
        self._windows = [self._telemetry_window, self._whatif_window]

        def toggle(window):
            window.window.visible = not window.window.visible

        self._menu = [
            MenuItemDescription(
                name="twin_ext",
                sub_menu=[
                    MenuItemDescription(name="Telemetry", onclick_fn=lambda w=self._telemetry_window: toggle(w)),
                    MenuItemDescription(name="What-If", onclick_fn=lambda w=self._whatif_window: toggle(w)),
                ],
            )
        ]
        add_menu_items(self._menu, "Window")

    @staticmethod
    def _make_ghost(model, kit, driver):
        from ..stage import GhostRobot

        stage = getattr(driver, "stage", None)
        if stage is None:
            import omni.usd

            stage = omni.usd.get_context().get_stage()
        return GhostRobot(model, stage, prim_path=kit.ghost_prim_path, opacity=kit.ghost_opacity)

    # ---- events -------------------------------------------------------------------------------------------
    def _on_update(self, event) -> None:
        controller = self.controller
        if controller is None:
            return
        controller.on_update()
        now = controller.now_ns()
        if self._windows and now - self._last_ui_ns >= self._ui_period_ns:
            self._last_ui_ns = now
            for window in self._windows:
                try:
                    window.refresh()
                except Exception as exc:  # noqa: BLE001 - a view error must not stop the twin
                    carb.log_warn(f"[twin_ext] panel refresh: {exc}")

    def _on_settings_changed(self, *_args) -> None:
        if self.controller is not None:
            self.controller.settings_changed()

    def _on_stage_changed(self, _event) -> None:
        if self.controller is not None and self.controller.running:
            self.controller.restart()

    def on_shutdown(self) -> None:
        global _instance
        try:
            self._subs = []
            if self._settings_sub is not None:
                carb.settings.get_settings().unsubscribe_to_change_events(self._settings_sub)
                self._settings_sub = None
            if self._menu is not None:
                from omni.kit.menu.utils import remove_menu_items

                remove_menu_items(self._menu, "Window")
                self._menu = None
            for window in self._windows:
                window.destroy()
            self._windows = []
            if getattr(self, "command_vm", None) is not None:
                self.command_vm.close()
            if self.controller is not None:
                self.controller.stop()
                self.controller = None
            from ..whatif import shutdown_workers

            shutdown_workers()
        except Exception as exc:  # noqa: BLE001
            carb.log_error(f"[twin_ext] shutdown: {exc}")
        finally:
            self.robot = None
            self.telemetry_vm = self.whatif_vm = self.command_vm = None
            _instance = None
            gc.collect()
