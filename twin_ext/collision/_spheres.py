# SPDX-License-Identifier: Apache-2.0
"""Conservative sphere sets fitted to a link's collision surface, and how much they overstate it.

The fit (`fit_spheres`): sphere centres are chosen among points *inside* the solid (deep in the link a sphere
hugs the surface best) by a greedy cover of the surface, cut into small pieces, with the least bulge that needs
no more than the allowed number of spheres; each sphere's radius is the largest distance to a corner of its
pieces. Every piece lies in its (convex) sphere, so the union of the spheres contains the whole surface: the
distance from the spheres to anything outside the link is never larger than the distance from the surface
(conservative). How much smaller it can be is the *excess* (`sphere_excess`): the largest distance from a point
of the spheres' outer boundary to the surface, measured on a dense sample of that boundary.
"""

from __future__ import annotations

import numpy as np

from ._triangles import point_triangle_distance, subdivide, winding_number

__all__ = ["fibonacci_sphere", "fit_spheres", "sphere_excess"]


def fibonacci_sphere(n: int) -> np.ndarray:
    """``[n, 3]`` nearly uniform unit vectors (a Fibonacci lattice)."""
    i = np.arange(n) + 0.5
    z = 1.0 - 2.0 * i / n
    r = np.sqrt(np.clip(1.0 - z * z, 0.0, None))
    phi = np.pi * (1.0 + 5**0.5) * i
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def fit_spheres(triangles: np.ndarray, count: int, *, grid: int = 11) -> tuple[np.ndarray, np.ndarray]:
    """Up to ``count`` spheres whose union contains the triangle surface ``triangles`` (``[m, 3, 3]`` m).

    Candidate centres are grid points inside the solid; a sphere at depth ``h`` (distance to the surface) with
    radius ``h + e`` bulges out by about ``e``. The smallest ``e`` for which a greedy cover of the surface pieces
    needs at most ``count`` spheres is found by bisection; each chosen sphere then shrinks to the farthest corner
    of the pieces it holds.

    Returns:
        ``(centres [k, 3] m, radii [k] m)`` with ``k <= count`` (empty when there are no triangles).
    """
    tri = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
    if len(tri) == 0 or count < 1:
        return np.zeros((0, 3)), np.zeros(0)
    verts = tri.reshape(-1, 3)
    lo, hi = verts.min(axis=0), verts.max(axis=0)
    diag = float(np.linalg.norm(hi - lo))
    axes = [np.linspace(lo[k], hi[k], grid + 2)[1:-1] for k in range(3)]
    pts = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    cand = pts[np.abs(winding_number(pts, tri)) > 0.5]
    if len(cand) == 0:  # an open or flat surface: centres on the surface itself
        cand = tri.mean(axis=1)
        depth = np.zeros(len(cand))
    else:
        depth = point_triangle_distance(cand, tri)
    pieces = subdivide(tri, max(diag / 10.0, 1e-4))
    corners, corner_of = np.unique(pieces.reshape(-1, 3).round(9), axis=0, return_inverse=True)
    sq = (cand**2).sum(axis=1)[:, None] + (corners**2).sum(axis=1)[None, :] - 2.0 * cand @ corners.T
    sq = sq[:, corner_of.reshape(-1, 3)].max(axis=2)  # [ncand, npiece] farthest corner of each piece
    need = np.sqrt(np.clip(sq, 0.0, None))
    slack = need - depth[:, None]  # how far a sphere at this candidate holding this piece bulges out, about

    def cover(e: float) -> list[int] | None:
        covers = (slack <= e).astype(np.float32)
        left = np.ones(len(pieces), dtype=np.float32)
        chosen: list[int] = []
        while left.any():
            if len(chosen) == count:
                return None
            gain = covers @ left  # pieces still uncovered that each candidate would cover (BLAS)
            best = int(gain.argmax())
            if gain[best] == 0:
                return None
            chosen.append(best)
            left *= 1.0 - covers[best]
        return chosen

    lo_e, hi_e = 0.0, float(slack.max()) + 1e-9
    chosen = cover(hi_e) or [0]
    for _ in range(10):
        mid = 0.5 * (lo_e + hi_e)
        found = cover(mid)
        if found is None:
            lo_e = mid
        else:
            hi_e, chosen = mid, found
    idx = np.asarray(chosen)
    owner = slack[idx].argmin(axis=0)  # each piece to the chosen sphere it bulges least from
    radii = np.zeros(len(idx))
    np.maximum.at(radii, owner, need[idx[owner], np.arange(len(pieces))])
    used = np.bincount(owner, minlength=len(idx)) > 0
    return cand[idx][used], radii[used]


def sphere_excess(centres: np.ndarray, radii: np.ndarray, triangles: np.ndarray, *, samples: int = 256) -> float:
    """How far the spheres reach beyond the surface: max distance from their outer boundary to it, m.

    Boundary points inside another sphere or inside the solid are not part of the outer boundary and are left out.
    A sampled maximum (``samples`` points per sphere): the true maximum may exceed it by about the sampling spacing
    times the curvature, a fraction of a millimetre for link-sized spheres at the default density.
    """
    centres = np.asarray(centres, dtype=np.float64)
    radii = np.asarray(radii, dtype=np.float64)
    tri = np.asarray(triangles, dtype=np.float64).reshape(-1, 3, 3)
    if len(centres) == 0 or len(tri) == 0:
        return 0.0
    dirs = fibonacci_sphere(samples)
    pts = (centres[:, None, :] + radii[:, None, None] * dirs[None]).reshape(-1, 3)
    own = np.repeat(np.arange(len(centres)), samples)
    d_other = np.linalg.norm(pts[:, None] - centres[None], axis=2) - radii[None]
    d_other[np.arange(len(pts)), own] = np.inf
    pts = pts[d_other.min(axis=1) > -1e-9]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.abs(winding_number(pts, tri)) < 0.5]
    if len(pts) == 0:
        return 0.0
    return float(point_triangle_distance(pts, tri).max())
