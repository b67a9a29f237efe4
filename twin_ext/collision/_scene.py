# SPDX-License-Identifier: Apache-2.0
"""`SceneColliders`: the obstacles of a USD stage (UsdPhysics colliders) in the world frame, SI units.

    >>> from twin_ext.collision import load_scene
    >>> scene = load_scene(demo_scene_path())                      # doctest: +SKIP
    >>> [c.path for c in scene.colliders]                          # doctest: +SKIP
    ['/World/Cell/Table/Top', '/World/Cell/Fixture', ...]

Every ``Cube``, ``Sphere``, ``Capsule``, ``Cylinder`` and ``Mesh`` prim with ``PhysicsCollisionAPI`` under a root
prim (or the whole stage minus the robot) becomes a `Collider` with its world transform at the default time:

=========  ==========================================================  =============================================
kind       ``size`` (m)                                               scale handling
=========  ==========================================================  =============================================
box        half extents ``(hx, hy, hz)`` in the collider frame         exact for any per-axis scale
sphere     ``(r, 0, 0)``                                              a non-uniform scale uses the largest factor
capsule    ``(r, h/2, 0)``: segment along the frame's z, half length   radius x the largest cross-axis factor
cylinder   ``(r, h/2, 0)``: along the frame's z                       radius x the largest cross-axis factor
mesh       ``(0, 0, 0)``; ``points`` and ``triangles`` in the world   exact (points are transformed)
=========  ==========================================================  =============================================

A largest-factor radius makes the shape bigger than authored (conservative: it never hides a collision); a note
says so. ``pose`` is the collider frame in the world (rigid: scale is folded into ``size``), its z axis the
shape's ``axis`` attribute.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import TwinExtError
from ._usd_shapes import axis_frame, collision_prims, gf_to_numpy, mesh_triangles, rigid_and_scale

__all__ = ["Collider", "SceneColliders", "SceneError", "load_scene"]

KINDS = ("box", "sphere", "capsule", "cylinder", "mesh")


class SceneError(TwinExtError, ValueError):
    """A scene that cannot be used; the message names the file or prim and the fix."""


@dataclass(frozen=True, eq=False)
class Collider:
    """One obstacle: ``path`` (prim path), ``kind`` (see the module table), ``pose`` ``[4, 4]`` collider frame in
    the world (m), ``size`` ``[3]`` m, and for meshes ``points`` ``[n, 3]`` m (world) and ``triangles`` ``[m, 3]``."""

    path: str
    kind: str
    pose: np.ndarray
    size: np.ndarray
    points: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    triangles: np.ndarray = field(default_factory=lambda: np.zeros((0, 3), dtype=np.int64))

    def bounding_sphere(self) -> tuple[np.ndarray, float]:
        """``(centre [3] m, radius m)`` of a sphere that contains the collider (world frame)."""
        if self.kind == "mesh":
            lo, hi = self.points.min(axis=0), self.points.max(axis=0)
            c = (lo + hi) / 2
            return c, float(np.linalg.norm(self.points - c, axis=1).max())
        r, h = float(self.size[0]), float(self.size[1])
        radius = {
            "box": float(np.linalg.norm(self.size)),
            "sphere": r,
            "capsule": r + h,
            "cylinder": float(np.hypot(r, h)),
        }[self.kind]
        return self.pose[:3, 3].copy(), radius


@dataclass(frozen=True, eq=False)
class SceneColliders:
    """The obstacles of a scene: ``colliders`` in stage order, ``source`` (file or "<stage>"), the ``root`` prim
    searched, and ``notes`` (skipped prims, enlarged shapes)."""

    colliders: tuple[Collider, ...]
    source: str = ""
    root: str = ""
    notes: tuple[str, ...] = ()

    @property
    def paths(self) -> tuple[str, ...]:
        """``[ncollider]`` prim paths (the names verdicts report)."""
        return tuple(c.path for c in self.colliders)


def load_scene(stage_or_path, *, root: str = "", exclude: tuple[str, ...] = ()) -> SceneColliders:
    """Read the colliders of a USD stage or file (see the module docstring).

    Args:
        stage_or_path: a ``Usd.Stage`` or a path to a USD file.
        root: prim path to search under ("" = the whole stage).
        exclude: prim paths whose subtrees are left out (the robot's own prims when it is on the same stage).

    Raises:
        SceneError: unreadable file, missing root prim, or a malformed collider (naming it and the fix).
    """
    from pxr import Usd, UsdGeom

    if isinstance(stage_or_path, (str, Path)):
        path = Path(stage_or_path)
        if not path.is_file():
            raise SceneError(f"scene file {str(path)!r} does not exist; fix: set [whatif] scene to a USD file or ''")
        stage = Usd.Stage.Open(str(path))
        if stage is None:
            raise SceneError(f"scene file {str(path)!r} could not be opened as USD")
        source = str(path)
    else:
        stage, source = stage_or_path, "<stage>"
    try:
        prims, notes = collision_prims(stage, root=root, exclude=exclude)
    except KeyError:
        raise SceneError(
            f"the scene {source} has no prim {root!r}; fix: set [whatif] scene_root to an existing prim path "
            "or '' for the whole stage"
        ) from None
    mpu = float(UsdGeom.GetStageMetersPerUnit(stage) or 1.0)
    cache = UsdGeom.XformCache(Usd.TimeCode.Default())
    colliders = []
    for prim in prims:
        x = gf_to_numpy(cache.GetLocalToWorldTransform(prim))
        x[:3, 3] *= mpu
        colliders.append(_collider(prim, x, mpu, notes))
    return SceneColliders(tuple(colliders), source=source, root=root, notes=tuple(notes))


def _collider(prim, x: np.ndarray, mpu: float, notes: list[str]) -> Collider:
    from pxr import UsdGeom

    path = str(prim.GetPath())
    kind_of = {"Cube": "box", "Sphere": "sphere", "Capsule": "capsule", "Cylinder": "cylinder", "Mesh": "mesh"}
    kind = kind_of[prim.GetTypeName()]
    if kind == "mesh":
        pts, tris = mesh_triangles(prim)
        if len(tris) == 0:
            raise SceneError(f"{path}: a collision mesh without faces; fix: give it faces or remove its CollisionAPI")
        lin = x[:3, :3] * mpu
        world = pts @ lin.T + x[:3, 3]
        return Collider(path, kind, np.eye(4), np.zeros(3), world, tris)
    rigid, scale = rigid_and_scale(x)
    scale = scale * mpu
    if kind == "box":
        size = float(UsdGeom.Cube(prim).GetSizeAttr().Get())
        return Collider(path, kind, rigid, 0.5 * size * scale)
    if kind == "sphere":
        r = float(UsdGeom.Sphere(prim).GetRadiusAttr().Get())
        if np.ptp(scale) > 1e-9 * scale.max():
            notes.append(f"{path}: non-uniform scale {scale.tolist()} on a sphere; its largest factor is used")
        return Collider(path, kind, rigid, np.array([r * scale.max(), 0.0, 0.0]))
    gprim = UsdGeom.Capsule(prim) if kind == "capsule" else UsdGeom.Cylinder(prim)
    axis = str(gprim.GetAxisAttr().Get() or "Z")
    frame = axis_frame(axis)
    pose = rigid.copy()
    pose[:3, :3] = rigid[:3, :3] @ frame
    along = int("XYZ".index(axis))
    across = [k for k in range(3) if k != along]
    r = float(gprim.GetRadiusAttr().Get())
    h = float(gprim.GetHeightAttr().Get())
    if abs(scale[across[0]] - scale[across[1]]) > 1e-9 * scale.max():
        notes.append(f"{path}: non-uniform cross-section scale on a {kind}; its largest factor is used")
    return Collider(path, kind, pose, np.array([r * scale[across].max(), 0.5 * h * scale[along], 0.0]))
