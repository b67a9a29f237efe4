# SPDX-License-Identifier: Apache-2.0
"""Triangle-soup geometry in NumPy: point-triangle distance, winding number, subdivision, primitive meshes.

Triangles are ``[m, 3, 3]`` arrays (triangle, corner, xyz) in metres. Everything is vectorised over points and
triangles; sizes here are small (a robot link's convex hull has a few hundred triangles).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "box_triangles",
    "cylinder_triangles",
    "point_triangle_distance",
    "subdivide",
    "winding_number",
]


def point_triangle_distance(points: np.ndarray, triangles: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """Unsigned distance from each point to the nearest triangle.

    Args:
        points: ``[n, 3]`` m. triangles: ``[m, 3, 3]`` m.

    Returns:
        ``[n]`` m, the distance to the closest point of the triangle soup (Ericson's region test per triangle).
    """
    points = np.asarray(points, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.float64)
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        out[s : s + chunk] = np.sqrt(_sq_dist(points[s : s + chunk], tri).min(axis=1))
    return out


def _sq_dist(p: np.ndarray, tri: np.ndarray) -> np.ndarray:
    """``[n, m]`` squared distances, point n to triangle m (closest point by Voronoi regions)."""
    a, b, c = tri[None, :, 0], tri[None, :, 1], tri[None, :, 2]
    p = p[:, None, :]
    ab, ac, ap = b - a, c - a, p - a

    def dot(x, y):
        return np.einsum("...k,...k->...", x, y)

    d1, d2 = dot(ab, ap), dot(ac, ap)
    bp = p - b
    d3, d4 = dot(ab, bp), dot(ac, bp)
    cp = p - c
    d5, d6 = dot(ab, cp), dot(ac, cp)
    va = d3 * d6 - d5 * d4
    vb = d5 * d2 - d1 * d6
    vc = d1 * d4 - d3 * d2
    with np.errstate(divide="ignore", invalid="ignore"):
        # interior: barycentric coordinates from the three sub-areas
        denom = va + vb + vc
        v = np.where(denom != 0, vb / denom, 0.0)
        w = np.where(denom != 0, vc / denom, 0.0)
        closest = a + ab * v[..., None] + ac * w[..., None]
        # edges
        e_ab = (vc <= 0) & (d1 >= 0) & (d3 <= 0)
        t_ab = np.where(e_ab, d1 / np.where(d1 - d3 != 0, d1 - d3, 1.0), 0.0)
        closest = np.where(e_ab[..., None], a + ab * t_ab[..., None], closest)
        e_ac = (vb <= 0) & (d2 >= 0) & (d6 <= 0)
        t_ac = np.where(e_ac, d2 / np.where(d2 - d6 != 0, d2 - d6, 1.0), 0.0)
        closest = np.where(e_ac[..., None], a + ac * t_ac[..., None], closest)
        e_bc = (va <= 0) & ((d4 - d3) >= 0) & ((d5 - d6) >= 0)
        den_bc = (d4 - d3) + (d5 - d6)
        t_bc = np.where(e_bc, (d4 - d3) / np.where(den_bc != 0, den_bc, 1.0), 0.0)
        closest = np.where(e_bc[..., None], b + (c - b) * t_bc[..., None], closest)
    # vertices last: they take precedence over the edge tests that include them
    closest = np.where(((d1 <= 0) & (d2 <= 0))[..., None], a, closest)
    closest = np.where(((d3 >= 0) & (d4 <= d3))[..., None], b, closest)
    closest = np.where(((d6 >= 0) & (d5 <= d6))[..., None], c, closest)
    diff = p - closest
    return dot(diff, diff)


def winding_number(points: np.ndarray, triangles: np.ndarray, *, chunk: int = 2048) -> np.ndarray:
    """Generalised winding number of a triangle soup at each point (|w| ~ 1 inside a closed mesh, ~ 0 outside).

    Args:
        points: ``[n, 3]`` m. triangles: ``[m, 3, 3]`` m.

    Returns:
        ``[n]`` the sum of the triangles' signed solid angles over 4 pi (Van Oosterom and Strackee's formula).
    """
    points = np.asarray(points, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.float64)
    out = np.empty(len(points))
    for s in range(0, len(points), chunk):
        v = tri[None, :, :, :] - points[s : s + chunk, None, None, :]  # [n, m, 3, 3]
        a, b, c = v[..., 0, :], v[..., 1, :], v[..., 2, :]
        la, lb, lc = (np.linalg.norm(x, axis=-1) for x in (a, b, c))
        num = np.einsum("...k,...k->...", a, np.cross(b, c))
        den = (
            la * lb * lc
            + np.einsum("...k,...k->...", a, b) * lc
            + np.einsum("...k,...k->...", a, c) * lb
            + np.einsum("...k,...k->...", b, c) * la
        )
        out[s : s + chunk] = (2.0 * np.arctan2(num, den)).sum(axis=1) / (4.0 * np.pi)
    return out


def subdivide(triangles: np.ndarray, max_edge: float) -> np.ndarray:
    """Split triangles 1 -> 4 at their edge midpoints until no edge is longer than ``max_edge`` (m).

    The surface is unchanged; only the pieces get smaller (so a sphere can cover each piece tightly).
    """
    tri = np.asarray(triangles, dtype=np.float64)
    for _ in range(12):  # 4^12 pieces per triangle at most: a guard, never reached for sane max_edge
        edges = np.linalg.norm(tri - np.roll(tri, -1, axis=1), axis=2).max(axis=1)
        big = edges > max_edge
        if not big.any():
            break
        t = tri[big]
        a, b, c = t[:, 0], t[:, 1], t[:, 2]
        ab, bc, ca = (a + b) / 2, (b + c) / 2, (c + a) / 2
        split = np.concatenate(
            [np.stack(x, axis=1) for x in ((a, ab, ca), (ab, b, bc), (ca, bc, c), (ab, bc, ca))], axis=0
        )
        tri = np.concatenate([tri[~big], split], axis=0)
    return tri


def box_triangles(half: np.ndarray) -> np.ndarray:
    """``[12, 3, 3]`` triangles of an axis-aligned box centred at the origin with half extents ``half`` (m)."""
    hx, hy, hz = (float(x) for x in half)
    corners = np.array([[sx * hx, sy * hy, sz * hz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
    faces = [
        (0, 1, 3), (0, 3, 2), (4, 6, 7), (4, 7, 5),  # x = -hx, x = +hx
        (0, 4, 5), (0, 5, 1), (2, 3, 7), (2, 7, 6),  # y = -hy, y = +hy
        (0, 2, 6), (0, 6, 4), (1, 5, 7), (1, 7, 3),  # z = -hz, z = +hz
    ]  # fmt: skip
    return corners[np.array(faces)]


def cylinder_triangles(radius: float, half_height: float, *, segments: int = 24) -> np.ndarray:
    """Triangles of a prism *circumscribing* a z-axis cylinder (it contains the cylinder), m.

    The polygon's inner radius is ``radius`` (its corners lie at ``radius / cos(pi / segments)``).
    """
    r = radius / np.cos(np.pi / segments)
    ang = 2 * np.pi * (np.arange(segments) + 0.5) / segments
    ring = np.stack([r * np.cos(ang), r * np.sin(ang)], axis=1)
    out = []
    top, bottom = np.array([0.0, 0.0, half_height]), np.array([0.0, 0.0, -half_height])
    for i in range(segments):
        j = (i + 1) % segments
        p0b, p1b = np.append(ring[i], -half_height), np.append(ring[j], -half_height)
        p0t, p1t = np.append(ring[i], half_height), np.append(ring[j], half_height)
        out += [(p0b, p1b, p1t), (p0b, p1t, p0t), (top, p0t, p1t), (bottom, p1b, p0b)]
    return np.array(out)
