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
    return (m @ v[..., None])[..., 0]


def _mtv(m: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``[N, 3, 3]^T @ [N, 3]``."""
    return (v[..., None, :] @ m)[..., 0, :]


def _cross(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cross product of ``[N, 3]`` arrays (either may be one ``[3]`` vector). ``np.cross`` costs ~40 us
    a call in axis handling alone, which dominates at the batch sizes a live twin has."""
    out = np.empty(a.shape if a.ndim >= b.ndim else b.shape)
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    np.subtract(a1 * b2, a2 * b1, out=out[..., 0])
    np.subtract(a2 * b0, a0 * b2, out=out[..., 1])
    np.subtract(a0 * b1, a1 * b0, out=out[..., 2])
    return out


def _skew(a: np.ndarray) -> np.ndarray:
    """``[3, 3]`` matrix ``A`` with ``A @ v = a x v``."""
    return np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])


def _cross_z(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``w x (s e_z)`` row-wise for ``w [N, 3]``, ``s [N]``: ``s (w_y, -w_x, 0)``."""
    out = np.zeros_like(w)
    out[:, 0] = w[:, 1] * s
    out[:, 1] = -w[:, 0] * s
    return out


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
        # Cross products with constant vectors as matrices: a x v = v @ _skew(a).T (one matmul per batch).
        self._skew_h_t = [_skew(h).T for h in tree.first_moment]
        self._skew_p_t = [_skew(p).T for p in tree.parent_translation]
        self._inertia_t = [i.T for i in tree.inertia_origin]

    # ---- the recursion ---------------------------------------------------------------------------------
    def _forward(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, gravity: np.ndarray):
        """Body poses relative to their parents and body motion (body frames): ``rot, pos, w, dw, acc``.

        ``gravity``: ``[3]`` or ``[N, 3]`` (per state: one pass can mix states with and without gravity)."""
        t = self.tree
        n = q.shape[0]
        rot: list[np.ndarray] = []  # R_pb per body, [N, 3, 3]
        pos: list[np.ndarray] = []  # p_pb per body, [N, 3]
        w: list[np.ndarray | None] = []  # None: zero (a root body's parent, the world, does not move)
        dw: list[np.ndarray | None] = []
        acc: list[np.ndarray] = []
        base_acc = np.broadcast_to(-np.asarray(gravity, dtype=np.float64), (n, 3))
        for b in range(t.ndof):
            r0 = t.parent_rotation[b]
            if self._revolute[b]:
                c, s_ = np.cos(q[:, b]), np.sin(q[:, b])
                r = np.empty((n, 3, 3))  # r0 @ Rz(q): columns x, y rotate, z stays
                r[:, :, 0] = np.outer(c, r0[:, 0]) + np.outer(s_, r0[:, 1])
                r[:, :, 1] = np.outer(c, r0[:, 1]) - np.outer(s_, r0[:, 0])
                r[:, :, 2] = r0[:, 2]
                p = t.parent_translation[b]  # [3], constant
            else:
                r = np.broadcast_to(r0, (n, 3, 3))
                p = t.parent_translation[b] + np.outer(q[:, b], r0[:, 2])
            parent = t.parent[b]
            if parent >= 0:
                wp, dwp, ap = w[parent], dw[parent], acc[parent]
                if p.ndim == 1:  # revolute: p constant; dw x p = -(p x dw)
                    skew_t = self._skew_p_t[b]
                    lin = ap - dwp @ skew_t - _cross(wp, wp @ skew_t)
                else:
                    lin = ap + _cross(dwp, p) + _cross(wp, _cross(wp, p))
                a = _mtv(r, lin)
                wb, dwb = _mtv(r, wp), _mtv(r, dwp)
            else:
                a = _mtv(r, base_acc)
                wb, dwb = np.zeros((n, 3)), np.zeros((n, 3))
            if self._revolute[b]:
                # dw += qdd e_z + w x (qd e_z);  w += qd e_z
                dwb = dwb + _cross_z(wb, qd[:, b])
                dwb[:, 2] += qdd[:, b]
                wb = wb.copy()
                wb[:, 2] += qd[:, b]
            else:
                a = a + 2.0 * _cross_z(wb, qd[:, b])
                a[:, 2] += qdd[:, b]
            rot.append(r)
            pos.append(p)
            w.append(wb)
            dw.append(dwb)
            acc.append(a)
        return rot, pos, w, dw, acc

    def _backward(self, rot, pos, force: list[np.ndarray], moment: list[np.ndarray]) -> np.ndarray:
        """Joint efforts from each body's own force and moment about its origin (body frames), summed up the tree.
        ``force`` and ``moment`` are consumed (updated in place)."""
        t = self.tree
        tau = np.zeros((force[0].shape[0], t.ndof))
        for b in range(t.ndof - 1, -1, -1):
            tau[:, b] = moment[b][:, 2] if self._revolute[b] else force[b][:, 2]
            parent = t.parent[b]
            if parent >= 0:
                fp = _mv(rot[b], force[b])
                lever = fp @ self._skew_p_t[b] if pos[b].ndim == 1 else _cross(pos[b], fp)
                force[parent] = force[parent] + fp
                moment[parent] = moment[parent] + _mv(rot[b], moment[b]) + lever
        return tau

    def _rnea(self, q: np.ndarray, qd: np.ndarray, qdd: np.ndarray, gravity: np.ndarray) -> np.ndarray:
        return self._rnea_with_kinematics(q, qd, qdd, gravity)[0]

    def _rnea_with_kinematics(self, q, qd, qdd, gravity):
        t = self.tree
        kinematics = self._forward(q, qd, qdd, gravity)
        rot, pos, w, dw, acc = kinematics
        force, moment = [], []
        for b in range(t.ndof):
            skew_h_t, inertia_t = self._skew_h_t[b], self._inertia_t[b]
            # f = m a + dw x h + w x (w x h);  n = I dw + w x (I w) + h x a   (h x v = v @ skew(h).T)
            force.append(t.mass[b] * acc[b] - dw[b] @ skew_h_t - _cross(w[b], w[b] @ skew_h_t))
            moment.append(dw[b] @ inertia_t + _cross(w[b], w[b] @ inertia_t) + acc[b] @ skew_h_t)
        return self._backward(rot, pos, force, moment), kinematics

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

    def observer_terms(self, q, qd, *, dt: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(p, g, C^T qd)`` — `momentum`, `gravity` and `coriolis_transpose_times_velocity` — from one batched
        pass over ``5 N`` states (what a momentum observer needs per sample, at a fifth of the overhead)."""
        single, (q, qd) = self._batch(q, qd)
        n = q.shape[0]
        zero = np.zeros_like(q)
        qs = np.concatenate([q, q, q + qd * dt, q - qd * dt, q])
        qds = np.concatenate([zero, zero, zero, zero, qd])
        qdds = np.concatenate([qd, zero, qd, qd, zero])
        gravity = np.zeros((5 * n, 3))
        gravity[n : 2 * n] = self.tree.gravity
        tau = self._rnea(qs, qds, qdds, gravity)
        p = tau[:n] + qd * self.armature
        g = tau[n : 2 * n]
        ctqd = (tau[2 * n : 3 * n] - tau[3 * n : 4 * n]) / (2.0 * dt) - tau[4 * n :]
        return (p[0], g[0], ctqd[0]) if single else (p, g, ctqd)

    def mass_matrix(self, q) -> np.ndarray:
        """``M(q)`` with armature on the diagonal, kg·m² | kg; ``[N, ndof, ndof]`` (``[ndof, ndof]`` unbatched)."""
        single, (q,) = self._batch(q)
        n, nd = q.shape
        eye = np.eye(nd)
        qs = np.repeat(q, nd, axis=0)
        cols = self._rnea(qs, np.zeros_like(qs), np.tile(eye, (n, 1)), np.zeros(3)).reshape(n, nd, nd)
        m = np.transpose(cols, (0, 2, 1)) + np.diag(self.armature)
        return m[0] if single else m

    def inertial_regressor(self, q, qd, qdd, *, body: int, gravity: bool = True) -> np.ndarray:
        """``Y [N, ndof, 10]`` with ``tau = Y @ theta`` the efforts that inertial parameters ``theta`` added to
        ``body`` cost: ``theta = (m, h_x, h_y, h_z, I_xx, I_xy, I_xz, I_yy, I_yz, I_zz)`` in the body frame (mass
        kg, first moment ``h = m c`` kg·m, inertia about the body origin kg·m²). Efforts are linear in these
        ten numbers, which is what payload identification needs (``[ndof, 10]`` for unbatched input)."""
        return self.inverse_dynamics_and_regressor(q, qd, qdd, body=body, gravity=gravity)[1]

    def inverse_dynamics_and_regressor(
        self, q, qd, qdd, *, body: int, gravity: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """`inverse_dynamics` and `inertial_regressor` of the same states from one forward pass:
        ``(tau [N, ndof], Y [N, ndof, 10])``."""
        single, (q, qd, qdd) = self._batch(q, qd, qdd)
        g = self.tree.gravity if gravity else np.zeros(3)
        tau, (rot, pos, w, dw, acc) = self._rnea_with_kinematics(q, qd, qdd, g)
        tau = tau + qdd * self.armature
        n, nb = q.shape[0], self.ndof
        a, wb, dwb = acc[body], w[body], dw[body]
        zero = np.zeros((n, 3))
        basis_f, basis_n = [a], [zero]  # mass
        for i in range(3):  # first moment along each body axis
            e = np.zeros(3)
            e[i] = 1.0
            basis_f.append(_cross(dwb, e) + _cross(wb, _cross(wb, e)))
            basis_n.append(_cross(e, a))
        for i, j in ((0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)):  # inertia about the origin (symmetric)
            inertia = np.zeros((3, 3))
            inertia[i, j] = inertia[j, i] = 1.0
            basis_f.append(zero)
            basis_n.append(dwb @ inertia.T + _cross(wb, wb @ inertia.T))
        # All ten basis wrenches through one backward pass over 10 N rows (kinematics tiled).
        tile = lambda arrays: [x if x.ndim == 1 else np.tile(x, (10,) + (1,) * (x.ndim - 1)) for x in arrays]  # noqa: E731
        zero10 = np.zeros((10 * n, 3))
        force = [zero10] * nb
        moment = [zero10] * nb
        force[body], moment[body] = np.concatenate(basis_f), np.concatenate(basis_n)
        y = self._backward(tile(rot), tile(pos), force, moment).reshape(10, n, nb).transpose(1, 2, 0)
        return (tau[0], y[0]) if single else (tau, y)
