# SPDX-License-Identifier: Apache-2.0
"""`KitTwinController`: the live twin as Kit runs it — plain Python, so it is tested without Kit.

The extension gives it a settings reader and factories for the Kit-specific pieces (how the stage is driven,
the ghost); the controller owns the lifecycle: start from settings, tick on Kit's update at the display
rate, restart when settings change, stop on shutdown, and keep every failure as a message for the panel
and the log instead of raising into Kit.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

from .. import TwinExtError
from ..live import TwinConfig, TwinSession
from .settings import EXTRA_SECTIONS, KitSettings

__all__ = ["Driver", "KitTwinController"]


class Driver(Protocol):
    """A sink that puts the twin's state on a stage (see `twin_ext.sinks.base.Sink`)."""

    name: str
    description: str

    def on_snapshot(self, snapshot) -> None: ...

    def close(self) -> None: ...


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
        except TwinExtError as exc:
            self._fail(f"kit settings: {exc}")
            self.kit = KitSettings()
        return self.kit

    def start(self, *, model=None) -> bool:
        """Build and start the twin from the current settings (``model``: an already loaded robot to reuse).
        False (and `error` set) when it cannot."""
        self.stop()
        self.error = None
        self.read_kit_settings()
        try:
            tree = {k: v for k, v in dict(self._read_settings() or {}).items()}
            config = TwinConfig.from_mapping(tree, extra_sections=EXTRA_SECTIONS)
            session = TwinSession(config, base_dir=self.base_dir, model=model, now_ns=self.now_ns)
        except TwinExtError as exc:
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
                self._show_scene(session)
        session.start()
        self._report(
            "info",
            f"live twin started: robot {session.model.name!r}, broker {session.config.broker.url}, "
            f"{self.drive_description}",
        )
        return True

    SCENE_PRIM = "/World/twin_scene"

    def _show_scene(self, session) -> None:
        """Reference the what-if scene (``[whatif] scene``) on the driven stage, in the driver's layer (Kit's session
        layer), so the obstacles the verdicts talk about are on screen."""
        scene = getattr(getattr(session.config, "whatif", None), "scene", "")
        stage = getattr(self.driver, "stage", None)
        if not scene or stage is None or stage.GetPrimAtPath(self.SCENE_PRIM):
            return
        try:
            from .._paths import resolve_shipped
            from ..stage import reference_scene

            path = resolve_shipped(scene, prefer_cwd=True)
            reference_scene(stage, path, prim_path=self.SCENE_PRIM, layer=getattr(self.driver, "layer", None))
        except Exception as exc:  # noqa: BLE001 - the twin runs without the scene on screen
            self._report("warning", f"cannot show the what-if scene {scene!r}: {exc}")

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
        period = 1e9 / session.config.twin.display_rate_hz
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

    def health_summary(self):
        """The health monitor's `HealthSummary`, or None (twin not running, or running without health)."""
        health = getattr(self.session, "health", None) if self.session is not None else None
        return health.summary if health is not None else None

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

    def mark_ghost_contact(self, point, label: str = "") -> None:
        """Mark the ghost variant's predicted first contact at ``point`` (``[3]`` m, world), or clear it (None)."""
        mark = getattr(self.ghost, "mark_contact", None)
        if mark is not None:
            try:
                mark(point, label=label)
            except Exception as exc:  # noqa: BLE001 - a marker must never take the twin down
                self._report("warning", f"cannot mark the predicted contact: {exc}")

    def clear_ghost(self) -> None:
        if self.ghost is not None:
            self.ghost.hide()
