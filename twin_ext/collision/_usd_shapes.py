# SPDX-License-Identifier: Apache-2.0
"""UsdGeom collision prims -> shapes in NumPy (pxr is imported by the callers, lazily).

A prim counts as a collider when it is one of the supported gprims (Cube, Sphere, Capsule, Cylinder, Mesh), has
``PhysicsCollisionAPI`` applied and ``physics:collisionEnabled`` is not false. Transforms are Gf matrices turned
into the house's column-vector convention (``p_world = X @ [p, 1]``).
"""

from __future__ import annotations

import numpy as np

__all__ = ["SUPPORTED_TYPES", "collision_prims", "gf_to_numpy", "mesh_triangles", "rigid_and_scale"]

SUPPORTED_TYPES = ("Cube", "Sphere", "Capsule", "Cylinder", "Mesh")


def gf_to_numpy(matrix) -> np.ndarray:
    """A ``Gf.Matrix4d`` (row vectors) as a ``[4, 4]`` column-vector transform."""
    return np.array(matrix, dtype=np.float64).T


def rigid_and_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split ``X = R S`` (rotation times per-axis scale, no shear assumed) -> ``(rigid [4, 4], scale [3])``."""
    lin = x[:3, :3]
    scale = np.linalg.norm(lin, axis=0)
    scale = np.where(scale > 0, scale, 1.0)
    rot = lin / scale
    if np.linalg.det(rot) < 0:  # a mirror: fold it into the scale of the first axis
        rot[:, 0] *= -1
        scale[0] *= -1
    rigid = np.eye(4)
    rigid[:3, :3] = rot
    rigid[:3, 3] = x[:3, 3]
    return rigid, np.abs(scale)


def collision_prims(stage, *, root: str = "", exclude: tuple[str, ...] = ()) -> tuple[list, list[str]]:
    """Collider prims of ``stage`` under ``root`` ("" = the whole stage), skipping those under ``exclude`` paths.

    Returns:
        ``(prims, notes)``: supported collider prims in stage order, and one note per skipped collider
        (unsupported type, collision disabled).
    """
    from pxr import Sdf, Usd, UsdPhysics

    start = stage.GetPseudoRoot() if not root else stage.GetPrimAtPath(root)
    if not start or not start.IsValid():
        raise KeyError(root)
    excluded = [Sdf.Path(p) for p in exclude if p]
    prims, notes = [], []
    for prim in Usd.PrimRange(start):
        if not prim.HasAPI(UsdPhysics.CollisionAPI):
            continue
        path = prim.GetPath()
        if any(path.HasPrefix(e) for e in excluded):
            continue
        enabled = UsdPhysics.CollisionAPI(prim).GetCollisionEnabledAttr().Get()
        if enabled is False:
            notes.append(f"{path}: physics:collisionEnabled = false, skipped")
            continue
        if prim.GetTypeName() not in SUPPORTED_TYPES:
            notes.append(
                f"{path}: a {prim.GetTypeName() or 'typeless prim'} collider is not supported (supported: "
                f"{', '.join(SUPPORTED_TYPES)}), skipped"
            )
            continue
        prims.append(prim)
    return prims, notes


def mesh_triangles(prim) -> np.ndarray:
    """``[m, 3]`` vertex indices and the points of a UsdGeom.Mesh, fan-triangulated: ``(points [n, 3], tris)``."""
    from pxr import UsdGeom

    mesh = UsdGeom.Mesh(prim)
    points = np.asarray(mesh.GetPointsAttr().Get() or [], dtype=np.float64).reshape(-1, 3)
    counts = np.asarray(mesh.GetFaceVertexCountsAttr().Get() or [], dtype=np.int64)
    indices = np.asarray(mesh.GetFaceVertexIndicesAttr().Get() or [], dtype=np.int64)
    tris = []
    offset = 0
    for c in counts:
        face = indices[offset : offset + c]
        offset += c
        for k in range(1, c - 1):
            tris.append((face[0], face[k], face[k + 1]))
    tris = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    if len(tris) and (tris.max() >= len(points) or tris.min() < 0):
        raise ValueError(f"{prim.GetPath()}: faceVertexIndices refer to points that do not exist")
    return points, tris


def axis_frame(axis: str) -> np.ndarray:
    """``[3, 3]`` rotation whose z column is the prim's ``axis`` ("X", "Y" or "Z")."""
    if axis == "X":
        return np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    if axis == "Y":
        return np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    return np.eye(3)
