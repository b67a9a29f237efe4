"""`TwinExtension`: the Kit entry point. Thin: it reads settings, hands them to the core, reports.

Kit calls ``on_startup`` when the extension is enabled and ``on_shutdown`` when it is disabled; nothing may
raise out of either (a failing robot load is logged and kept in `TwinExtension.error`, never a crash).
"""

from __future__ import annotations

from pathlib import Path

import carb
import omni.ext
import omni.kit.app

from ..config import ConfigError, TwinConfig
from ..robot import RobotModel, RobotModelError, load_robot
from .settings import read_settings

__all__ = ["TwinExtension", "get_extension"]

_instance: "TwinExtension | None" = None


def get_extension() -> "TwinExtension | None":
    """The running extension instance, or None when the extension is disabled."""
    return _instance


class TwinExtension(omni.ext.IExt):
    """twin_ext inside Kit / Isaac Sim."""

    robot: RobotModel | None = None
    error: str | None = None
    config: TwinConfig | None = None

    def on_startup(self, ext_id: str) -> None:
        global _instance
        self._ext_id = ext_id
        manager = omni.kit.app.get_app().get_extension_manager()
        self._ext_root = Path(manager.get_extension_path(ext_id))
        self.robot, self.error, self.config = None, None, None
        try:
            self.config = TwinConfig.from_mapping(read_settings())
            usd = self.config.robot.resolved_usd(self._ext_root)
            self.robot = load_robot(usd, prim_path=self.config.robot.prim_path or None)
            carb.log_info(f"[twin_ext] {self.robot.describe()}")
            print(f"[twin_ext] robot {self.robot.name!r} loaded from {usd}: {self.robot.ndof} dofs, "
                  f"{self.robot.nlink} links, {self.robot.total_mass:.3f} kg")
        except (ConfigError, RobotModelError) as exc:
            self.error = str(exc)
            carb.log_error(f"[twin_ext] {exc}")
        except Exception as exc:  # never let a bug take Kit down with it
            self.error = f"unexpected {type(exc).__name__}: {exc}"
            carb.log_error(f"[twin_ext] startup failed: {self.error}")
        _instance = self

    def on_shutdown(self) -> None:
        global _instance
        self.robot = None
        self.config = None
        _instance = None
