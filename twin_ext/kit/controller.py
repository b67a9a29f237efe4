"""`KitTwinController`: the live twin as Kit runs it — plain Python, so it is tested without Kit.

The extension gives it a settings reader and factories for the Kit-specific pieces (how the stage is driven,
the ghost); the controller owns the lifecycle: start from settings, tick on Kit's update at the display
rate, restart when settings change, stop on shutdown, and keep every failure as a message for the panel
and the log instead of raising into Kit.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from ..config import ConfigError, TwinConfig, section_from_mapping

__all__ = ["Driver", "KitSettings", "KitTwinController", "PxrMirrorDriver"]

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


class Driver(Protocol):
    """A sink that puts the twin's state on a stage (see `twin_ext.sinks.base.Sink`)."""

    name: str
    description: str

    def on_snapshot(self, snapshot) -> None: ...

    def close(self) -> None: ...


class PxrMirrorDriver:
    """The kinematic mirror on a private pxr stage (a bare Kit has no omni.usd); optionally saved on close."""

    name = "pxr_mirror"

    def __init__(self, model, *, robot_prim_path: str = "", save_path: str = "") -> None:
        from ..sinks import UsdKinematicMirror
        from ..sinks.mirror_sink import MirrorSink

        self.mirror = UsdKinematicMirror.new_stage(model, robot_prim_path=robot_prim_path or f"/World/{model.name}")
        self.sink = MirrorSink(self.mirror, keep_animation=bool(save_path))
        self.save_path = save_path
        self.description = f"USD kinematic mirror on a private stage at {self.mirror.robot_prim_path}"

    @property
    def stage(self):
        return self.mirror.stage

    def on_snapshot(self, snapshot) -> None:
        self.sink.on_snapshot(snapshot)

    def close(self) -> None:
        if self.save_path:
            self.sink.save_animation(self.save_path)


class KitTwinController:
    """Lifecycle and state of the live twin inside Kit.

    Args:
        read_settings: returns the extension's settings tree (``/exts/twin_ext`` as nested dicts).
        base_dir: the extension folder (relative paths in settings resolve against it).
        make_driver: ``(model, kit_settings) -> Driver | None`` — how the state reaches the stage.
        make_ghost: ``(model, kit_settings, driver) -> ghost | None`` with ``show(q)``, ``hide()``, ``remove()``
            (``driver`` is the stage driver in use, or None).
        now_ns: the twin clock, int ns.
        log: ``(level, message)`` for Kit's log (default: print).
    """

    def __init__(
        self,
        read_settings: Callable[[], Mapping[str, Any]],
        *,
        base_dir: Path,
        make_driver: Callable[[Any, KitSettings], Driver | None] | None = None,
        make_ghost: Callable[[Any, KitSettings, Any], Any] | None = None,
        now_ns: Callable[[], int] = time.monotonic_ns,
        log: Callable[[str, str], None] | None = None,
    ) -> None:
        self._read_settings = read_settings
        self.base_dir = Path(base_dir)
        self._make_driver = make_driver
        self._make_ghost = make_ghost
        self.now_ns = now_ns
        self._log = log or (lambda level, msg: print(f"[twin_ext] {level}: {msg}"))
        self.session = None
        self.driver: Driver | None = None
        self.ghost = None
        self.kit = KitSettings()
        self.error: str | None = None
        self._last_tick = 0
        self._restart_due: float | None = None

    # ---- lifecycle ------------------------------------------------------------------------------------
    def read_kit_settings(self) -> KitSettings:
        """Parse ``[kit]`` (a bad value is reported and the defaults are used)."""
        try:
            self.kit = KitSettings.from_mapping(dict(self._read_settings() or {}).get("kit"))
        except (ConfigError, ValueError) as exc:
            self._fail(f"kit settings: {exc}")
            self.kit = KitSettings()
        return self.kit

    def start(self, *, model=None) -> bool:
        """Build and start the twin from the current settings (``model``: an already loaded robot to reuse).
        False (and `error` set) when it cannot."""
        from ..session import SessionError, TwinSession

        self.stop()
        self.error = None
        self.read_kit_settings()
        try:
            tree = {k: v for k, v in dict(self._read_settings() or {}).items()}
            config = TwinConfig.from_mapping(tree)
            session = TwinSession(config, base_dir=self.base_dir, model=model, now_ns=self.now_ns)
        except (ConfigError, SessionError) as exc:
            return self._fail(str(exc))
        except Exception as exc:  # noqa: BLE001 - never into Kit
            return self._fail(f"unexpected {type(exc).__name__} while starting: {exc}")
        self.session = session
        if self._make_driver is not None and self.kit.drive != "none":
            try:
                self.driver = self._make_driver(session.model, self.kit)
            except Exception as exc:  # noqa: BLE001 - the twin still runs; the panel shows why the stage is not
                self.driver = None
                self._report("warning", f"cannot drive the stage ({self.kit.drive}): {exc}")
            if self.driver is not None:
                session.add_sink(self.driver)
        session.start()
        self._report(
            "info",
            f"live twin started: robot {session.model.name!r}, broker {session.settings.broker.url}, "
            f"{self.drive_description}",
        )
        return True

    def stop(self) -> None:
        """Stop the twin and release the stage pieces (idempotent)."""
        if self.ghost is not None:
            try:
                self.ghost.remove()
            except Exception as exc:  # noqa: BLE001
                self._report("warning", f"removing the ghost: {exc}")
            self.ghost = None
        if self.session is not None:
            try:
                self.session.stop()
            except Exception as exc:  # noqa: BLE001
                self._report("warning", f"stopping the twin: {exc}")
            self.session = None
        self.driver = None
        self._restart_due = None

    def restart(self) -> bool:
        self.stop()
        return self.start()

    def settings_changed(self) -> None:
        """Note a settings edit; the twin restarts once edits have been quiet for ``settings_debounce_s``."""
        self._restart_due = time.monotonic() + self.kit.settings_debounce_s

    @property
    def running(self) -> bool:
        return self.session is not None

    def _fail(self, message: str) -> bool:
        self.error = message
        self._report("error", message)
        return False

    def _report(self, level: str, message: str) -> None:
        try:
            self._log(level, message)
        except Exception:  # noqa: BLE001
            pass

    # ---- Kit's update -----------------------------------------------------------------------------------
    def on_update(self, now_ns: int | None = None) -> None:
        """Call on every Kit update: ticks the twin at its display rate; applies settings restarts."""
        if self._restart_due is not None and time.monotonic() >= self._restart_due:
            self._restart_due = None
            self._report("info", "settings changed: restarting the live twin")
            self.restart()
        session = self.session
        if session is None:
            return
        now = self.now_ns() if now_ns is None else int(now_ns)
        period = 1e9 / session.settings.twin.display_rate_hz
        if now - self._last_tick < period * 0.95:
            return
        self._last_tick = now
        try:
            session.tick(now)
        except Exception as exc:  # noqa: BLE001 - a tick must never take Kit down
            self._report("error", f"twin tick failed: {exc!r}")

    # ---- what the views read ------------------------------------------------------------------------------
    @property
    def model(self):
        return self.session.model if self.session is not None else None

    def status(self):
        """`TwinStatus`, or None when the twin is not running."""
        return self.session.status() if self.session is not None else None

    def latest_snapshot(self):
        return self.session.twin.latest_snapshot if self.session is not None else None

    @property
    def drive_description(self) -> str:
        if self.session is None:
            return "not driving (twin not running)"
        if self.driver is None:
            return "not driving the stage (kit.drive = none or unavailable)"
        return self.driver.description

    def ask_whatif(self, scenario):
        """Run ``scenario`` on the current snapshot (a Future of a `WhatIfReport`)."""
        if self.session is None:
            raise RuntimeError(f"the live twin is not running{': ' + self.error if self.error else ''}; start it first")
        return self.session.ask_whatif(scenario)

    def show_ghost(self, q) -> None:
        """Pose the what-if ghost at ``q: [ndof]`` (created on first use)."""
        if self.session is None or self._make_ghost is None:
            return
        if self.ghost is None:
            try:
                self.ghost = self._make_ghost(self.session.model, self.kit, self.driver)
            except Exception as exc:  # noqa: BLE001
                self._report("warning", f"cannot create the what-if ghost: {exc}")
                return
        if self.ghost is not None:
            self.ghost.show(q)

    def clear_ghost(self) -> None:
        if self.ghost is not None:
            self.ghost.hide()
