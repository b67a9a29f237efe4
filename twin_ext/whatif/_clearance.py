# SPDX-License-Identifier: Apache-2.0
"""Clearance of recorded rollout states: every link's distance to the scene and to the other links, in Warp.

    checker = ClearanceChecker(robot, robot_spheres(robot), load_scene(path), min_clearance=0.01)
    result = checker.evaluate(rollout.q, rollout.t)      # q: [nworld, nrecord, ndof] -> Clearance

One batched kernel over the recorded states (one thread per world and record, the least invasive choice: the
rollout kernel is untouched, and the check costs one pass over states already recorded; the measurement is in
docs/whatif.md "Clearance"). With the what-if worker pool each worker runs it on the worlds it has just rolled
out (`ClearanceKernel`, built from the checker's NumPy `ClearanceChecker.spec`), so both cores share it; the
states are independent, so the split changes no result. Per state the thread computes the link poses (forward
kinematics of the model's joint frames), moves the link spheres into the world and takes, for each link, the
smallest signed distance to any scene collider (exact signed distance functions for boxes, spheres, capsules and cylinders; ``wp.Mesh``
closest-point queries with its BVH and winding-number sign for meshes) and to the spheres of every link it is
paired with. Bounding spheres per link and per collider skip work that cannot beat the current minimum.
Distances are float32 (sub-micrometre at arm scale); beyond ``cutoff`` they are reported as ``cutoff``.

Distances are those of the sphere sets, so they are conservative: never larger than the true distance, smaller
by at most the link's `RobotSpheres.excess`.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass

import numpy as np

from ..robot import JointType, RobotModel, invert_transform
from ._kernels import init_warp

__all__ = ["CUTOFF_M", "HORIZON_M", "SELF_CUTOFF_M", "Clearance", "ClearanceChecker", "ClearanceKernel"]

CUTOFF_M = 1.0
"""Distances to the scene are exact up to this, m; farther ones are reported as this value."""
HORIZON_M = 0.1
"""Scene distances are exact below ``max(this, 2 * min_clearance)``, m; beyond it a link may report a lower
bound (its bounding sphere's distance): never more than the true distance, so far links stay cheap."""
SELF_CUTOFF_M = 0.05
"""Distances between links are computed exactly below ``max(this, 2 * min_clearance)``, m; beyond it a link
reports its scene distance only (arm links are always within decimetres of each other: exact far self distances
would cost most of the kernel and tell nothing)."""

_KIND = {"box": 0, "sphere": 1, "capsule": 2, "cylinder": 3, "mesh": 4}
_lock = threading.Lock()
_kernel = None


def _matrix_to_xyzw(rot: np.ndarray) -> np.ndarray:
    """``[n, 3, 3]`` rotations -> ``[n, 4]`` unit quaternions in Warp's (x, y, z, w) order (Shepperd's method)."""
    rot = np.asarray(rot, dtype=np.float64).reshape(-1, 3, 3)
    out = np.empty((len(rot), 4))
    for i, m in enumerate(rot):
        tr = np.trace(m)
        k = int(np.argmax([tr, m[0, 0], m[1, 1], m[2, 2]]))
        if k == 0:
            w = np.sqrt(1.0 + tr) / 2
            x, y, z = (m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w), (m[1, 0] - m[0, 1]) / (4 * w)
        elif k == 1:
            x = np.sqrt(1.0 + 2 * m[0, 0] - tr) / 2
            w, y, z = (m[2, 1] - m[1, 2]) / (4 * x), (m[0, 1] + m[1, 0]) / (4 * x), (m[0, 2] + m[2, 0]) / (4 * x)
        elif k == 2:
            y = np.sqrt(1.0 + 2 * m[1, 1] - tr) / 2
            w, x, z = (m[0, 2] - m[2, 0]) / (4 * y), (m[0, 1] + m[1, 0]) / (4 * y), (m[1, 2] + m[2, 1]) / (4 * y)
        else:
            z = np.sqrt(1.0 + 2 * m[2, 2] - tr) / 2
            w, x, y = (m[1, 0] - m[0, 1]) / (4 * z), (m[0, 2] + m[2, 0]) / (4 * z), (m[1, 2] + m[2, 1]) / (4 * z)
        q = np.array([x, y, z, w])
        out[i] = q / np.linalg.norm(q)
    return out


def _build_kernel():
    wp = init_warp()

    @wp.func
    def box_sdf(p: wp.vec3, h: wp.vec3) -> float:
        qx = wp.abs(p[0]) - h[0]
        qy = wp.abs(p[1]) - h[1]
        qz = wp.abs(p[2]) - h[2]
        outside = wp.length(wp.vec3(wp.max(qx, 0.0), wp.max(qy, 0.0), wp.max(qz, 0.0)))
        return outside + wp.min(wp.max(qx, wp.max(qy, qz)), 0.0)

    @wp.func
    def capsule_sdf(p: wp.vec3, r: float, h: float) -> float:
        z = wp.clamp(p[2], -h, h)
        return wp.length(p - wp.vec3(0.0, 0.0, z)) - r

    @wp.func
    def cylinder_sdf(p: wp.vec3, r: float, h: float) -> float:
        dx = wp.length(wp.vec2(p[0], p[1])) - r
        dz = wp.abs(p[2]) - h
        outside = wp.length(wp.vec2(wp.max(dx, 0.0), wp.max(dz, 0.0)))
        return outside + wp.min(wp.max(dx, dz), 0.0)

    @wp.func
    def segment_distance(p1: wp.vec3, q1: wp.vec3, p2: wp.vec3, q2: wp.vec3) -> float:
        # closest points of two segments (Ericson, Real-Time Collision Detection 5.1.9)
        d1 = q1 - p1
        d2 = q2 - p2
        r = p1 - p2
        a = wp.dot(d1, d1)
        e = wp.dot(d2, d2)
        f = wp.dot(d2, r)
        sc = float(0.0)  # noqa: UP018 - Warp needs a dynamic variable, not a constant
        tc = float(0.0)  # noqa: UP018
        if a <= 1e-12 and e <= 1e-12:
            return wp.length(r)
        if a <= 1e-12:
            tc = wp.clamp(f / e, 0.0, 1.0)
        else:
            c = wp.dot(d1, r)
            if e <= 1e-12:
                sc = wp.clamp(-c / a, 0.0, 1.0)
            else:
                b = wp.dot(d1, d2)
                den = a * e - b * b
                if den > 1e-12:
                    sc = wp.clamp((b * f - c * e) / den, 0.0, 1.0)
                tc = (b * sc + f) / e
                if tc < 0.0:
                    tc = 0.0
                    sc = wp.clamp(-c / a, 0.0, 1.0)
                elif tc > 1.0:
                    tc = 1.0
                    sc = wp.clamp((b - c) / a, 0.0, 1.0)
        return wp.length((p1 + d1 * sc) - (p2 + d2 * tc))

    @wp.func
    def collider_distance(
        kind: int, inv: wp.transform, size: wp.vec3, mesh: wp.uint64, c: wp.vec3, r: float, cutoff: float
    ) -> float:
        p = wp.transform_point(inv, c)
        d = cutoff
        if kind == 0:
            d = box_sdf(p, size) - r
        elif kind == 1:
            d = wp.length(p) - size[0] - r
        elif kind == 2:
            d = capsule_sdf(p, size[0], size[1]) - r
        elif kind == 3:
            d = cylinder_sdf(p, size[0], size[1]) - r
        else:
            hit = wp.mesh_query_point_sign_winding_number(mesh, p, cutoff + r, 2.0, 0.5)
            if hit.result:
                cp = wp.mesh_eval_position(mesh, hit.face, hit.u, hit.v)
                d = wp.length(p - cp) * hit.sign - r
        return d

    @wp.kernel(enable_backward=False)
    def clearance_kernel(
        # Model:
        link_parent: wp.array(dtype=wp.int32),
        link_dof: wp.array(dtype=wp.int32),
        link_kind: wp.array(dtype=wp.int32),
        link_axis: wp.array(dtype=wp.vec3),
        parent_frame: wp.array(dtype=wp.transform),
        child_inv: wp.array(dtype=wp.transform),
        sphere_start: wp.array(dtype=wp.int32),
        sphere_centre: wp.array(dtype=wp.vec3),
        sphere_radius: wp.array(dtype=wp.float32),
        bound_centre: wp.array(dtype=wp.vec3),
        bound_radius: wp.array(dtype=wp.float32),
        cap_p: wp.array(dtype=wp.vec3),
        cap_q: wp.array(dtype=wp.vec3),
        cap_r: wp.array(dtype=wp.float32),
        scene_link: wp.array(dtype=wp.int32),
        col_kind: wp.array(dtype=wp.int32),
        col_inv: wp.array(dtype=wp.transform),
        col_size: wp.array(dtype=wp.vec3),
        col_mesh: wp.array(dtype=wp.uint64),
        col_centre: wp.array(dtype=wp.vec3),
        col_radius: wp.array(dtype=wp.float32),
        pair_a: wp.array(dtype=wp.int32),
        pair_b: wp.array(dtype=wp.int32),
        cutoff: float,
        self_cutoff: float,
        horizon: float,
        nrecord: int,
        # Data in:
        q_in: wp.array2d(dtype=wp.float32),
        world_variant: wp.array(dtype=wp.int32),
        part_start: wp.array(dtype=wp.int32),
        part_link: wp.array(dtype=wp.int32),
        part_centre: wp.array(dtype=wp.vec3),
        part_radius: wp.array(dtype=wp.float32),
        # Scratch:
        pose: wp.array2d(dtype=wp.transform),
        bound_w: wp.array2d(dtype=wp.vec3),
        cap_p_w: wp.array2d(dtype=wp.vec3),
        cap_q_w: wp.array2d(dtype=wp.vec3),
        # Data out:
        dist_out: wp.array2d(dtype=wp.float32),
        which_out: wp.array2d(dtype=wp.int32),
    ):
        s = wp.tid()
        nlink = link_parent.shape[0]
        ncol = col_kind.shape[0]
        for i in range(nlink):
            m = wp.transform_identity()
            if link_kind[i] == 1:
                m = wp.transform(wp.vec3(0.0), wp.quat_from_axis_angle(link_axis[i], q_in[s, link_dof[i]]))
            elif link_kind[i] == 2:
                m = wp.transform(link_axis[i] * q_in[s, link_dof[i]], wp.quat_identity())
            x = wp.transform_multiply(wp.transform_multiply(parent_frame[i], m), child_inv[i])
            p = link_parent[i]
            if p >= 0:
                x = wp.transform_multiply(pose[s, p], x)
            pose[s, i] = x
            # each link's bounding sphere centre and capsule in the world once per state, not once per pair
            bound_w[s, i] = wp.transform_point(x, bound_centre[i])
            cap_p_w[s, i] = wp.transform_point(x, cap_p[i])
            cap_q_w[s, i] = wp.transform_point(x, cap_q[i])
            dist_out[s, i] = cutoff
            which_out[s, i] = -1
        for i in range(nlink):
            if scene_link[i] == 0:
                continue
            bc = bound_w[s, i]
            best = cutoff
            who = int(-1)  # noqa: UP018 - a dynamic variable for Warp
            for j in range(ncol):
                if wp.length(bc - col_centre[j]) - bound_radius[i] - col_radius[j] >= best:
                    continue
                # the link's bounding sphere against the collider: a lower bound for every sphere of the link
                low = collider_distance(col_kind[j], col_inv[j], col_size[j], col_mesh[j], bc, bound_radius[i], best)
                if low >= best:
                    continue
                if low >= horizon:  # far: the bound is reported (conservative), exact spheres are not needed
                    best = low
                    who = j
                    continue
                # link frame -> collider frame once; each sphere then needs one transform, not two
                rel = wp.transform_multiply(col_inv[j], pose[s, i])
                for k in range(sphere_start[i], sphere_start[i + 1]):
                    d = collider_distance(
                        col_kind[j], rel, col_size[j], col_mesh[j], sphere_centre[k], sphere_radius[k], best
                    )
                    if d < best:
                        best = d
                        who = j
            dist_out[s, i] = best
            which_out[s, i] = who
        # the variant's carried parts (payload boxes as spheres) count as the link that holds them
        v = world_variant[s // nrecord]
        for k in range(part_start[v], part_start[v + 1]):
            i = part_link[k]
            ck = wp.transform_point(pose[s, i], part_centre[k])
            for j in range(ncol):
                if wp.length(ck - col_centre[j]) - part_radius[k] - col_radius[j] >= dist_out[s, i]:
                    continue
                d = collider_distance(
                    col_kind[j], col_inv[j], col_size[j], col_mesh[j], ck, part_radius[k], dist_out[s, i]
                )
                if d < dist_out[s, i]:
                    dist_out[s, i] = d
                    which_out[s, i] = j
        for n in range(pair_a.shape[0]):
            a = pair_a[n]
            b = pair_b[n]
            limit = wp.min(wp.max(dist_out[s, a], dist_out[s, b]), self_cutoff)
            if wp.length(bound_w[s, a] - bound_w[s, b]) - bound_radius[a] - bound_radius[b] >= limit:
                continue
            low = segment_distance(cap_p_w[s, a], cap_q_w[s, a], cap_p_w[s, b], cap_q_w[s, b])
            if low - cap_r[a] - cap_r[b] >= limit:  # bounding capsules apart: so are the spheres
                continue
            best = limit
            # work in b's frame: one transform per sphere of a, none in the inner loop (distances are rigid)
            rel = wp.transform_multiply(wp.transform_inverse(pose[s, b]), pose[s, a])
            for ka in range(sphere_start[a], sphere_start[a + 1]):
                pa = wp.transform_point(rel, sphere_centre[ka])
                # a sphere of a that cannot come nearer than the best so far to b's bounding capsule is skipped
                if segment_distance(pa, pa, cap_p[b], cap_q[b]) - sphere_radius[ka] - cap_r[b] >= best:
                    continue
                ra = sphere_radius[ka]
                for kb in range(sphere_start[b], sphere_start[b + 1]):
                    diff = pa - sphere_centre[kb]
                    # no square root for a pair that cannot beat the best (squared test, with a margin far above
                    # float32 round-off at arm scale: it never drops the pair that gives the minimum)
                    reach = best + ra + sphere_radius[kb] + 1.0e-5
                    if reach > 0.0 and wp.dot(diff, diff) >= reach * reach:
                        continue
                    d = wp.length(diff) - ra - sphere_radius[kb]
                    best = wp.min(best, d)
            if best < limit and best < dist_out[s, a]:
                dist_out[s, a] = best
                which_out[s, a] = ncol + b
            if best < limit and best < dist_out[s, b]:
                dist_out[s, b] = best
                which_out[s, b] = ncol + a

    return clearance_kernel


def get_clearance_kernel():
    """The clearance kernel (built, or loaded from Warp's cache, on first use)."""
    global _kernel
    with _lock:
        if _kernel is None:
            _kernel = _build_kernel()
    return _kernel


@dataclass(frozen=True, eq=False)
class Clearance:
    """Distances of every link at every recorded state, and their first crossings per world.

    Attributes:
        t: ``[nrecord]`` s, time of each recorded state.
        link_names: ``[nlink]``. obstacles: ``[ncollider + nlink]`` names: the scene's prim paths, then the
            robot's link prim paths (self collision).
        distance: ``[nworld, nrecord, nlink]`` m, each link's smallest distance to the scene and its paired links
            (capped at `CUTOFF_M`; links not checked stay at the cap).
        obstacle: ``[nworld, nrecord, nlink]`` int, index into ``obstacles`` of the nearest one (-1: none in reach).
        min_clearance: m, the ``clearance`` threshold. excess: ``[nlink]`` m, the sphere sets' bound.
    """

    t: np.ndarray
    link_names: tuple[str, ...]
    obstacles: tuple[str, ...]
    distance: np.ndarray
    obstacle: np.ndarray
    min_clearance: float
    excess: np.ndarray
    compute_seconds: float = 0.0
    """s, the kernel's time (summed over the worker processes when the pool checked the states)."""
    scene: str = ""
    """The scene's USD file ("" without a file)."""

    def first_below(self, threshold: float) -> dict[str, np.ndarray]:
        """Per world, the first recorded state where some link is at or below ``threshold`` (m).

        Returns:
            ``{"time": [nworld] s (NaN: never), "link": [nworld] int, "obstacle": [nworld] int,
            "distance": [nworld] m at that state}`` (link and obstacle -1 when never).
        """
        nworld, nrec, _ = self.distance.shape
        if nrec == 0:
            nan = np.full(nworld, np.nan)
            return {"time": nan, "link": np.full(nworld, -1), "obstacle": np.full(nworld, -1), "distance": nan}
        link = self.distance.argmin(axis=2)  # [nworld, nrec]
        dmin = np.take_along_axis(self.distance, link[..., None], axis=2)[..., 0]
        hit = dmin <= threshold
        any_hit = hit.any(axis=1)
        r = hit.argmax(axis=1)
        w = np.arange(nworld)
        lk = np.where(any_hit, link[w, r], -1)
        ob = np.where(any_hit, self.obstacle[w, r, np.maximum(lk, 0)], -1)
        return {
            "time": np.where(any_hit, self.t[r], np.nan),
            "link": lk,
            "obstacle": ob,
            "distance": np.where(any_hit, dmin[w, r], np.nan),
        }

    def minimum(self) -> dict[str, np.ndarray]:
        """Per world, the smallest distance over the run: ``{"distance" m, "time" s, "link", "obstacle"}``."""
        nworld, nrec, nlink = self.distance.shape
        if nrec == 0 or nlink == 0:
            nan = np.full(nworld, np.nan)
            return {"distance": nan, "time": nan, "link": np.full(nworld, -1), "obstacle": np.full(nworld, -1)}
        flat = self.distance.reshape(nworld, -1)
        k = flat.argmin(axis=1)
        r, lk = np.divmod(k, nlink)
        w = np.arange(nworld)
        return {
            "distance": flat[w, k].astype(np.float64),
            "time": self.t[r],
            "link": lk,
            "obstacle": self.obstacle[w, r, lk],
        }


def _closest_on(col, p: np.ndarray) -> np.ndarray:
    """The point of collider ``col`` nearest to the world point ``p`` (``[3]`` m; ``p`` itself when inside)."""
    if col.kind == "mesh":  # the triangle with the nearest centroid, then its nearest point (marker accuracy)
        tri = col.points[col.triangles]
        return _nearest_on_triangle(p, tri[int(np.argmin(np.linalg.norm(tri.mean(axis=1) - p, axis=1)))])
    inv = invert_transform(col.pose)
    local = inv[:3, :3] @ p + inv[:3, 3]
    h = np.asarray(col.size, dtype=np.float64)
    if col.kind == "box":
        near = np.clip(local, -h, h)
    elif col.kind == "sphere":
        n = np.linalg.norm(local)
        near = local * min(1.0, h[0] / n) if n > 0 else local
    else:
        z = np.clip(local[2], -h[1], h[1])
        radial = np.array([local[0], local[1], 0.0])
        n = np.linalg.norm(radial)
        if col.kind == "capsule":
            axis_pt = np.array([0.0, 0.0, z])
            off = local - axis_pt
            m = np.linalg.norm(off)
            near = axis_pt + off * min(1.0, h[0] / m) if m > 0 else local
        else:
            near = radial * min(1.0, h[0] / n) if n > 0 else radial
            near[2] = z
    return col.pose[:3, :3] @ near + col.pose[:3, 3]


def _nearest_on_triangle(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """Closest point of one triangle ``[3, 3]`` to ``p`` (a dense barycentric search: a marker, not a metric)."""
    u = np.linspace(0.0, 1.0, 21)
    a, b = np.meshgrid(u, u)
    keep = a + b <= 1.0
    pts = tri[0] + a[keep, None] * (tri[1] - tri[0]) + b[keep, None] * (tri[2] - tri[0])
    return pts[int(np.argmin(np.linalg.norm(pts - p, axis=1)))]


def _bounding_capsules(centres: np.ndarray, radii: np.ndarray, start: np.ndarray):
    """Per link a capsule containing its spheres: segment ends ``[nlink, 3]`` twice and radius ``[nlink]`` (m).

    The segment runs along the principal axis of the sphere centres between their extreme projections; the
    radius is the largest (distance to the segment + sphere radius).
    """
    n = len(start) - 1
    p, q, r = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros(n)
    for i in range(n):
        c, rad = centres[start[i] : start[i + 1]], radii[start[i] : start[i + 1]]
        if not len(rad):
            continue
        mid = c.mean(axis=0)
        axis = np.linalg.svd(c - mid)[2][0] if len(c) > 1 else np.array([0.0, 0.0, 1.0])
        t = (c - mid) @ axis
        p[i], q[i] = mid + axis * t.min(), mid + axis * t.max()
        seg = q[i] - p[i]
        u = np.clip(((c - p[i]) @ seg) / max(float(seg @ seg), 1e-18), 0.0, 1.0)
        r[i] = float((np.linalg.norm(c - (p[i] + u[:, None] * seg), axis=1) + rad).max())
    return p, q, r


_MODEL_ARGS = (
    ("link_parent", "i32"),
    ("link_dof", "i32"),
    ("link_kind", "i32"),
    ("link_axis", "vec3"),
    ("parent_frame", "transform"),
    ("child_inv", "transform"),
    ("sphere_start", "i32"),
    ("sphere_centre", "vec3"),
    ("sphere_radius", "f32"),
    ("bound_centre", "vec3"),
    ("bound_radius", "f32"),
    ("cap_p", "vec3"),
    ("cap_q", "vec3"),
    ("cap_r", "f32"),
    ("scene_link", "i32"),
    ("col_kind", "i32"),
    ("col_inv", "transform"),
    ("col_size", "vec3"),
    ("col_mesh", "mesh"),
    ("col_centre", "vec3"),
    ("col_radius", "f32"),
    ("pair_a", "i32"),
    ("pair_b", "i32"),
)
"""The kernel's model arguments in order, with their Warp types (``mesh``: ``wp.uint64`` ids of `wp.Mesh` es)."""


class ClearanceKernel:
    """One checker's model as Warp arrays on one device, and the kernel launch over a batch of states.

    Built from `ClearanceChecker.spec` (plain NumPy, picklable), so the what-if worker processes run the very
    launch the calling process runs: each thread is one state and independent of the others, so any split of
    the states gives bit-identical distances.

    Args:
        spec: ``{"arrays": {name: ndarray}, "meshes": [(points [n, 3] m, triangles [m, 3]) | None per collider],
            "cutoff", "self_cutoff", "horizon" m, "nlink", "ndof"}``.
        device: Warp device.
    """

    def __init__(self, spec: dict, device: str = "cpu") -> None:
        wp = init_warp()
        self.device = device
        self.nlink, self.ndof = int(spec["nlink"]), int(spec["ndof"])
        self.cutoff, self.self_cutoff, self.horizon = (
            float(spec["cutoff"]),
            float(spec["self_cutoff"]),
            float(spec["horizon"]),
        )
        self._meshes = []
        ids = []
        for m in spec["meshes"]:
            if m is None:
                ids.append(0)
                continue
            points, triangles = m
            mesh = wp.Mesh(
                points=wp.array(np.asarray(points, dtype=np.float32), dtype=wp.vec3, device=device),
                indices=wp.array(np.asarray(triangles, dtype=np.int32).reshape(-1), dtype=wp.int32, device=device),
                support_winding_number=True,
            )
            self._meshes.append(mesh)  # keep alive: the kernel holds only its id
            ids.append(mesh.id)
        types = {"i32": wp.int32, "f32": wp.float32, "vec3": wp.vec3, "transform": wp.transform}
        self._model = []
        for name, kind in _MODEL_ARGS:
            if kind == "mesh":
                self._model.append(wp.array(np.array(ids, dtype=np.uint64), dtype=wp.uint64, device=device))
            else:
                host = np.ascontiguousarray(spec["arrays"][name], dtype=np.int32 if kind == "i32" else np.float32)
                self._model.append(wp.array(host, dtype=types[kind], device=device))
        self._pose = None

    def launch(self, q: np.ndarray, nrecord: int, world_variant: np.ndarray, parts, dist_out, which_out) -> None:
        """Distances at the states ``q`` (``[nstate, ndof]`` rad|m, world-major: ``nstate = nworld * nrecord``).

        Args:
            world_variant: ``[nworld]`` int, the variant of each world (indexes ``parts``).
            parts: `ClearanceChecker.part_arrays` (the variants' carried parts).
            dist_out: ``[nstate, nlink]`` float32 m, written. which_out: ``[nstate, nlink]`` int32, written.
        """
        wp = init_warp()
        nstate = int(q.shape[0])
        if nstate == 0:
            return
        cpu = str(self.device).startswith("cpu")
        if self._pose is None or self._pose.shape[0] < nstate:  # scratch: link poses, bounds and capsules
            size = (max(nstate, 1024), self.nlink)
            self._pose = wp.empty(size, dtype=wp.transform, device=self.device)
            self._world = [wp.empty(size, dtype=wp.vec3, device=self.device) for _ in range(3)]

        def out(a, dtype):
            if cpu and a.flags.c_contiguous:  # written in place (shared memory in a worker)
                return wp.array(a, dtype=dtype, copy=False, device=self.device)
            return wp.empty(a.shape, dtype=dtype, device=self.device)

        d_out, w_out = out(dist_out, wp.float32), out(which_out, wp.int32)
        p_start, p_link, p_centre, p_radius = parts
        wp.launch(
            get_clearance_kernel(),
            dim=nstate,
            inputs=[
                *self._model,
                self.cutoff,
                self.self_cutoff,
                self.horizon,
                int(nrecord),
                wp.array(np.ascontiguousarray(q, dtype=np.float32), dtype=wp.float32, device=self.device),
                wp.array(np.ascontiguousarray(world_variant, dtype=np.int32), dtype=wp.int32, device=self.device),
                wp.array(np.ascontiguousarray(p_start, dtype=np.int32), dtype=wp.int32, device=self.device),
                wp.array(np.ascontiguousarray(p_link, dtype=np.int32), dtype=wp.int32, device=self.device),
                wp.array(np.asarray(p_centre, dtype=np.float32).reshape(-1, 3), dtype=wp.vec3, device=self.device),
                wp.array(np.ascontiguousarray(p_radius, dtype=np.float32), dtype=wp.float32, device=self.device),
                self._pose,
                *self._world,
                d_out,
                w_out,
            ],
            device=self.device,
        )
        if not (cpu and dist_out.flags.c_contiguous):
            dist_out[...] = d_out.numpy()
        if not (cpu and which_out.flags.c_contiguous):
            which_out[...] = w_out.numpy()


class ClearanceChecker:
    """Robot sphere sets and scene colliders as Warp arrays, and the batched clearance kernel over states.

    Args:
        robot: the `RobotModel`. spheres: its `twin_ext.collision.RobotSpheres`.
        scene: `twin_ext.collision.SceneColliders` (None: self collision only).
        min_clearance: m, the ``clearance`` threshold reported with results.
        device: Warp device.

    Attributes:
        spec: the model as plain NumPy (see `ClearanceKernel`), for worker processes; ``key`` names it (a digest).
    """

    def __init__(self, robot: RobotModel, spheres, scene=None, *, min_clearance: float = 0.01, device: str = "cpu"):
        self.robot, self.spheres, self.scene = robot, spheres, scene
        self.min_clearance = float(min_clearance)
        self.self_cutoff = float(max(SELF_CUTOFF_M, 2.0 * self.min_clearance))
        self.horizon = float(max(HORIZON_M, 2.0 * self.min_clearance))
        self.device = device
        n = robot.nlink
        kind = np.where(
            robot.joint_type == JointType.REVOLUTE, 1, np.where(robot.joint_type == JointType.PRISMATIC, 2, 0)
        )
        pf = np.asarray(robot.joint_parent_frame, dtype=np.float64)
        ci = invert_transform(np.asarray(robot.joint_child_frame, dtype=np.float64))

        def transforms(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=np.float64).reshape(-1, 4, 4)
            return np.concatenate([x[:, :3, 3], _matrix_to_xyzw(x[:, :3, :3])], axis=1).astype(np.float32)

        order = np.argsort(spheres.sphere_link, kind="stable")
        link_of = np.asarray(spheres.sphere_link)[order]
        centres = np.asarray(spheres.centres)[order]
        radii = np.asarray(spheres.radii)[order]
        start = np.searchsorted(link_of, np.arange(n + 1)).astype(np.int32)
        bc = np.zeros((n, 3))
        br = np.zeros(n)
        for i in range(n):
            c, r = centres[start[i] : start[i + 1]], radii[start[i] : start[i + 1]]
            if len(r):
                bc[i] = (np.min(c - r[:, None], axis=0) + np.max(c + r[:, None], axis=0)) / 2
                br[i] = float((np.linalg.norm(c - bc[i], axis=1) + r).max())
        cap_p, cap_q, cap_r = _bounding_capsules(centres, radii, start)
        colliders = scene.colliders if scene is not None else ()
        meshes = []
        c_kind, c_inv, c_size, c_centre, c_radius = [], [], [], [], []
        for col in colliders:
            c_kind.append(_KIND[col.kind])
            c_inv.append(invert_transform(col.pose))
            c_size.append(col.size)
            meshes.append(
                (np.asarray(col.points, np.float32), np.asarray(col.triangles, np.int32))
                if col.kind == "mesh"
                else None
            )
            cen, rad = col.bounding_sphere()
            c_centre.append(cen)
            c_radius.append(rad)
        ncol = len(colliders)

        def f32(x, shape):
            return np.asarray(x, dtype=np.float32).reshape(shape)

        def i32(x):
            return np.asarray(x, dtype=np.int32).reshape(-1)

        arrays = dict(
            link_parent=i32(robot.link_parent),
            link_dof=i32(np.maximum(robot.link_dof, 0)),
            link_kind=i32(kind),
            link_axis=f32(robot.joint_axis, (n, 3)),
            parent_frame=transforms(pf),
            child_inv=transforms(ci),
            sphere_start=i32(start),
            sphere_centre=f32(centres, (-1, 3)),
            sphere_radius=f32(radii, (-1,)),
            bound_centre=f32(bc, (n, 3)),
            bound_radius=f32(br, (n,)),
            cap_p=f32(cap_p, (n, 3)),
            cap_q=f32(cap_q, (n, 3)),
            cap_r=f32(cap_r, (n,)),
            scene_link=i32(np.asarray(spheres.scene_links, dtype=np.int32) if ncol else np.zeros(n)),
            col_kind=i32(c_kind),
            col_inv=transforms(np.array(c_inv).reshape(-1, 4, 4)),
            col_size=f32(np.array(c_size).reshape(-1, 3), (-1, 3)),
            col_centre=f32(np.array(c_centre).reshape(-1, 3), (-1, 3)),
            col_radius=f32(c_radius, (-1,)),
            pair_a=i32(spheres.self_pairs[:, 0]),
            pair_b=i32(spheres.self_pairs[:, 1]),
        )
        self.spec = {
            "arrays": arrays,
            "meshes": meshes,
            "cutoff": float(CUTOFF_M),
            "self_cutoff": self.self_cutoff,
            "horizon": self.horizon,
            "nlink": n,
            "ndof": robot.ndof,
        }
        digest = hashlib.sha1(repr((self.spec["cutoff"], self.self_cutoff, self.horizon, n, robot.ndof)).encode())
        for name in sorted(arrays):
            digest.update(name.encode() + arrays[name].tobytes())
        for m in meshes:
            digest.update(b"-" if m is None else m[0].tobytes() + m[1].tobytes())
        self.key = f"clearance-{digest.hexdigest()[:16]}"
        self._kernel = ClearanceKernel(self.spec, device)
        self.obstacles = tuple(c.path for c in colliders) + tuple(robot.link_paths)
        self._nsphere = len(radii)
        self._part_fits: dict[tuple, tuple] = {}
        # load (on a cold cache: compile, ~5-10 s) the kernel now, not in the first request
        self.evaluate(np.zeros((1, 1, robot.ndof)))

    def evaluate(self, q: np.ndarray, t: np.ndarray | None = None, *, world_variant=None, variants=()) -> Clearance:
        """Clearance at recorded states ``q`` (``[nworld, nrecord, ndof]`` rad|m; ``t`` ``[nrecord]`` s).

        ``variants`` (`Variant` s) with ``world_variant`` (``[nworld]`` int) add each variant's payloads that have
        a ``size`` as boxes (fitted with spheres) on their links.
        """
        q = np.asarray(q)
        if q.ndim != 3 or q.shape[2] != self.robot.ndof:
            raise ValueError(f"q must be [nworld, nrecord, {self.robot.ndof}], got {q.shape}")
        nworld, nrec, _ = q.shape
        n = self.robot.nlink
        t0 = time.perf_counter()
        wv = np.zeros(nworld, dtype=np.int32) if world_variant is None else np.asarray(world_variant, np.int32)
        parts = self.part_arrays(variants, max(int(wv.max(initial=0)) + 1, len(variants)))
        dist = np.empty((nworld, nrec, n), dtype=np.float32)
        which = np.empty((nworld, nrec, n), dtype=np.int32)
        self._kernel.launch(q.reshape(nworld * nrec, -1), nrec, wv, parts, dist.reshape(-1, n), which.reshape(-1, n))
        return self.result(dist, which, t, compute_seconds=time.perf_counter() - t0)

    def result(self, distance: np.ndarray, obstacle: np.ndarray, t=None, *, compute_seconds: float = 0.0) -> Clearance:
        """A `Clearance` of kernel outputs ``distance`` / ``obstacle`` (``[nworld, nrecord, nlink]``, m / int)
        computed elsewhere (the what-if workers), at times ``t`` (``[nrecord]`` s; None: record indices)."""
        nrec = distance.shape[1]
        times = np.asarray(t, dtype=np.float64) if t is not None else np.arange(nrec, dtype=np.float64)
        return Clearance(
            t=times,
            link_names=self.robot.link_names,
            obstacles=self.obstacles,
            distance=distance,
            obstacle=obstacle,
            min_clearance=self.min_clearance,
            excess=np.asarray(self.spheres.excess),
            compute_seconds=compute_seconds,
            scene=str(self.scene.source) if self.scene is not None else "",
        )

    def contact_point(self, q: np.ndarray, link: int, obstacle: int, *, payloads=()) -> np.ndarray:
        """Where ``link`` comes nearest to ``obstacle`` (an index into ``obstacles``) at ``q: [ndof]``: the midpoint
        between the nearest sphere's surface and the obstacle's nearest point, ``[3]`` m (world). For markers.
        ``payloads``: the variant's `Payload` s; sized ones on ``link`` count as part of it."""
        poses = self.robot.link_poses(np.asarray(q, dtype=np.float64))
        mine = np.flatnonzero(self.spheres.sphere_link == link)
        c = self.spheres.world_spheres(poses)[mine]
        r = np.asarray(self.spheres.radii)[mine]
        for p in payloads:
            if any(p.size) and self.robot.link_index(p.link) == link:
                pc, pr = self._part_spheres(p.size)
                x = poses[link]
                c = np.concatenate([c, (pc + np.asarray(p.com)) @ x[:3, :3].T + x[:3, 3]])
                r = np.concatenate([r, pr])
        ncol = len(self.scene.colliders) if self.scene is not None else 0
        if obstacle >= ncol:  # another link: the nearest pair of spheres
            other = np.flatnonzero(self.spheres.sphere_link == obstacle - ncol)
            co, ro = self.spheres.world_spheres(poses)[other], np.asarray(self.spheres.radii)[other]
            d = np.linalg.norm(c[:, None] - co[None], axis=2) - r[:, None] - ro[None]
            a, b = np.unravel_index(np.argmin(d), d.shape)
            u = (co[b] - c[a]) / max(np.linalg.norm(co[b] - c[a]), 1e-12)
            return (c[a] + u * r[a] + co[b] - u * ro[b]) / 2
        near = np.array([_closest_on(self.scene.colliders[obstacle], p) for p in c])
        d = np.linalg.norm(near - c, axis=1) - r
        k = int(np.argmin(d))
        u = (near[k] - c[k]) / max(np.linalg.norm(near[k] - c[k]), 1e-12)
        return (c[k] + u * r[k] + near[k]) / 2

    def _part_spheres(self, size) -> tuple[np.ndarray, np.ndarray]:
        """Spheres (part frame: centred at its COM) containing a payload box of extents ``size`` m (cached)."""
        from ..collision import box_triangles, fit_spheres

        key = tuple(float(x) for x in size)
        if key not in self._part_fits:
            # a long thin part needs about two spheres per thickness along its length to stay tight
            thin = max(min(x for x in key if x > 0), 1e-3)
            count = int(np.clip(2 * np.ceil(max(key) / thin), 8, 48))
            self._part_fits[key] = fit_spheres(box_triangles(np.asarray(key) / 2), count)
        return self._part_fits[key]

    def part_arrays(self, variants, nvariant: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The variants' sized payloads as spheres on their links: ``(start [nvariant + 1] int, link [npart] int,
        centre [npart, 3] m in the link frame, radius [npart] m)``; variant ``v``'s spheres are
        ``start[v]:start[v + 1]``."""
        start, link, centre, radius = [0], [], [], []
        for v in range(nvariant):
            for p in getattr(variants[v], "payloads", ()) if v < len(variants) else ():
                if not any(p.size):
                    continue
                c, r = self._part_spheres(p.size)
                link += [self.robot.link_index(p.link)] * len(r)
                centre.append(c + np.asarray(p.com))
                radius.append(r)
            start.append(len(link))
        cen = np.concatenate(centre) if centre else np.zeros((0, 3))
        rad = np.concatenate(radius) if radius else np.zeros(0)
        return (
            np.asarray(start, dtype=np.int32),
            np.asarray(link, dtype=np.int32),
            cen.astype(np.float32).reshape(-1, 3),
            rad.astype(np.float32),
        )
