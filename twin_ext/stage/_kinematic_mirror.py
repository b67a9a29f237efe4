# SPDX-License-Identifier: Apache-2.0
"""`UsdKinematicMirror`: show joint states on the robot's link prims in a USD stage (no physics).

The robot asset keeps its own prim hierarchy (links nested under links, or under plain Xforms); the
mirror writes each link's *local* transform so that its world pose equals `RobotModel.link_poses(q)`:

    local_L(q) = inv(X_parent_prim(q)) @ X_L(q)

where the link's USD parent prim is either a link itself or a static prim rigidly attached to its nearest
link ancestor (or to the asset root). Writes go through the Sdf layer API inside one `Sdf.ChangeBlock`,
which is the fast path for many xforms per frame.

Two ways to use it:
- ``UsdKinematicMirror.new_stage(model)``: an in-memory stage that references the robot asset (what the
  headless twin and the demo use), saved with `save` (current pose) or `save_animation` (time samples that
  play in usdview / Isaac Sim's timeline);
- ``UsdKinematicMirror(model, stage, robot_prim_path=...)``: an existing stage (e.g. Kit's) where the asset
  is already placed at ``robot_prim_path``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..robot import RobotModel, invert_transform

__all__ = ["UsdKinematicMirror"]

_OP = "xformOp:transform"


class UsdKinematicMirror:
    """Write link transforms for joint positions into a USD stage.

    Args:
        model: the robot; its ``link_paths`` are paths inside the asset file (``model.source``).
        stage: a ``pxr.Usd.Stage`` holding the asset at ``robot_prim_path``.
        robot_prim_path: where the asset's default prim sits on ``stage`` (default: the asset's own path,
            e.g. ``/panda``).
        layer: the ``pxr.Sdf.Layer`` to write into (default: the stage's root layer; Kit passes its
            session layer so the user's file is not dirtied).
    """

    def __init__(self, model: RobotModel, stage, *, robot_prim_path: str | None = None, layer=None) -> None:
        from pxr import Sdf, Usd, UsdGeom

        self.model = model
        self.stage = stage
        self.layer = layer if layer is not None else stage.GetRootLayer()
        self._asset_root = "/" + model.link_paths[0].strip("/").split("/")[0]
        self.robot_prim_path = robot_prim_path or self._asset_root
        self._paths = [Sdf.Path(self._to_stage(p)) for p in model.link_paths]
        self._anchor, self._offset = self._rest_structure()
        self._frames_written = 0
        missing = [str(p) for p in self._paths if not stage.GetPrimAtPath(p)]
        if missing:
            raise ValueError(
                f"the stage has no prims for links {missing[:3]}{'...' if len(missing) > 3 else ''}; fix: place the "
                f"robot asset {model.source} at {self.robot_prim_path} or pass robot_prim_path="
            )
        # Replace each link's authored ops by one matrix op, authored in our layer.
        with Usd.EditContext(stage, Usd.EditTarget(self.layer)):
            for path in self._paths:
                xformable = UsdGeom.Xformable(stage.GetPrimAtPath(path))
                xformable.ClearXformOpOrder()
                xformable.AddTransformOp(UsdGeom.XformOp.PrecisionDouble)
        self._attr_paths = [p.AppendProperty(_OP) for p in self._paths]

    # ---- construction ----------------------------------------------------------------------------
    @classmethod
    def new_stage(cls, model: RobotModel, *, robot_prim_path: str | None = None) -> UsdKinematicMirror:
        """An in-memory stage (Z up, metres) that references ``model.source`` at ``robot_prim_path``."""
        from pxr import Sdf, Usd, UsdGeom, UsdPhysics

        stage = Usd.Stage.CreateInMemory()
        UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
        UsdGeom.SetStageMetersPerUnit(stage, 1.0)
        UsdPhysics.SetStageKilogramsPerUnit(stage, 1.0)
        asset_root = "/" + model.link_paths[0].strip("/").split("/")[0]
        path = robot_prim_path or asset_root
        ancestor = Sdf.Path(path).GetParentPath()
        while ancestor != Sdf.Path.absoluteRootPath:
            UsdGeom.Xform.Define(stage, ancestor)
            ancestor = ancestor.GetParentPath()
        prim = stage.DefinePrim(path, "Xform")
        prim.GetReferences().AddReference(Sdf.Reference(os.path.abspath(model.source)))
        stage.SetDefaultPrim(stage.GetPrimAtPath("/" + path.strip("/").split("/")[0]))
        return cls(model, stage, robot_prim_path=path)

    def _to_stage(self, asset_path: str) -> str:
        return self.robot_prim_path.rstrip("/") + asset_path[len(self._asset_root) :]

    def _rest_structure(self) -> tuple[np.ndarray, np.ndarray]:
        """For each link: the index of the link its USD parent prim rides on (-1: the asset root) and the
        fixed transform from that link (or the asset's world) to the parent prim, from the asset's authored
        rest pose."""
        from pxr import Usd, UsdGeom

        asset = Usd.Stage.Open(self.model.source, Usd.Stage.LoadAll)
        cache = UsdGeom.XformCache()
        index = {p: i for i, p in enumerate(self.model.link_paths)}
        world_of = lambda prim: np.array(cache.GetLocalToWorldTransform(prim), dtype=np.float64).T  # noqa: E731
        anchor = np.full(self.model.nlink, -1, dtype=np.int64)
        offset = np.tile(np.eye(4), (self.model.nlink, 1, 1))
        for i, path in enumerate(self.model.link_paths):
            parent = asset.GetPrimAtPath(path).GetParent()
            walker = parent
            while walker and not walker.IsPseudoRoot() and str(walker.GetPath()) not in index:
                walker = walker.GetParent()
            if walker and str(walker.GetPath()) in index:
                anchor[i] = index[str(walker.GetPath())]
                base = world_of(walker)
            else:
                base = np.eye(4)  # link_poses are in the asset's world frame
            offset[i] = invert_transform(_rigid(base)) @ _rigid(world_of(parent))
        return anchor, offset

    # ---- writing ---------------------------------------------------------------------------------
    def local_transforms(self, q: np.ndarray) -> np.ndarray:
        """``[.., nlink, 4, 4]`` link transforms relative to their USD parent prims for ``q: [.., ndof]``."""
        poses = self.model.link_poses(q)
        parent_world = (
            np.where(
                (self._anchor >= 0)[:, None, None],
                poses[..., np.maximum(self._anchor, 0), :, :],
                np.eye(4),
            )
            @ self._offset
        )
        return invert_transform(parent_world) @ poses

    def write(self, q: np.ndarray, *, time: float | None = None) -> None:
        """Pose the robot at ``q: [ndof]`` rad|m (as the default value, or a time sample at ``time``,
        in the stage's time codes)."""
        from pxr import Gf, Sdf

        local = self.local_transforms(np.asarray(q, dtype=np.float64))
        with Sdf.ChangeBlock():
            for attr_path, m in zip(self._attr_paths, local, strict=False):
                spec = self.layer.GetAttributeAtPath(attr_path)
                value = Gf.Matrix4d(m.T.tolist())
                if time is None:
                    spec.default = value
                else:
                    self.layer.SetTimeSample(attr_path, float(time), value)
        self._frames_written += 1

    def write_animation(self, times_s: np.ndarray, q: np.ndarray, *, fps: float = 60.0) -> None:
        """Author time samples: ``q: [T, ndof]`` rad|m at ``times_s: [T]`` seconds (from 0); sets the stage's
        time range and ``timeCodesPerSecond = fps``."""
        times_s = np.asarray(times_s, dtype=np.float64)
        q = np.asarray(q, dtype=np.float64)
        if q.ndim != 2 or q.shape[0] != times_s.shape[0]:
            raise ValueError(
                f"q must be [T, {self.model.ndof}] with T = len(times_s); got {q.shape} and {times_s.shape}"
            )
        from pxr import Gf, Sdf

        local = self.local_transforms(q)
        codes = (times_s - times_s[0]) * fps
        with Sdf.ChangeBlock():
            for k, attr_path in enumerate(self._attr_paths):
                for code, m in zip(codes, local[:, k], strict=False):
                    self.layer.SetTimeSample(attr_path, float(code), Gf.Matrix4d(m.T.tolist()))
        self.stage.SetTimeCodesPerSecond(fps)
        self.stage.SetFramesPerSecond(fps)
        self.stage.SetStartTimeCode(float(codes[0]))
        self.stage.SetEndTimeCode(float(codes[-1]))
        self._frames_written += len(codes)

    def save(self, path: str | os.PathLike) -> Path:
        """Write the stage's root layer to ``path`` (``.usda`` for text); the asset is referenced by a path
        relative to the output file, so the folder can be moved together with the repository."""
        from pxr import Sdf

        out = Path(path).resolve()
        out.parent.mkdir(parents=True, exist_ok=True)
        layer = Sdf.Layer.CreateAnonymous(".usda")
        layer.TransferContent(self.stage.GetRootLayer())
        rel = os.path.relpath(os.path.abspath(self.model.source), out.parent)
        for prim_spec in _walk(layer.pseudoRoot):
            items = prim_spec.referenceList.prependedItems
            if items:
                prim_spec.referenceList.prependedItems = [
                    Sdf.Reference(
                        rel
                        if os.path.abspath(r.assetPath) == os.path.abspath(self.model.source)
                        # other absolute references (e.g. the what-if scene) move with the output folder too
                        else (os.path.relpath(r.assetPath, out.parent) if os.path.isabs(r.assetPath) else r.assetPath),
                        r.primPath,
                    )
                    for r in items
                ]
        layer.Export(str(out))
        return out

    @property
    def frames_written(self) -> int:
        """Number of poses written so far (live frames plus animation samples)."""
        return self._frames_written


def _rigid(m: np.ndarray) -> np.ndarray:
    out = m.copy()
    out[:3, :3] = m[:3, :3] / np.linalg.norm(m[:3, :3], axis=0)
    return out


def _walk(spec):
    for child in spec.nameChildren:
        yield child
        yield from _walk(child)
