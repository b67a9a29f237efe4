# SPDX-License-Identifier: Apache-2.0
"""`RobotSpheres`: each link's collision geometry as a conservative sphere set, and the self-collision pairs.

    >>> from twin_ext.robot import default_robot_path, load_robot
    >>> from twin_ext.collision import robot_spheres
    >>> spheres = robot_spheres(load_robot(default_robot_path()))
    >>> bool(spheres.excess.max() < 0.05)  # m: how much the spheres overstate a link, at most (Panda: 32.5 mm)
    True

The link geometry is every collider prim (``PhysicsCollisionAPI``: Mesh, Cube, Sphere, Capsule, Cylinder) whose
nearest link ancestor is that link, in the link's frame. Meshes and boxes are fitted with `fit_spheres`
(their union contains the surface); spheres are taken as they are; cylinders and capsules become a circumscribed
prism (plus the two end spheres of a capsule). ``excess[i]`` is the measured bound on how much the spheres of
link ``i`` reach beyond its geometry (`sphere_excess`): a reported distance is at most this much smaller than
the true one, and never larger.

Self-collision pairs are all pairs of links with geometry, minus (like MoveIt's allowed-collision matrix):
links on one rigid body or adjacent bodies (a joint between them; links welded to each other count as one
body), gripper fingers (two prismatic links on one parent: they close on each other by design), pairs closer
than ``home_clearance`` at the home pose (the drives' authored targets), and the ``allowed`` pairs given.
Links that no joint moves (the base) are not checked against the scene: they are mounted on it.

Fits are cached in ``$TWIN_EXT_CACHE_DIR/collision`` (default ``~/.cache/twin_ext/collision``), keyed by the
geometry and the sphere count.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from .. import TwinExtError
from .._paths import user_cache_dir
from ._spheres import fit_spheres, sphere_excess
from ._triangles import box_triangles, cylinder_triangles
from ._usd_shapes import axis_frame, collision_prims, gf_to_numpy, mesh_triangles

__all__ = ["RobotSpheres", "robot_spheres", "CollisionGeometryError"]

_FIT_VERSION = "1"


class CollisionGeometryError(TwinExtError, ValueError):
    """Collision geometry that cannot be built; the message names the link or pair and the fix."""


@dataclass(frozen=True, eq=False)
class RobotSpheres:
    """A robot's links as sphere sets (link frames, m) and the link pairs checked against each other.

    Attributes:
        link_names: ``[nlink]`` the robot's links (`RobotModel.link_names` order).
        sphere_link: ``[nsphere]`` int, the link each sphere belongs to (grouped by link, in link order).
        centres: ``[nsphere, 3]`` sphere centres in their link's frame, m.
        radii: ``[nsphere]`` m.
        excess: ``[nlink]`` m, how far each link's spheres reach beyond its geometry at most (0: no geometry).
        scene_links: ``[nlink]`` bool, links checked against the scene (those some joint moves, with geometry).
        self_pairs: ``[npair, 2]`` int, link pairs checked against each other.
        filtered_pairs: ``(link a, link b, why)`` for every pair of links with geometry that is not checked.
        notes: non-fatal findings (links without geometry, colliders outside any link).
    """

    link_names: tuple[str, ...]
    sphere_link: np.ndarray
    centres: np.ndarray
    radii: np.ndarray
    excess: np.ndarray
    scene_links: np.ndarray
    self_pairs: np.ndarray
    filtered_pairs: tuple[tuple[str, str, str], ...] = ()
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    @property
    def nsphere(self) -> int:
        return int(len(self.radii))

    def world_spheres(self, link_poses: np.ndarray) -> np.ndarray:
        """Sphere centres in the world for link poses ``[..., nlink, 4, 4]`` -> ``[..., nsphere, 3]`` m."""
        poses = np.asarray(link_poses)[..., self.sphere_link, :, :]
        return np.einsum("...ij,...j->...i", poses[..., :3, :3], self.centres) + poses[..., :3, 3]

    def link_distance(self, link_poses: np.ndarray, a: int, b: int) -> float:
        """Distance between the sphere sets of links ``a`` and ``b`` at poses ``[nlink, 4, 4]``, m."""
        c = self.world_spheres(link_poses)
        ia, ib = np.flatnonzero(self.sphere_link == a), np.flatnonzero(self.sphere_link == b)
        if not len(ia) or not len(ib):
            return float("inf")
        d = np.linalg.norm(c[ia, None] - c[None, ib], axis=2) - self.radii[ia, None] - self.radii[None, ib]
        return float(d.min())


def link_geometry(robot) -> tuple[list[np.ndarray], list[np.ndarray], list[str]]:
    """Per link, the collision triangles ``[m, 3, 3]`` and exact spheres ``[k, 4]`` (x, y, z, r) in its frame, m."""
    from pxr import Sdf, Usd, UsdGeom

    stage = Usd.Stage.Open(str(robot.source))
    if stage is None:
        raise CollisionGeometryError(f"cannot open the robot's USD {robot.source!r} to read its collision geometry")
    mpu = float(UsdGeom.GetStageMetersPerUnit(stage) or 1.0)
    cache = UsdGeom.XformCache(Usd.TimeCode.Default())
    link_paths = [Sdf.Path(p) for p in robot.link_paths]
    tris: list[list[np.ndarray]] = [[] for _ in link_paths]
    balls: list[list[np.ndarray]] = [[] for _ in link_paths]
    notes: list[str] = []
    prims, skipped = collision_prims(stage)
    notes += skipped
    link_world = {}
    for prim in prims:
        path = prim.GetPath()
        owners = [i for i, lp in enumerate(link_paths) if path.HasPrefix(lp)]
        if not owners:
            continue  # not part of the robot (e.g. a ground plane in the robot's file)
        i = max(owners, key=lambda k: link_paths[k].pathElementCount)
        if i not in link_world:
            link_world[i] = gf_to_numpy(cache.GetLocalToWorldTransform(stage.GetPrimAtPath(link_paths[i])))
        rel = np.linalg.inv(link_world[i]) @ gf_to_numpy(cache.GetLocalToWorldTransform(prim))
        rel[:3, :] *= mpu  # stage units -> m (the link frame's own translation is in the same units)
        lin, off = rel[:3, :3], rel[:3, 3]
        kind = prim.GetTypeName()
        if kind == "Mesh":
            pts, faces = mesh_triangles(prim)
            if len(faces):
                tris[i].append((pts @ lin.T + off)[faces])
        elif kind == "Cube":
            half = 0.5 * float(UsdGeom.Cube(prim).GetSizeAttr().Get())
            tris[i].append(box_triangles(np.full(3, half)) @ lin.T + off)
        elif kind == "Sphere":
            r = float(UsdGeom.Sphere(prim).GetRadiusAttr().Get()) * np.linalg.norm(lin, axis=0).max()
            balls[i].append(np.append(off, r))
        else:
            g = UsdGeom.Capsule(prim) if kind == "Capsule" else UsdGeom.Cylinder(prim)
            frame = axis_frame(str(g.GetAxisAttr().Get() or "Z"))
            r, h = float(g.GetRadiusAttr().Get()), 0.5 * float(g.GetHeightAttr().Get())
            local = cylinder_triangles(r, h) @ frame.T
            tris[i].append(local @ lin.T + off)
            if kind == "Capsule":
                rs = r * np.linalg.norm(lin, axis=0).max()
                for end in (-h, h):
                    balls[i].append(np.append(lin @ (frame[:, 2] * end) + off, rs))
    out_t = [np.concatenate(t, axis=0) if t else np.zeros((0, 3, 3)) for t in tris]
    out_b = [np.array(b).reshape(-1, 4) for b in balls]
    return out_t, out_b, notes


def _fit_link(tri: np.ndarray, balls: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray, float]:
    """``(centres, radii, excess)`` for one link, from the disk cache when the same fit was made before."""
    key = hashlib.sha1(f"{_FIT_VERSION}:{count}".encode())
    key.update(np.ascontiguousarray(tri, dtype=np.float64).tobytes())
    key.update(np.ascontiguousarray(balls, dtype=np.float64).tobytes())
    path = user_cache_dir("collision") / f"{key.hexdigest()[:24]}.npz"
    try:
        with np.load(path) as z:
            return z["centres"], z["radii"], float(z["excess"])
    except (OSError, KeyError, ValueError):
        pass
    centres, radii = fit_spheres(tri, count) if len(tri) else (np.zeros((0, 3)), np.zeros(0))
    excess = sphere_excess(centres, radii, tri) if len(tri) else 0.0
    if len(balls):
        centres = np.concatenate([centres, balls[:, :3]])
        radii = np.concatenate([radii, balls[:, 3]])
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez(tmp, centres=centres, radii=radii, excess=excess)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only cache only costs the refit next time
    return centres, radii, excess


def robot_spheres(
    robot,
    *,
    spheres_per_link: int = 12,
    allowed: Sequence[Sequence[str]] = (),
    home_clearance: float = 0.0,
) -> RobotSpheres:
    """Fit sphere sets to ``robot``'s links (`RobotModel`, read from ``robot.source``) and choose the self pairs.

    Args:
        spheres_per_link: spheres per link for meshes and boxes (more: tighter and slower).
        allowed: link-name pairs never checked against each other (``[["link5", "link7"]]``).
        home_clearance: pairs closer than this at the home pose are not checked, m (they would always be flagged).

    Raises:
        CollisionGeometryError: an ``allowed`` pair names an unknown link.
    """
    if spheres_per_link < 1:
        raise CollisionGeometryError(f"spheres_per_link must be >= 1, got {spheres_per_link}")
    tris, balls, notes = link_geometry(robot)
    n = robot.nlink
    link_of, cs, rs, excess = [], [], [], np.zeros(n)
    for i in range(n):
        c, r, e = _fit_link(tris[i], balls[i], spheres_per_link)
        cs.append(c)
        rs.append(r)
        link_of.append(np.full(len(r), i, dtype=np.int32))
        excess[i] = e
        if not len(r):
            notes.append(f"link {robot.link_names[i]!r} has no collision geometry: not checked")
    sphere_link = np.concatenate(link_of) if link_of else np.zeros(0, dtype=np.int32)
    centres = np.concatenate(cs) if cs else np.zeros((0, 3))
    radii = np.concatenate(rs) if rs else np.zeros(0)
    has = np.bincount(sphere_link, minlength=n) > 0

    moving = np.zeros(n, dtype=bool)
    body = np.arange(n)
    for i in range(n):
        p = int(robot.link_parent[i])
        moving[i] = robot.link_dof[i] >= 0 or (p >= 0 and moving[p])
        if p >= 0 and robot.link_dof[i] < 0:
            body[i] = body[p]  # welded to its parent: one rigid body
    body_parent = np.array([body[robot.link_parent[b]] if robot.link_parent[b] >= 0 else -1 for b in body])
    prismatic = np.array([t == 2 for t in robot.joint_type])  # JointType.PRISMATIC

    names = robot.link_names
    allowed_set = set()
    for pair in allowed:
        if len(pair) != 2:
            raise CollisionGeometryError(f"an allowed collision pair needs two link names, got {list(pair)}")
        for name in pair:
            if name not in names:
                raise CollisionGeometryError(
                    f"allowed collision pair {list(pair)}: unknown link {name!r}; the robot's links are {list(names)}"
                )
        allowed_set.add(frozenset(pair))

    home = robot.link_poses(robot.clip_to_limits(robot.drive_target))
    probe = RobotSpheres(names, sphere_link, centres, radii, excess, moving & has, np.zeros((0, 2), dtype=np.int32))
    pairs, filtered = [], []
    for a in range(n):
        for b in range(a + 1, n):
            if not (has[a] and has[b]):
                continue
            ba, bb = body[a], body[b]
            if ba == bb or body_parent[ba] == bb or body_parent[bb] == ba:
                filtered.append((names[a], names[b], "adjacent"))
            elif prismatic[ba] and prismatic[bb] and body_parent[ba] == body_parent[bb]:
                filtered.append((names[a], names[b], "gripper fingers"))
            elif frozenset((names[a], names[b])) in allowed_set:
                filtered.append((names[a], names[b], "allowed"))
            elif (d := probe.link_distance(home, a, b)) <= home_clearance:
                filtered.append((names[a], names[b], f"{d * 1e3:.1f} mm apart at home"))
            else:
                pairs.append((a, b))
    return RobotSpheres(
        names,
        sphere_link,
        centres,
        radii,
        excess,
        moving & has,
        np.array(pairs, dtype=np.int32).reshape(-1, 2),
        tuple(filtered),
        tuple(notes),
    )
