# SPDX-License-Identifier: Apache-2.0
"""`GhostRobot`: a translucent, physics-free copy of the robot that shows a predicted pose (what-if).

The ghost references the same asset under its own prim, and everything it changes goes into one layer
(Kit passes the session layer, so the user's file stays clean):
- physics off: ``physxArticulation:articulationEnabled``, ``physics:rigidBodyEnabled``,
  ``physics:collisionEnabled`` and ``physics:jointEnabled`` set to false on its prims — otherwise PhysX would
  simulate a second robot whose colliders hit the real one;
- translucent: a ``UsdPreviewSurface`` material (colour, opacity) bound to the ghost with
  ``strongerThanDescendants`` (overrides the asset's own bindings), plus ``primvars:displayOpacity`` /
  ``displayColor`` on its meshes for viewers without materials;
- posed by its own `UsdKinematicMirror`.
"""

from __future__ import annotations

import os

import numpy as np

from ..robot import RobotModel
from ._kinematic_mirror import UsdKinematicMirror

__all__ = ["GhostRobot"]


class GhostRobot:
    """A ghost of ``model`` on ``stage`` at ``prim_path``.

    Args:
        model: the robot (its asset is ``model.source``).
        stage: a ``pxr.Usd.Stage``.
        prim_path: where the ghost goes (created if missing).
        layer: the layer every edit is authored in (default: the stage's session layer).
        color: RGB in [0, 1]. opacity: in [0, 1].
    """

    def __init__(
        self,
        model: RobotModel,
        stage,
        *,
        prim_path: str = "/World/twin_ghost",
        layer=None,
        color: tuple[float, float, float] = (0.25, 0.6, 1.0),
        opacity: float = 0.35,
    ) -> None:
        from pxr import Gf, Sdf, Usd, UsdGeom, UsdShade

        self.model = model
        self.stage = stage
        self.prim_path = prim_path
        self.layer = layer if layer is not None else stage.GetSessionLayer()
        with Usd.EditContext(stage, Usd.EditTarget(self.layer)):
            ancestor = Sdf.Path(prim_path).GetParentPath()
            while ancestor != Sdf.Path.absoluteRootPath:
                if not stage.GetPrimAtPath(ancestor):
                    UsdGeom.Xform.Define(stage, ancestor)
                ancestor = ancestor.GetParentPath()
            root = stage.DefinePrim(prim_path, "Xform")
            root.GetReferences().AddReference(Sdf.Reference(os.path.abspath(model.source)))
            self._disable_physics(root)
            material = UsdShade.Material.Define(stage, f"{prim_path}/GhostLook")
            shader = UsdShade.Shader.Define(stage, f"{prim_path}/GhostLook/Surface")
            shader.CreateIdAttr("UsdPreviewSurface")
            shader.CreateInput("diffuseColor", Sdf.ValueTypeNames.Color3f).Set(Gf.Vec3f(*color))
            shader.CreateInput("opacity", Sdf.ValueTypeNames.Float).Set(float(opacity))
            shader.CreateInput("roughness", Sdf.ValueTypeNames.Float).Set(0.6)
            material.CreateSurfaceOutput().ConnectToSource(shader.ConnectableAPI(), "surface")
            UsdShade.MaterialBindingAPI.Apply(root).Bind(material, UsdShade.Tokens.strongerThanDescendants)
            for prim in Usd.PrimRange(root):
                if prim.IsA(UsdGeom.Gprim):
                    gprim = UsdGeom.Gprim(prim)
                    gprim.CreateDisplayColorAttr().Set([Gf.Vec3f(*color)])
                    gprim.CreateDisplayOpacityAttr().Set([float(opacity)])
        self.mirror = UsdKinematicMirror(model, stage, robot_prim_path=prim_path, layer=self.layer)
        self.hide()

    def _disable_physics(self, root) -> None:
        from pxr import Sdf, Usd

        def set_bool(prim, name: str) -> None:
            prim.CreateAttribute(name, Sdf.ValueTypeNames.Bool).Set(False)

        for prim in Usd.PrimRange(root):
            schemas = set(prim.GetPrimTypeInfo().GetAppliedAPISchemas())
            type_name = str(prim.GetTypeName())
            if "PhysicsArticulationRootAPI" in schemas:
                set_bool(prim, "physxArticulation:articulationEnabled")
            if "PhysicsRigidBodyAPI" in schemas:
                set_bool(prim, "physics:rigidBodyEnabled")
            if "PhysicsCollisionAPI" in schemas:
                set_bool(prim, "physics:collisionEnabled")
            if type_name.startswith("Physics") and type_name.endswith("Joint"):
                set_bool(prim, "physics:jointEnabled")

    def show(self, q: np.ndarray) -> None:
        """Pose the ghost at ``q: [ndof]`` rad|m and make it visible."""
        from pxr import Usd, UsdGeom

        self.mirror.write(np.asarray(q, dtype=np.float64))
        with Usd.EditContext(self.stage, Usd.EditTarget(self.layer)):
            UsdGeom.Imageable(self.stage.GetPrimAtPath(self.prim_path)).MakeVisible()

    def mark_contact(self, point, *, label: str = "") -> None:
        """Mark a predicted first contact at ``point`` (``[3]`` m, world) with a small red sphere beside the ghost,
        or remove the marker (``point`` None)."""
        path = f"{self.prim_path}_contact"
        if point is None:
            spec = self.layer.GetPrimAtPath(path)
            if spec:
                parent = spec.nameParent if spec.nameParent else self.layer.pseudoRoot
                del parent.nameChildren[spec.name]
            return
        from ._scene_overlay import mark_contact

        mark_contact(self.stage, point, prim_path=path, label=label, layer=self.layer)

    def hide(self) -> None:
        """Keep the ghost but do not draw it."""
        from pxr import Usd, UsdGeom

        with Usd.EditContext(self.stage, Usd.EditTarget(self.layer)):
            UsdGeom.Imageable(self.stage.GetPrimAtPath(self.prim_path)).MakeInvisible()

    @property
    def visible(self) -> bool:
        from pxr import UsdGeom

        return (
            UsdGeom.Imageable(self.stage.GetPrimAtPath(self.prim_path)).ComputeVisibility() != UsdGeom.Tokens.invisible
        )

    def remove(self) -> None:
        """Delete the ghost (and its contact marker) from the stage (its specs in the layer)."""
        self.mark_contact(None)
        spec = self.layer.GetPrimAtPath(self.prim_path)
        if spec:
            parent = spec.nameParent if spec.nameParent else self.layer.pseudoRoot
            del parent.nameChildren[spec.name]
