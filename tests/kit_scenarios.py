# SPDX-License-Identifier: Apache-2.0
"""Scenarios that run INSIDE a Kit process booted by tests/kit_harness.py (see there)."""

from __future__ import annotations

import dataclasses
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
        result["robot"] = {
            "name": robot.name,
            "ndof": robot.ndof,
            "nlink": robot.nlink,
            "dof_names": list(robot.dof_names),
            "total_mass": robot.total_mass,
            "source": robot.source,
        }
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


def _children() -> list[int]:
    """Pids of this process's live child processes (from /proc)."""
    me, kids = os.getpid(), []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == me and fields[0] != "Z":
                    kids.append(int(entry))
            except OSError:
                continue
    return kids


def live_e2e(app, args: dict) -> dict:
    """With a robot publishing: enable the extension (configured by command-line settings), wait until the
    twin tracks, capture the mirrored stage and the twin's time, ask a what-if through the panel's view-model,
    then disable and report what is left."""
    import time

    import numpy as np

    manager = app.extension_manager
    gc.collect()
    threads_before = sorted(t.name for t in threading.enumerate())
    fds_before = _fds()
    manager.set_extension_enabled_immediate(EXT, True)
    from twin_ext.kit import get_extension
    from twin_ext.kit.viewmodels import TelemetryPanelViewModel, WhatIfPanelViewModel

    ext = get_extension()
    controller = ext.controller
    deadline = time.monotonic() + args.get("track_timeout_s", 30.0)
    status = None
    while time.monotonic() < deadline:
        app.update()
        time.sleep(0.005)
        status = controller.status()
        if status is not None and status.health.value == "ok" and status.accepted > args.get("min_accepted", 300):
            break
    result = {
        "error": controller.error,
        "tracking": status is not None and status.health.value == "ok",
        "accepted": None if status is None else status.accepted,
        "drive": controller.drive_description,
    }
    # Capture: the twin's time, its estimate, and the mirrored stage's link world transforms at that instant.
    app.update()
    snapshot = controller.latest_snapshot()
    from pxr import UsdGeom

    stage = controller.driver.stage
    cache = UsdGeom.XformCache()
    model = controller.model
    mirrored = [
        np.array(cache.GetLocalToWorldTransform(stage.GetPrimAtPath(p))).T.tolist()
        for p in controller.driver.mirror._paths
    ]
    result.update(
        t_ns=snapshot.t_ns,
        q=snapshot.q.tolist(),
        health=snapshot.health.value,
        link_names=list(model.link_names),
        mirrored=mirrored,
    )
    view = TelemetryPanelViewModel(controller).view()
    result["telemetry_view"] = {
        "connection": view.connection,
        "health": view.health,
        "rate": view.rate,
        "joints": len(view.joints),
        "clock_offset": view.clock_offset,
    }
    # A what-if through the panel's view-model.
    whatif = WhatIfPanelViewModel(controller)
    whatif.form.samples = args.get("samples", 8)
    whatif.form.horizon_s = 1.0
    whatif.form.payload_mass = 3.0
    whatif.form.speed_scale = 1.5
    whatif.run()
    deadline = time.monotonic() + args.get("whatif_timeout_s", 120.0)
    while whatif.state == "running" and time.monotonic() < deadline:
        app.update()
        time.sleep(0.01)
        whatif.poll()
    result["whatif"] = {
        "state": whatif.state,
        "message": whatif.message,
        "rows": [dataclasses.asdict(r) for r in whatif.rows],
        "ghost_frames": None if whatif.ghost_frames is None else len(whatif.ghost_frames),
    }
    if whatif.ghost_frames is not None:
        whatif.set_scrub(1.0)
        result["ghost_visible"] = controller.ghost is not None and controller.ghost.visible
    del ext, controller, whatif, stage, cache
    children_running = _children()
    manager.set_extension_enabled_immediate(EXT, False)
    for _ in range(10):
        app.update()
        time.sleep(0.05)
    gc.collect()
    result.update(
        children_while_running=len(children_running),
        children_after=_children(),
        threads_before=threads_before,
        threads_after=sorted(t.name for t in threading.enumerate()),
        fds_before=fds_before,
        fds_after=_fds(),
        instance_after=get_extension() is not None,
    )
    return result


def batch_suite(app, args: dict) -> dict:
    """Run a suite inside the Kit process the way the Isaac Sim batch runner does (twin_ext.kit.batch_runner):
    in-process, the stage driver as a sink of every twin run, one ``app.update()`` per display tick."""
    import json as _json

    app.extension_manager.set_extension_enabled_immediate(EXT, True)  # puts twin_ext on Kit's Python path
    _pump(app)
    from twin_ext.kit.batch_runner import run_suite_in_kit

    frames = [0]

    def update() -> None:
        frames[0] += 1
        app.update()

    summary = run_suite_in_kit(args["suite"], update=update, out=Path(args["out"]), progress=False)
    return {
        "passed": summary["passed"],
        "counts": summary["counts"],
        "frames": frames[0],
        "results": _json.loads(_json.dumps(summary["results"], default=str)),
    }
