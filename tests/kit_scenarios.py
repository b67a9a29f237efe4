"""Scenarios that run INSIDE a Kit process booted by tests/kit_harness.py (see there)."""

from __future__ import annotations

import gc
import os
import threading
import weakref
from pathlib import Path

EXT = "twin_ext"


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _pump(app, n: int = 5) -> None:
    for _ in range(n):
        app.update()


def lifecycle(app, args: dict) -> dict:
    """Enable the extension, read what startup did, disable it, and measure what is left behind."""
    manager = app.extension_manager
    gc.collect()
    threads_before = sorted(t.name for t in threading.enumerate())
    fds_before = _fds()
    manager.set_extension_enabled_immediate(EXT, True)
    _pump(app)
    import twin_ext
    from twin_ext.kit import get_extension

    ext = get_extension()
    result = {
        "enabled": manager.is_extension_enabled(EXT),
        "module_file": twin_ext.__file__,
        "ext_path": manager.get_extension_path(manager.get_enabled_extension_id(EXT)),
        "instance": ext is not None,
        "error": ext.error if ext else "no instance",
        "robot": None,
    }
    if ext is not None and ext.robot is not None:
        robot = ext.robot
        result["robot"] = {"name": robot.name, "ndof": robot.ndof, "nlink": robot.nlink,
                           "dof_names": list(robot.dof_names), "total_mass": robot.total_mass,
                           "source": robot.source}
        robot_ref = weakref.ref(robot)
        del robot
    else:
        robot_ref = None
    del ext
    manager.set_extension_enabled_immediate(EXT, False)
    _pump(app)
    gc.collect()
    result["disabled"] = not manager.is_extension_enabled(EXT)
    result["instance_after"] = get_extension() is not None
    result["robot_released"] = robot_ref is None or robot_ref() is None
    result["threads_before"] = threads_before
    result["threads_after"] = sorted(t.name for t in threading.enumerate())
    result["fds_before"] = fds_before
    result["fds_after"] = _fds()
    result["linked_root"] = str(Path(result["ext_path"]).resolve())
    return result
