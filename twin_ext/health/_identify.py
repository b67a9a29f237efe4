# SPDX-License-Identifier: Apache-2.0
"""Online identification of friction, torque-sensor bias and payload from the inverse-dynamics residual.

The residual of the nominal model, ``e = tau_m - (M(q) qdd + C(q, qd) qd + g(q) + tau_f,nominal(qd))`` on the
monitored joints, is linear in the deviations the robot can have from its model:

    e_j = Y_payload[j] . theta_payload + dF_c,j tanh(qd_j / eps) + dF_v,j qd_j + b_j + noise

with ``theta_payload`` the ten inertial parameters of a payload on the holding body (`RigidBodyDynamics.
inertial_regressor`), ``dF_c, dF_v`` the change of Coulomb and viscous friction and ``b`` a torque-sensor bias.
`RecursiveLeastSquares` estimates them with exponential forgetting (memory ``window_s``), a prior that keeps
unexcited directions at their prior spread (no covariance wind-up), and a noise spread learned from the
innovations, inflated by their correlation so confidence intervals stay honest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

__all__ = ["FrictionEstimate", "PayloadEstimate", "RecursiveLeastSquares", "ModelIdentifier"]

_Z95 = 1.959964
_PAIR = np.arange(2)


class RecursiveLeastSquares:
    """Vector-measurement RLS with forgetting and a covariance ceiling.

    Args:
        prior_mean, prior_std: ``[P]`` parameter prior (the ceiling of the covariance's diagonal is ``prior_std²``).
        forgetting: lambda in (0, 1]; memory ``1 / (1 - lambda)`` updates.
    """

    def __init__(self, prior_mean: np.ndarray, prior_std: np.ndarray, *, forgetting: float) -> None:
        self.prior_mean = np.asarray(prior_mean, dtype=np.float64).copy()
        self.prior_var = np.asarray(prior_std, dtype=np.float64) ** 2
        self.forgetting = float(forgetting)
        self.theta = self.prior_mean.copy()
        self.covariance = np.diag(self.prior_var)
        self.updates = 0

    def reset(self, block: slice | None = None) -> None:
        """Forget what was learned about ``block`` (default: everything); its estimate keeps its value."""
        index = np.arange(len(self.theta))[block if block is not None else slice(None)]
        self.covariance[index, :] = 0.0
        self.covariance[:, index] = 0.0
        self.covariance[index, index] = self.prior_var[index]

    def update(
        self, phi: np.ndarray, y: np.ndarray, noise_var: np.ndarray, *, forgetting: float | None = None
    ) -> np.ndarray:
        """One update with ``y [J] = phi [J, P] @ theta + noise`` (variances ``noise_var [J]``), forgetting with
        ``forgetting`` (default the constructor's); returns the innovation ``y - phi @ theta`` before the update."""
        p = self.covariance
        innovation = y - phi @ self.theta
        s = phi @ p @ phi.T + np.diag(noise_var)
        gain = np.linalg.solve(s, phi @ p).T  # P phi^T S^-1 (S symmetric)
        self.theta = self.theta + gain @ innovation
        p = (p - gain @ phi @ p) / (self.forgetting if forgetting is None else forgetting)
        p = 0.5 * (p + p.T)
        # Ceiling: forgetting must not inflate unexcited directions beyond the prior (wind-up).
        d = np.diag(p)
        over = d > self.prior_var
        if np.any(over):
            scale = np.ones_like(d)
            scale[over] = np.sqrt(self.prior_var[over] / d[over])
            p = p * np.outer(scale, scale)
        self.covariance = p
        self.updates += 1
        return innovation

    def std(self) -> np.ndarray:
        """``[P]`` one-sigma uncertainty of each parameter."""
        return np.sqrt(np.clip(np.diag(self.covariance), 0.0, None))


@dataclass(frozen=True)
class FrictionEstimate:
    """One joint's identified friction and torque-sensor bias.

    Attributes:
        joint: name. coulomb, viscous: ``F_c`` N·m and ``F_v`` N·m·s/rad, with 95 % half-widths ``*_ci``.
        bias: torque-sensor offset, N·m (``bias_ci`` its 95 % half-width).
        reference_speed: the speed ``v_ref`` the ratio is taken at, rad/s.
        ratio: ``(F_c + F_v v_ref) / nominal`` at the reference speed; ``ratio_ci`` its 95 % half-width.
        identifiable: the joint has moved in both directions within the memory; else ``note`` says what is missing.
    """

    joint: str
    coulomb: float
    coulomb_ci: float
    viscous: float
    viscous_ci: float
    bias: float
    bias_ci: float
    reference_speed: float
    ratio: float
    ratio_ci: float
    identifiable: bool
    note: str = ""


@dataclass(frozen=True)
class PayloadEstimate:
    """The identified payload on the holding link (kg; centre of mass in that link's frame, m)."""

    link: str
    mass: float
    mass_ci: float
    com: tuple[float, float, float]
    com_ci: tuple[float, float, float]
    identifiable: bool
    note: str = ""


class ModelIdentifier:
    """Friction (Coulomb + viscous), sensor bias per monitored joint, and one payload, from the ID residual.

    Args:
        joint_names: ``[J]`` monitored joints (names, for results). nominal_coulomb, nominal_viscous: ``[J]``.
        payload_link: name of the holding link (for results); ``link_rotation``/``link_offset``: that link's
            frame in its body's frame (results are given in the link frame).
        window_s: memory of the estimate, s (forgetting by elapsed sample time, so any rate works).
        friction_eps: velocity scale of the smooth Coulomb term, rad/s. reference_speed: rad/s.
        min_speed: speed above which a joint counts as moving (identifiability), rad/s.
    """

    def __init__(
        self,
        joint_names: tuple[str, ...],
        nominal_coulomb: np.ndarray,
        nominal_viscous: np.ndarray,
        *,
        payload_link: str,
        link_rotation: np.ndarray,
        link_offset: np.ndarray,
        window_s: float,
        friction_eps: float,
        reference_speed: float,
        min_speed: float,
    ) -> None:
        self.joint_names = tuple(joint_names)
        nj = len(joint_names)
        self.nominal_coulomb = np.asarray(nominal_coulomb, dtype=np.float64)
        self.nominal_viscous = np.asarray(nominal_viscous, dtype=np.float64)
        self.payload_link = payload_link
        self._link_rotation = np.asarray(link_rotation, dtype=np.float64)
        self._link_offset = np.asarray(link_offset, dtype=np.float64)
        self.eps = float(friction_eps)
        self.reference_speed = float(reference_speed)
        self.min_speed = float(min_speed)
        self.payload = slice(0, 10)
        self.n_params = 10 + 3 * nj
        # Priors: a payload of a few kg within ~0.3 m; friction changes of tens of N·m at most; small biases.
        prior_std = np.concatenate([[5.0, 1.5, 1.5, 1.5, 0.3, 0.3, 0.3, 0.3, 0.3, 0.3], np.tile([20.0, 20.0, 5.0], nj)])
        self.window_s = float(window_s)
        self.rls = RecursiveLeastSquares(np.zeros(self.n_params), prior_std, forgetting=1.0)
        self._moved_positive = np.zeros(nj)  # seconds of motion each way within the memory
        self._moved_negative = np.zeros(nj)
        self._speed_sum = np.zeros(nj)  # time-weighted |qd| while moving, within the memory
        self._speed_time = np.zeros(nj)

    def regressor(self, payload_rows: np.ndarray, qd: np.ndarray) -> np.ndarray:
        """``[N, J, P]`` regressor from the payload rows ``[N, J, 10]`` and the monitored velocities ``qd [N, J]``."""
        n, nj = qd.shape
        phi = np.zeros((n, nj, self.n_params))
        phi[:, :, :10] = payload_rows
        cols = 10 + 3 * np.arange(nj)
        rows = np.arange(nj)
        phi[:, rows, cols] = np.tanh(qd / self.eps)
        phi[:, rows, cols + 1] = qd
        phi[:, rows, cols + 2] = 1.0
        return phi

    def update(
        self, phi: np.ndarray, residual: np.ndarray, noise_var: np.ndarray, qd: np.ndarray, dt: np.ndarray
    ) -> np.ndarray:
        """Fuse ``N`` samples (``phi [N, J, P]``, ``residual [N, J]``, ``noise_var [J]`` or ``[N, J]``, ``qd [N, J]``,
        ``dt [N]`` seconds each sample stands for); returns the innovations ``[N, J]`` before each update.

        A joint slower than ``min_speed`` contributes nothing that sample: near rest its dry friction is
        indeterminate (static friction holds any torque up to the Coulomb level), which a regression would blame
        on the bias and the payload."""
        out = np.empty_like(residual)
        var = np.broadcast_to(noise_var, residual.shape)
        resting = np.abs(qd) < self.min_speed
        for k in range(len(residual)):
            h = float(dt[k])
            decay = math.exp(-h / self.window_s)
            v = np.where(resting[k], 1e12, var[k])  # a resting joint's row carries no weight
            out[k] = self.rls.update(phi[k], residual[k], v, forgetting=decay)
            self._moved_positive = self._moved_positive * decay + h * (qd[k] > self.min_speed)
            self._moved_negative = self._moved_negative * decay + h * (qd[k] < -self.min_speed)
            moving = ~resting[k]
            self._speed_sum = self._speed_sum * decay + h * np.where(moving, np.abs(qd[k]), 0.0)
            self._speed_time = self._speed_time * decay + h * moving
        return out

    def trusted(self) -> np.ndarray:
        """``[J]`` bool: joints whose friction and bias estimates may be used by the model (they moved both ways
        within the memory and their spread fell below a fifth of the prior's); before that the nominal values are
        used, so an early, poorly excited estimate never reaches the observer."""
        enough = 0.02 * self.window_s
        moved = (self._moved_positive > enough) & (self._moved_negative > enough)
        nj = len(self.joint_names)
        c = 10 + 3 * np.arange(nj)
        std = self.rls.std()
        prior = np.sqrt(self.rls.prior_var)
        settled = (std[c] < 0.2 * prior[c]) & (std[c + 1] < 0.2 * prior[c + 1]) & (std[c + 2] < 0.2 * prior[c + 2])
        return moved & settled

    def explained(self, phi: np.ndarray) -> np.ndarray:
        """``[N, J]`` the part of the residual the current estimate explains."""
        return phi @ self.rls.theta

    def forget_payload(self) -> None:
        """A payload change was detected: re-identify the payload from fresh data."""
        self.rls.reset(self.payload)

    # ---- results -----------------------------------------------------------------------------------------
    def reference_speeds(self) -> np.ndarray:
        """``[J]`` rad/s: the configured reference speed, or (0) each joint's mean speed while moving (1 rad/s
        until it has moved)."""
        if self.reference_speed > 0:
            return np.full(len(self.joint_names), self.reference_speed)
        typical = self._speed_sum / np.maximum(self._speed_time, 1e-12)
        return np.where(self._speed_time > 0.5, typical, 1.0)

    def friction(self, ci_inflation: np.ndarray | float = 1.0) -> tuple[FrictionEstimate, ...]:
        """Per joint: identified friction, bias and the friction ratio to nominal (95 % intervals times
        ``ci_inflation`` ``[J]``, the residuals' correlation correction)."""
        theta, std_all = self.rls.theta, self.rls.std()
        nj = len(self.joint_names)
        inflation = np.broadcast_to(np.asarray(ci_inflation, dtype=np.float64), (nj,))
        speeds = self.reference_speeds()
        # All joints at once (the per-joint arithmetic, elementwise): c = 10 + 3 j holds F_c, F_v, b of joint j.
        c = 10 + 3 * np.arange(nj)
        fc = self.nominal_coulomb + theta[c]
        fv = self.nominal_viscous + theta[c + 1]
        s = std_all[10 : 10 + 3 * nj].reshape(nj, 3) * inflation[:, None]
        nominal = self.nominal_coulomb + self.nominal_viscous * speeds
        block = (
            self.rls.covariance[c[:, None, None] + _PAIR[:, None], c[:, None, None] + _PAIR]
            * (inflation**2)[:, None, None]
        )  # [J, 2, 2]: the Coulomb-viscous covariance of each joint
        # grad @ cov @ grad with grad = (1, v_ref), summed in the order of that matrix product
        quad = (1.0 * block[:, 0, 0] + speeds * block[:, 1, 0]) * 1.0 + (
            1.0 * block[:, 0, 1] + speeds * block[:, 1, 1]
        ) * speeds
        eff_std = np.sqrt(np.maximum(quad, 0.0))
        positive = nominal > 0
        safe = np.where(positive, nominal, 1.0)
        ratio = np.where(positive, (fc + fv * speeds) / safe, math.nan)
        ratio_ci = np.where(positive, _Z95 * eff_std / safe, math.nan)
        enough = 0.02 * self.window_s  # moving each way for ~2 % of the memory
        pos_ok = (self._moved_positive > enough).tolist()
        neg_ok = (self._moved_negative > enough).tolist()
        cis = (_Z95 * s).tolist()
        rows = zip(
            self.joint_names, fc.tolist(), fv.tolist(), theta[c + 2].tolist(), cis, speeds.tolist(),
            ratio.tolist(), ratio_ci.tolist(), pos_ok, neg_ok, strict=True,
        )  # fmt: skip
        out = []
        for name, fc_j, fv_j, bias_j, ci_j, v_ref, ratio_j, ratio_ci_j, pos_j, neg_j in rows:
            both = pos_j and neg_j
            if both:
                note = ""
            else:
                missing = [d for d, ok in (("positive", pos_j), ("negative", neg_j)) if not ok]
                note = f"{name} has not moved in the {' and '.join(missing)} direction yet"
            out.append(
                FrictionEstimate(
                    joint=name,
                    coulomb=fc_j,
                    coulomb_ci=ci_j[0],
                    viscous=fv_j,
                    viscous_ci=ci_j[1],
                    bias=bias_j,
                    bias_ci=ci_j[2],
                    reference_speed=v_ref,
                    ratio=ratio_j,
                    ratio_ci=ratio_ci_j,
                    identifiable=both,
                    note=note,
                )
            )
        return tuple(out)

    def payload_estimate(self, ci_inflation: float = 1.0) -> PayloadEstimate:
        """The payload's mass and centre of mass in the holding link's frame, with 95 % half-widths."""
        theta = self.rls.theta[:4]
        cov = self.rls.covariance[:4, :4] * ci_inflation**2
        mass = float(theta[0])
        mass_ci = float(_Z95 * math.sqrt(max(cov[0, 0], 0.0)))
        if abs(mass) > 1e-6:
            com_body = theta[1:4] / mass
            # delta method for c = h / m: dc/dh = I/m, dc/dm = -h/m^2
            jac = np.hstack([-(theta[1:4] / mass**2)[:, None], np.eye(3) / mass])
            com_cov = jac @ cov @ jac.T
        else:
            com_body = np.zeros(3)
            com_cov = np.full((3, 3), np.inf)
        rot = self._link_rotation
        com_link = rot.T @ (com_body - self._link_offset)
        if np.all(np.isfinite(com_cov)):
            com_std = np.sqrt(np.clip(np.diag(rot.T @ com_cov @ rot), 0.0, None))
        else:  # no payload: its centre of mass is undefined
            com_std = np.full(3, np.inf)
        spread = self.rls.std()[:4] / np.sqrt(self.rls.prior_var[:4])
        identifiable = bool(spread[0] < 0.2)
        note = "" if identifiable else f"the {self.payload_link} has not moved enough to tell its payload yet"
        return PayloadEstimate(
            link=self.payload_link,
            mass=mass,
            mass_ci=mass_ci,
            com=tuple(float(x) for x in com_link),
            com_ci=tuple(float(_Z95 * x) for x in com_std),
            identifiable=identifiable,
            note=note,
        )
