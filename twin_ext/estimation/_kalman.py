# SPDX-License-Identifier: Apache-2.0
"""`JointKalmanFilter`: one constant-acceleration Kalman filter per joint, batched over joints (NumPy).

Model (per joint, state ``x = [q, qd, qdd]``): the joint's jerk is white noise with power spectral density
``jerk_psd`` [rad²/s⁵ | m²/s⁵]. Over a step ``dt``:

    x' = F x,   F = [[1, dt, dt²/2], [0, 1, dt], [0, 0, 1]]
    Q  = jerk_psd * [[dt⁵/20, dt⁴/8, dt³/6], [dt⁴/8, dt³/3, dt²/2], [dt³/6, dt²/2, dt]]

Measurements are position and, when the robot sends it, velocity: ``z = H x + v``, ``v ~ N(0, R)`` with
``R = diag(r_q, r_qd)``. Updates use the Joseph form, which keeps ``P`` symmetric positive
semi-definite in floating point. Each joint has its own Mahalanobis gate: an innovation whose squared
distance exceeds ``gate_chi2`` (chi-square, 2 dof with velocity, 1 without) leaves that joint untouched.

Adaptive measurement noise (``noise_adapt_rate`` > 0). The configured ``sigma_q``/``sigma_qd`` are a
floor, not a promise: a robot whose encoders or velocity estimates are noisier than configured would
otherwise have most of its samples gated out as outliers. Per joint and channel, ``r`` follows the
innovations, ``r <- (1-a) r + a (y² - H P Hᵀ)`` (innovation-based estimation: E[y²] = H P Hᵀ + R for a
consistent filter), never below the configured variance. Each ``y²`` is clipped at ``9 S`` (3 sigma of
the current innovation spread) so a single outlier moves ``r`` little; gated innovations count too,
or a filter that starts too confident would never learn.

Why constant acceleration: a robot arm's joint trajectories are smooth (position, velocity and acceleration
continuous), so a local quadratic predicts them well over the 10–50 ms of network latency we must bridge,
and it needs nothing from the robot but its measurements.
"""

from __future__ import annotations

import numpy as np

__all__ = ["JointKalmanFilter", "transition", "process_noise"]


def transition(dt: float) -> np.ndarray:
    """``[3, 3]`` constant-acceleration transition over ``dt`` seconds."""
    return np.array([[1.0, dt, 0.5 * dt * dt], [0.0, 1.0, dt], [0.0, 0.0, 1.0]])


def process_noise(dt: float, jerk_psd: np.ndarray) -> np.ndarray:
    """``[n, 3, 3]`` white-jerk process noise over ``dt`` s for per-joint PSDs ``jerk_psd: [n]``."""
    d2, d3, d4, d5 = dt**2, dt**3, dt**4, dt**5
    base = np.array([[d5 / 20, d4 / 8, d3 / 6], [d4 / 8, d3 / 3, d2 / 2], [d3 / 6, d2 / 2, dt]])
    return np.asarray(jerk_psd, dtype=np.float64)[:, None, None] * base


class JointKalmanFilter:
    """Batched per-joint constant-acceleration filter.

    Args:
        n: number of joints.
        jerk_psd: ``[n]`` or scalar white-jerk PSD, rad²/s⁵ | m²/s⁵.
        sigma_q: ``[n]`` or scalar position measurement noise (1 sigma), rad | m.
        sigma_qd: ``[n]`` or scalar velocity measurement noise (1 sigma), rad/s | m/s.
        init_sigma_qd: velocity uncertainty at initialisation when no velocity is measured, rad/s | m/s.
        init_sigma_qdd: acceleration uncertainty at initialisation, rad/s² | m/s².
        gate_chi2: squared Mahalanobis distance above which a joint's measurement is rejected.
        noise_adapt_rate: weight of each innovation in the measurement-noise estimate (0 = fixed noise).
    """

    def __init__(
        self,
        n: int,
        *,
        jerk_psd,
        sigma_q,
        sigma_qd,
        init_sigma_qd: float = 1.0,
        init_sigma_qdd: float = 10.0,
        gate_chi2: float = 13.8,
        noise_adapt_rate: float = 0.0,
    ) -> None:
        self.n = int(n)
        self.jerk_psd = np.broadcast_to(np.asarray(jerk_psd, dtype=np.float64), (self.n,)).copy()
        self.sigma_q = np.broadcast_to(np.asarray(sigma_q, dtype=np.float64), (self.n,)).copy()
        self.sigma_qd = np.broadcast_to(np.asarray(sigma_qd, dtype=np.float64), (self.n,)).copy()
        self.init_sigma_qd = float(init_sigma_qd)
        self.init_sigma_qdd = float(init_sigma_qdd)
        self.gate_chi2 = float(gate_chi2)
        self.noise_adapt_rate = float(noise_adapt_rate)
        self.r_floor = np.stack([self.sigma_q**2, self.sigma_qd**2], axis=1)
        """``[n, 2]`` the configured measurement-noise variances (position, velocity): `r` never goes below."""
        self.r = self.r_floor.copy()
        """``[n, 2]`` measurement-noise variances in use (position, velocity): the configured ones, raised
        online when ``noise_adapt_rate`` > 0."""
        self.x = np.zeros((self.n, 3))
        """``[n, 3]`` state per joint: q rad|m, qd rad/s|m/s, qdd rad/s²|m/s²."""
        self.P = np.zeros((self.n, 3, 3))
        """``[n, 3, 3]`` state covariance per joint."""
        self.initialized = np.zeros(self.n, dtype=bool)
        self._steps: dict[float, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        self._steps_psd: np.ndarray | None = None  # the jerk_psd the cached process noise was made with

    # ---------------------------------------------------------------------------------------------
    def initialize(self, joints: np.ndarray, q: np.ndarray, qd: np.ndarray | None) -> None:
        """(Re)start the joints ``joints: [k]`` (index array or bool mask) from a measurement."""
        idx = np.arange(self.n)[joints]
        self.x[idx, 0] = q[idx]
        self.x[idx, 1] = 0.0 if qd is None else qd[idx]
        self.x[idx, 2] = 0.0
        var_qd = self.init_sigma_qd**2 if qd is None else self.r[idx, 1]
        self.P[idx] = 0.0
        self.P[idx, 0, 0] = self.r[idx, 0]
        self.P[idx, 1, 1] = var_qd
        self.P[idx, 2, 2] = self.init_sigma_qdd**2
        self.initialized[idx] = True

    def predict(self, dt: float) -> None:
        """Advance the state by ``dt`` >= 0 seconds (in place)."""
        if dt <= 0.0:
            return
        ft, fft, q = self._step(dt)
        self.x = self.x @ ft
        # F P Fᵀ as one [n, 9] @ [9, 9] product (vec(F P Fᵀ) = (F ⊗ F) vec(P)): one BLAS call instead of two
        # stacked 3 x 3 products, which NumPy loops over joint by joint (~3x the time for a 9-joint arm).
        self.P = (self.P.reshape(self.n, 9) @ fft).reshape(self.n, 3, 3) + q

    def _step(self, dt: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``Fᵀ`` ``[3, 3]``, ``(F ⊗ F)ᵀ`` ``[9, 9]`` and the process noise ``[n, 3, 3]`` over ``dt`` s, cached per
        ``dt`` (a steady stream has a handful of distinct steps; the same values as `transition` and
        `process_noise`). The cache starts again when ``jerk_psd`` is assigned a new array."""
        cache = self._steps
        if self._steps_psd is not self.jerk_psd:
            cache.clear()
            self._steps_psd = self.jerk_psd
        hit = cache.get(dt)
        if hit is None:
            if len(cache) >= _MAX_STEPS:
                cache.clear()
            f = transition(dt)
            hit = cache[dt] = (f.T, np.kron(f, f).T.copy(), process_noise(dt, self.jerk_psd))
        return hit

    def predicted(self, dt: float, *, covariance_dt: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(x, P) predicted ``dt`` s ahead without changing the filter; the covariance may be grown over a
        longer ``covariance_dt`` (used when the displayed extrapolation is capped but time keeps passing)."""
        f = transition(max(dt, 0.0))
        x = self.x @ f.T
        g = transition(max(covariance_dt if covariance_dt is not None else dt, 0.0))
        P = g @ self.P @ g.T + process_noise(
            max(covariance_dt if covariance_dt is not None else dt, 0.0), self.jerk_psd
        )
        return x, P

    def update(self, q: np.ndarray, qd: np.ndarray | None, *, mask: np.ndarray | None = None) -> np.ndarray:
        """Fuse a measurement ``q: [n]`` (and ``qd: [n]`` or None) into the joints that pass the gate.

        Args:
            mask: ``[n]`` bool, the joints the measurement covers (default all).

        Returns:
            ``[n]`` bool, True where a covered joint's measurement was gated out (rejected).

        The innovation covariance is at most 2 x 2, so it is inverted in closed form. Every joint with position
        and velocity (the common case) takes `_update_every_joint`, ~30 small NumPy operations (~25 µs for a 9-joint
        arm on a busy 2-core VM, ~35 µs on the general path), which matters when telemetry floods in and late
        samples are re-filtered.
        """
        covered = None if mask is None else np.asarray(mask, dtype=bool)
        if covered is not None and covered.all():
            covered = None  # every joint: basic slicing below, no fancy-index copies
        if covered is None and qd is not None:
            return self._update_every_joint(q, qd)
        x, P, r = self.x, self.P, self.r
        m = 1 if qd is None else 2
        y = np.empty((self.n, m))  # innovation per joint and channel
        y[:, 0] = q - x[:, 0]
        if m == 2:
            y[:, 1] = qd - x[:, 1]
        hph = P.diagonal(axis1=1, axis2=2)[:, :m].copy()  # H P H^T diagonal (contiguous: faster arithmetic)
        if self.noise_adapt_rate > 0.0:
            self._adapt_noise(y, hph, covered)
        s = hph + r[:, :m]
        s00 = s[:, 0]
        if m == 1:
            d2 = y[:, 0] * y[:, 0] / s00
        else:
            s11 = s[:, 1]
            s01 = P[:, 0, 1]
            det = s00 * s11 - s01 * s01
            y0, y1 = y[:, 0], y[:, 1]
            d2 = (s11 * y0 * y0 - 2.0 * s01 * y0 * y1 + s00 * y1 * y1) / det
        gated = d2 > self.gate_chi2
        if covered is not None:
            gated &= covered
            ok = covered & ~gated
        else:
            ok = ~gated
        everyone = not gated.any() if covered is None else bool(ok.all())
        if not everyone and not ok.any():
            return gated
        sel = slice(None) if everyone else ok  # basic slicing in the common case: no fancy-index copies
        Pk = P[sel]  # [k, 3, 3]
        PHt = Pk[:, :, :m]  # [k, 3, m]
        k = len(Pk)
        if m == 1:
            K = PHt / s00[sel][:, None, None]
        else:
            S_inv = np.empty((k, 2, 2))  # adj(S) / det(S)
            flat = S_inv.reshape(k, 4)
            flat[:, ::3] = s[sel, ::-1]  # (s11, s00) on the diagonal
            flat[:, 1:3] = -s01[sel][:, None]
            S_inv *= (1.0 / det[sel])[:, None, None]
            K = PHt @ S_inv  # [k, 3, 2]
        x[sel] += (K @ y[sel][:, :, None])[:, :, 0]
        # Joseph form: P <- (I - K H) P (I - K H)^T + K R K^T (stays symmetric positive semi-definite).
        A = np.empty((k, 3, 3))
        A[:, :, :m] = _EYE3[:, :m] - K
        A[:, :, m:] = _EYE3[:, m:]
        Kt = K.transpose(0, 2, 1)
        KR = K * r[sel][:, None, :m]
        P[sel] = A @ Pk @ A.transpose(0, 2, 1) + KR @ Kt
        return gated

    def _update_every_joint(self, q: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """`update` of every joint with position ``q: [n]`` and velocity ``qd: [n]``, in as few NumPy calls as it
        takes (each costs ~0.5-1 µs whatever its 9-joint size): new x, P, r arrays instead of masked writes, gated
        joints put back afterwards. The same filter as the general path, to rounding (tests/test_estimation.py).
        Joseph form written as ``P' = B + (K R - B Hᵀ) Kᵀ`` with ``B = (I - K H) P``: algebraically
        ``(I - K H) P (I - K H)ᵀ + K R Kᵀ``, so it keeps that form's first-order insensitivity to errors in K."""
        x, P = self.x, self.P
        n = self.n
        y = np.array((q, qd)).T - x[:, :2]  # [n, 2] innovation (position, velocity)
        hph = P.reshape(n, 9)[:, 0:5:4]  # [n, 2] H P Hᵀ diagonal (P00, P11), a view
        a = self.noise_adapt_rate
        if a > 0.0:  # as `_adapt_noise`: r <- max((1-a) r + a (min(y², 9 S) - H P Hᵀ), floor)
            r = self.r
            sample = np.minimum(y * y, 9.0 * (hph + r)) - hph
            r = self.r = np.maximum((1.0 - a) * r + a * sample, self.r_floor)
        else:
            r = self.r
        S = P[:, :2, :2] + r[:, :, None] * _EYE2  # [n, 2, 2] innovation covariance H P Hᵀ + R
        adj = S[:, ::-1, ::-1] * _ADJUGATE_SIGNS  # [[S11, -S01], [-S10, S00]]
        det = (S[:, 0, :] * adj[:, :, 0]) @ _ONES2  # S00 S11 - S01 S10
        S_inv = adj * (1.0 / det)[:, None, None]
        w = (S_inv @ y[:, :, None])[:, :, 0]  # [n, 2] S⁻¹ y
        gated = (y * w) @ _ONES2 > self.gate_chi2  # squared Mahalanobis distance yᵀ S⁻¹ y
        G = P[:, :, :2]  # [n, 3, 2] P Hᵀ
        K = G @ S_inv  # [n, 3, 2]
        Kt = K.transpose(0, 2, 1)
        x_new = x + (G @ w[:, :, None])[:, :, 0]  # x + K y
        B = P - K @ P[:, :2, :]  # (I - K H) P
        P_new = B + (K * r[:, None, :] - B[:, :, :2]) @ Kt
        if gated.any():  # a gated joint keeps its predicted state
            x_new[gated] = x[gated]
            P_new[gated] = P[gated]
        self.x, self.P = x_new, P_new
        return gated

    def _adapt_noise(self, y: np.ndarray, hph: np.ndarray, covered: np.ndarray | None) -> None:
        """Move the measured channels' noise variances toward what the innovations ``y: [n, m]`` show (in the
        joints ``covered``, ``[n]`` bool; None = all)."""
        m = y.shape[1]
        r = self.r[:, :m]
        spread = hph + r  # [n, m] current innovation variance per channel
        sample = np.minimum(y * y, 9.0 * spread) - hph
        a = self.noise_adapt_rate
        if covered is None:
            np.maximum((1.0 - a) * r + a * sample, self.r_floor[:, :m], out=r)
        else:
            updated = np.maximum((1.0 - a) * r + a * sample, self.r_floor[:, :m])
            self.r[covered, :m] = updated[covered]


_EYE3 = np.eye(3)
_EYE2 = np.eye(2)
_ONES2 = np.ones(2)
_ADJUGATE_SIGNS = np.array([[1.0, -1.0], [-1.0, 1.0]])
_MAX_STEPS = 256
"""Most cached step sizes per filter (`JointKalmanFilter._step`); beyond it the cache starts again."""
