# SPDX-License-Identifier: Apache-2.0
"""The what-if scene on a stage: the obstacle scene referenced beside the robot, and a first-contact marker.

    reference_scene(stage, "usd/scenes/pick_place_cell.usda")            # at /World/Scene (physics-free copy)
    mark_contact(stage, (0.69, 0.0, 0.15), label="hand vs /Cell/Fixture at 5.03 s")

Both write into ``layer`` (default: the stage's edit target), so Kit can keep them in the session layer. The
marker is a small red sphere (``radius`` m) with its label in ``doc`` and a ``twin:contact`` custom data block;
with ``time`` it is shown only from that time code on (a visibility time sample), so an animated ``.usda``
shows it appear at the moment of contact.
"""

from __future__ import annotations

import os

__all__ = ["mark_contact", "reference_scene"]


def reference_scene(stage, scene_path: str | os.PathLike, *, prim_path: str = "/World/Scene", layer=None):
    """Reference the scene file at ``prim_path`` (created if missing); returns the prim."""
    from pxr import Sdf, Usd, UsdGeom

    target = Usd.EditTarget(layer) if layer is not None else stage.GetEditTarget()
    with Usd.EditContext(stage, target):
        _define_ancestors(stage, prim_path)
        prim = stage.DefinePrim(prim_path, "Xform")
        prim.GetReferences().AddReference(Sdf.Reference(os.path.abspath(str(scene_path))))
        UsdGeom.Xformable(prim)
    return prim


def mark_contact(
    stage,
    point,
    *,
    prim_path: str = "/World/twin_whatif/first_contact",
    label: str = "",
    radius: float = 0.015,
    time: float | None = None,
    layer=None,
):
    """A red sphere at ``point`` (``[3]`` m, world) marking a predicted first contact; returns the prim.

    Args:
        label: what touched what, and when (stored as the prim's ``doc``).
        time: time code from which the marker is visible (None: always).
    """
    from pxr import Gf, Usd, UsdGeom

    mpu = UsdGeom.GetStageMetersPerUnit(stage) or 1.0
    target = Usd.EditTarget(layer) if layer is not None else stage.GetEditTarget()
    with Usd.EditContext(stage, target):
        _define_ancestors(stage, prim_path)
        sphere = UsdGeom.Sphere.Define(stage, prim_path)
        sphere.CreateRadiusAttr().Set(float(radius) / mpu)
        sphere.CreateDisplayColorAttr().Set([Gf.Vec3f(0.9, 0.1, 0.1)])
        xf = UsdGeom.Xformable(sphere)
        xf.ClearXformOpOrder()
        xf.AddTranslateOp().Set(Gf.Vec3d(*(float(x) / mpu for x in point)))
        prim = sphere.GetPrim()
        prim.SetDocumentation(label)
        prim.SetCustomDataByKey("twin:contact", label)
        vis = sphere.CreateVisibilityAttr()
        if time is not None:
            vis.Set(UsdGeom.Tokens.invisible, Usd.TimeCode(0.0))
            vis.Set(UsdGeom.Tokens.inherited, Usd.TimeCode(float(time)))
        else:
            vis.Set(UsdGeom.Tokens.inherited)
    return prim


def _define_ancestors(stage, prim_path: str) -> None:
    from pxr import Sdf, UsdGeom

    ancestor = Sdf.Path(prim_path).GetParentPath()
    missing = []
    while ancestor != Sdf.Path.absoluteRootPath:
        if not stage.GetPrimAtPath(ancestor):
            missing.append(ancestor)
        ancestor = ancestor.GetParentPath()
    for path in reversed(missing):
        UsdGeom.Xform.Define(stage, path)
