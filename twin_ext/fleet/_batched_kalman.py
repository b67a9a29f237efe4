# SPDX-License-Identifier: Apache-2.0
"""`FleetKalman`: the estimator's per-joint Kalman filter batched across the joints of MANY robots at once.

The per-robot `twin_ext.estimation.JointKalmanFilter` is already vectorised over one robot's joints, but each
call costs dozens of small NumPy operations (~0.25 ms for a 9-joint arm): 100 robots are 100 x that per tick.
Here the joints of all robots are one array (``n = robots x joints``); each robot's own time step becomes a
per-joint ``dt``, so one predict and one update serve the whole fleet. Same model, same Joseph-form update and
gate as `JointKalmanFilter` (it is a subclass); prediction takes ``dt: [n]``. Prediction and the update of every
joint (the fleet's case) are written out per matrix element on ``[.., n]`` arrays instead of NumPy's stacked 3 x 3
products, which loop joint by joint (~3x the time for 20 robots); equal to rounding.

Used by `FleetSession` (``[fleet] batched_estimation``, the default) through `twin_ext.fleet._batched_estimation`:
each tick gathers the robots' filters into one `FleetKalman`, fuses their newest samples and scatters the result
back. Tested against `JointKalmanFilter` robot by robot (tests/test_fleet_batched_kalman.py) and, end to end,
against per-robot estimators (tests/test_fleet_batched_estimation.py); cost in ``python -m twin_ext.bench fleet``
(``cpu_cost.estimate_ms_per_robot_tick`` vs ``per_robot_estimate_ms_per_robot_tick``).
"""

from __future__ import annotations

import numpy as np

from ..estimation import JointKalmanFilter

__all__ = ["FleetKalman"]


class FleetKalman(JointKalmanFilter):
    """Per-joint constant-acceleration filters of ``robots`` robots with ``joints`` joints each (row-major:
    robot ``r``'s joints are ``r*joints .. r*joints+joints-1``). Arguments as `JointKalmanFilter`, per joint."""

    def __init__(self, robots: int, joints: int, **kwargs) -> None:
        super().__init__(robots * joints, **kwargs)
        self.robots, self.joints = int(robots), int(joints)

    def per_joint(self, per_robot: np.ndarray) -> np.ndarray:
        """``[robots]`` values -> ``[n]`` (each robot's value for each of its joints)."""
        return np.repeat(np.asarray(per_robot, dtype=np.float64), self.joints)

    def predict_each(self, dt: np.ndarray) -> None:
        """Advance each joint by its own ``dt: [n]`` s (0 leaves a joint as it is; negative is treated as 0)."""
        dt = np.maximum(np.asarray(dt, dtype=np.float64), 0.0)
        self.x, self.P = _predicted(self.x, self.P, dt, self.jerk_psd)

    def update(self, q: np.ndarray, qd: np.ndarray | None, *, mask: np.ndarray | None = None) -> np.ndarray:
        """As `JointKalmanFilter.update`; every joint with position and velocity (the fleet's case) is fused
        element by element over all joints at once (`_update_every_joint_soa`), the rest as there."""
        if mask is None and qd is not None:
            return self._update_every_joint_soa(np.asarray(q, dtype=np.float64), np.asarray(qd, dtype=np.float64))
        return super().update(q, qd, mask=mask)

    def _update_every_joint_soa(self, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """`JointKalmanFilter._update_every_joint` (same formulas, same Joseph form ``P' = B + (K R - B Hᵀ) Kᵀ``,
        ``B = (I - K H) P``) written out per matrix element on ``[.., n]`` arrays: NumPy's stacked 2 x 2 and 3 x 3
        products cost ~0.1 µs per joint each, an element-wise operation over every joint of the fleet ~1 µs in all.
        Equal to it to rounding (tests/test_fleet_batched_kalman.py)."""
        x, P = self.x, self.P
        n = self.n
        y = np.empty((n, 2))  # [n, 2] innovation (position, velocity)
        np.subtract(q, x[:, 0], out=y[:, 0])
        np.subtract(qd, x[:, 1], out=y[:, 1])
        a = self.noise_adapt_rate
        if a > 0.0:  # as `_adapt_noise`: r <- max((1-a) r + a (min(y², 9 S) - H P Hᵀ), floor)
            hph = P.reshape(n, 9)[:, 0:5:4]  # [n, 2] H P Hᵀ diagonal (P00, P11), a view
            sample = np.minimum(y * y, 9.0 * (hph + self.r)) - hph
            self.r = np.maximum((1.0 - a) * self.r + a * sample, self.r_floor)
        r0, r1 = self.r[:, 0], self.r[:, 1]
        Pt = np.ascontiguousarray(P.transpose(1, 2, 0))  # [3, 3, n]: element (i, j) of every joint's P
        y0, y1 = y[:, 0], y[:, 1]
        s00, s11, s01, s10 = Pt[0, 0] + r0, Pt[1, 1] + r1, Pt[0, 1], Pt[1, 0]  # S = H P Hᵀ + R
        inv_det = 1.0 / (s00 * s11 - s01 * s10)
        i00, i01, i10, i11 = s11 * inv_det, -s01 * inv_det, -s10 * inv_det, s00 * inv_det  # S⁻¹
        w0, w1 = i00 * y0 + i01 * y1, i10 * y0 + i11 * y1  # S⁻¹ y
        gated = y0 * w0 + y1 * w1 > self.gate_chi2  # squared Mahalanobis distance yᵀ S⁻¹ y
        g0, g1 = Pt[:, 0], Pt[:, 1]  # [3, n] the columns of P Hᵀ
        k0, k1 = g0 * i00 + g1 * i10, g0 * i01 + g1 * i11  # [3, n] the columns of K = P Hᵀ S⁻¹
        x_new = x.T + g0 * w0 + g1 * w1  # [3, n] x + K y
        B = Pt - (k0[:, None] * Pt[0] + k1[:, None] * Pt[1])  # [3, 3, n] (I - K H) P
        c0, c1 = k0 * r0 - B[:, 0], k1 * r1 - B[:, 1]  # [3, n] the columns of K R - B Hᵀ
        P_new = B + c0[:, None] * k0 + c1[:, None] * k1  # [3, 3, n]
        x_new = np.ascontiguousarray(x_new.T)
        P_new = np.ascontiguousarray(P_new.transpose(2, 0, 1))
        if gated.any():  # a gated joint keeps its predicted state
            x_new[gated] = x[gated]
            P_new[gated] = P[gated]
        self.x, self.P = x_new, P_new
        return gated

    fusion_kernel = None
    """A `FleetFusionKernel` for this filter's joints, if the fleet fuses with Warp (set by the fleet; False: none
    could be made)."""

    def predict_update_each(self, dt: np.ndarray, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """`predict_each` by ``dt: [n]`` s, then `update` of every joint with ``q``, ``qd`` (``[n]`` each); returns
        ``gated: [n]`` bool. In one Warp kernel launch when ``fusion_kernel`` is set (equal to rounding,
        tests/test_fleet_batched_kalman_internals.py), else those two calls."""
        if self.fusion_kernel:
            return self.fusion_kernel.run(self, dt, q, qd)
        self.predict_each(dt)
        return self.update(q, qd)

    def predicted_each(self, dt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(x [n, 3], P [n, 3, 3])`` predicted ``dt: [n]`` s ahead, without changing the filter."""
        dt = np.maximum(np.asarray(dt, dtype=np.float64), 0.0)
        return _predicted(self.x, self.P, dt, self.jerk_psd)


def _predicted(x: np.ndarray, P: np.ndarray, dt: np.ndarray, jerk_psd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(F x, F P Fᵀ + Q)`` for each joint's own ``dt: [n]`` s (>= 0), ``x: [n, 3]``, ``P: [n, 3, 3]``, with F and Q
    of `twin_ext.estimation._kalman.transition` / `process_noise` written out per matrix element on ``[.., n]`` arrays
    (NumPy's stacked 3 x 3 products cost ~0.1 µs per joint each, an element-wise operation over every joint ~1 µs in
    all); equal to those to rounding (tests/test_fleet_batched_kalman.py)."""
    b = 0.5 * dt * dt
    xt = x.T  # [3, n] views
    x_new = np.empty((3, len(dt)))
    x_new[0] = xt[0] + dt * xt[1] + b * xt[2]
    x_new[1] = xt[1] + dt * xt[2]
    x_new[2] = xt[2]
    Pt = np.ascontiguousarray(P.transpose(1, 2, 0))  # [3, 3, n]
    M = np.empty_like(Pt)  # F P
    M[0] = Pt[0] + dt * Pt[1] + b * Pt[2]
    M[1] = Pt[1] + dt * Pt[2]
    M[2] = Pt[2]
    out = np.empty_like(Pt)  # F P Fᵀ
    out[:, 0] = M[:, 0] + dt * M[:, 1] + b * M[:, 2]
    out[:, 1] = M[:, 1] + dt * M[:, 2]
    out[:, 2] = M[:, 2]
    d2 = dt * dt
    d3 = d2 * dt
    d4 = d3 * dt
    q01, q02, q12 = jerk_psd * (d4 / 8), jerk_psd * (d3 / 6), jerk_psd * (d2 / 2)
    out[0, 0] += jerk_psd * (d4 * dt / 20)
    out[0, 1] += q01
    out[1, 0] += q01
    out[0, 2] += q02
    out[2, 0] += q02
    out[1, 1] += jerk_psd * (d3 / 3)
    out[1, 2] += q12
    out[2, 1] += q12
    out[2, 2] += jerk_psd * dt
    return np.ascontiguousarray(x_new.T), np.ascontiguousarray(out.transpose(2, 0, 1))
