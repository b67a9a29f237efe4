# SPDX-License-Identifier: Apache-2.0
"""Rigid-body inverse dynamics of a fixed-base tree (recursive Newton-Euler), batched over samples in NumPy.

`RigidBodyDynamics` works on the `ArticulatedTree` reduction of a robot (one body per dof, every joint axis
on its body's z axis, inertias about body origins) and evaluates, for ``N`` states at once:

* `inverse_dynamics`: ``tau = M(q) qdd + C(q, qd) qd + g(q)`` (rigid bodies, plus armature ``A qdd``);
* `bias`: ``C(q, qd) qd + g(q)`` (what MuJoCo calls ``qfrc_bias``), `gravity`: ``g(q)``;
* `momentum`: the generalized momentum ``p = M(q) qd`` (armature included), and
  `coriolis_transpose_times_velocity`: ``C(q, qd)^T qd``, the two terms a generalized momentum observer needs;
* `mass_matrix`: ``M(q)`` (armature on the diagonal).

The recursion, in body frames. Forward, from the root: body ``b`` with parent ``p`` sits at
``R_pb = R_b0 Rz(q_b)`` (revolute) or ``p_pb = t_b0 + R_b0 e_z q_b`` (prismatic) and has angular velocity
``w``, angular acceleration ``dw`` and origin acceleration ``a`` (gravity enters as a base acceleration
``-g``). Backward, from the leaves: the force and moment (about the body origin) the body needs,
``f = m a + dw x h + w x (w x h)`` and ``n = I_o dw + w x (I_o w) + h x a`` (``h`` = first moment),
plus what its children pass up; the joint torque is ``e_z . n`` (revolute) or ``e_z . f`` (prismatic).
Cost: O(ndof) per state, vectorised over states (~0.3 ms for a batch of 64 Panda states here).

Units: SI; rad|m per dof type. Shapes: ``q, qd, qdd: [N, ndof]`` (or ``[ndof]``, returned unbatched).
"""

from __future__ import annotations

import numpy as np

from ._articulation import ArticulatedTree, tree_from_robot
from ._model import RobotModel

__all__ = ["RigidBodyDynamics"]

_EZ = np.array([0.0, 0.0, 1.0])


def _rot_z(c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]`` rotations about z by the angles whose cosines/sines are ``c, s: [N]``."""
    out = np.zeros((c.shape[0], 3, 3))
    out[:, 0, 0], out[:, 0, 1], out[:, 1, 0], out[:, 1, 1], out[:, 2, 2] = c, -s, s, c, 1.0
    return out


def _mv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``[N, 3, 3] @ [N, 3]``."""
    return np.einsum("nij,nj->ni", m, v)


def _mtv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]^T @ [N, 3]``."""
    return np.einsum("nji,nj->ni", m, v)


class RigidBodyDynamics:
    """Inverse dynamics of one robot, batched over states.

    Args:
        robot: a `RobotModel` (reduced with `tree_from_robot`) or an `ArticulatedTree`.
        armature: ``[ndof]`` reflected rotor inertia added to ``M``'s diagonal, kg·m² | kg (default: the
            robot's own, 0 for a bare tree).
    """

    def __init__(self, robot: RobotModel | ArticulatedTree, *, armature: np.ndarray | None = None) -> None:
        tree = robot if isinstance(robot, ArticulatedTree) else tree_from_robot(robot)
        self.tree = tree
        self.ndof = tree.ndof
        default = np.asarray(robot.armature, dtype=np.float64) if isinstance(robot, RobotModel) else 0.0
        self.armature = np.broadcast_to(
            np.asarray(default if armature is None else armature, dtype=np.float64), (tree.ndof,)
        ).copy()
        self._revolute = tree.joint_type == 1
        self._children = [[c for c in range(tree.ndof) if tree.parent[c] == b] for b in range(tree.ndof)]

    # ---- the recursion ---------------------------------------------------------------------------------
    def _rnea(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, gravity: np.ndarray) -> np.ndarray:
        t = self.tree
        n = q.shape[0]
        rot: list[np.ndarray] = []  # R_pb per body, [N, 3, 3]
        pos: list[np.ndarray] = []  # p_pb per body, [N, 3]
        w: list[np.ndarray] = []
        dw: list[np.ndarray] = []
        acc: list[np.ndarray] = []
        zero = np.zeros((n, 3))
        base_acc = np.broadcast_to(-gravity, (n, 3))
        for b in range(t.ndof):
            r0 = np.broadcast_to(t.parent_rotation[b], (n, 3, 3))
            if self._revolute[b]:
                r = r0 @ _rot_z(np.cos(q[:, b]), np.sin(q[:, b]))
                p = np.broadcast_to(t.parent_translation[b], (n, 3))
            else:
                r = np.array(r0)
                p = t.parent_translation[b] + np.outer(q[:, b], t.parent_rotation[b] @ _EZ)
            parent = t.parent[b]
            wp, dwp, ap = (w[parent], dw[parent], acc[parent]) if parent >= 0 else (zero, zero, base_acc)
            # The parent's motion, at this body's origin, in this body's frame.
            a = _mtv(r, ap + np.cross(dwp, p) + np.cross(wp, np.cross(wp, p)))
            wb, dwb = _mtv(r, wp), _mtv(r, dwp)
            zq = np.outer(qd[:, b], _EZ)
            if self._revolute[b]:
                dwb = dwb + np.outer(qdd[:, b], _EZ) + np.cross(wb, zq)
                wb = wb + zq
            else:
                a = a + np.outer(qdd[:, b], _EZ) + 2.0 * np.cross(wb, zq)
            rot.append(r)
            pos.append(p)
            w.append(wb)
            dw.append(dwb)
            acc.append(a)
        tau = np.zeros((n, t.ndof))
        force = [np.zeros((n, 3)) for _ in range(t.ndof)]
        moment = [np.zeros((n, 3)) for _ in range(t.ndof)]
        for b in range(t.ndof - 1, -1, -1):
            m, h, inertia = t.mass[b], t.first_moment[b], t.inertia_origin[b]
            hb = np.broadcast_to(h, (n, 3))
            f = m * acc[b] + np.cross(dw[b], hb) + np.cross(w[b], np.cross(w[b], hb)) + force[b]
            iw = w[b] @ inertia.T
            nb = dw[b] @ inertia.T + np.cross(w[b], iw) + np.cross(hb, acc[b]) + moment[b]
            tau[:, b] = nb[:, 2] if self._revolute[b] else f[:, 2]
            parent = t.parent[b]
            if parent >= 0:
                fp = _mv(rot[b], f)
                force[parent] += fp
                moment[parent] += _mv(rot[b], nb) + np.cross(pos[b], fp)
        return tau

    def _batch(self, *arrays: np.ndarray | None) -> tuple[bool, list[np.ndarray]]:
        first = np.asarray(arrays[0], dtype=np.float64)
        single = first.ndim == 1
        out = []
        for a in arrays:
            x = np.zeros_like(first) if a is None else np.asarray(a, dtype=np.float64)
            x = np.atleast_2d(x)
            if x.shape[-1] != self.ndof:
                raise ValueError(f"expected arrays with {self.ndof} joint columns, got shape {x.shape}")
            out.append(x)
        if len({x.shape for x in out}) != 1:
            raise ValueError(f"q, qd, qdd must have the same shape, got {[x.shape for x in out]}")
        return single, out

    # ---- public evaluations ---------------------------------------------------------------------------
    def inverse_dynamics(self, q, qd, qdd, *, gravity: bool = True) -> np.ndarray:
        """Joint efforts ``M(q) qdd + C(q, qd) qd + g(q)`` (armature included), N·m | N; ``[N, ndof]``."""
        single, (q, qd, qdd) = self._batch(q, qd, qdd)
        g = self.tree.gravity if gravity else np.zeros(3)
        tau = self._rnea(q, qd, qdd, g) + qdd * self.armature
        return tau[0] if single else tau

    def bias(self, q, qd) -> np.ndarray:
        """``C(q, qd) qd + g(q)``, N·m | N (MuJoCo's ``qfrc_bias``)."""
        single, (q, qd) = self._batch(q, qd)
        tau = self._rnea(q, qd, np.zeros_like(q), self.tree.gravity)
        return tau[0] if single else tau

    def gravity(self, q) -> np.ndarray:
        """``g(q)``: the efforts that hold the robot still against gravity, N·m | N."""
        single, (q,) = self._batch(q)
        tau = self._rnea(q, np.zeros_like(q), np.zeros_like(q), self.tree.gravity)
        return tau[0] if single else tau

    def momentum(self, q, qd) -> np.ndarray:
        """Generalized momentum ``p = M(q) qd`` (armature included), N·m·s | N·s."""
        single, (q, qd) = self._batch(q, qd)
        p = self._rnea(q, np.zeros_like(q), qd, np.zeros(3)) + qd * self.armature
        return p[0] if single else p

    def coriolis_transpose_times_velocity(self, q, qd, *, dt: float = 1e-6) -> np.ndarray:
        """``C(q, qd)^T qd``, N·m | N, from ``dM/dt qd - C(q, qd) qd`` (``M + M^T``-skew identity ``dM/dt =
        C + C^T``); ``dM/dt qd`` by a central difference along ``qd`` over ``dt`` seconds."""
        single, (q, qd) = self._batch(q, qd)
        zero = np.zeros_like(q)
        m_plus = self._rnea(q + qd * dt, zero, qd, np.zeros(3))
        m_minus = self._rnea(q - qd * dt, zero, qd, np.zeros(3))
        c_qd = self._rnea(q, qd, zero, np.zeros(3))
        out = (m_plus - m_minus) / (2.0 * dt) - c_qd
        return out[0] if single else out

    def mass_matrix(self, q) -> np.ndarray:
        """``M(q)`` with armature on the diagonal, kg·m² | kg; ``[N, ndof, ndof]`` (``[ndof, ndof]`` unbatched)."""
        single, (q,) = self._batch(q)
        n, nd = q.shape
        eye = np.eye(nd)
        qs = np.repeat(q, nd, axis=0)
        cols = self._rnea(qs, np.zeros_like(qs), np.tile(eye, (n, 1)), np.zeros(3)).reshape(n, nd, nd)
        m = np.transpose(cols, (0, 2, 1)) + np.diag(self.armature)
        return m[0] if single else m
