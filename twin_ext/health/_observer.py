# SPDX-License-Identifier: Apache-2.0
"""`MomentumObserver`: the generalized momentum observer (De Luca; Haddadin, De Luca, Albu-Schäffer, T-RO 2017).

From the robot's model and its measured positions, velocities and drive efforts it estimates the external
joint torque (contact, collision, unmodelled friction or payload) without accelerations:

    r(t) = K ( p(t) - p(0) - integral_0^t ( tau_m - beta(q, qd) + r ) ds ),     p = M(q) qd,
    beta = g(q) - C(q, qd)^T qd + tau_f(qd)

so that ``dr/dt = K (tau_ext - r)``: ``r`` follows the external torque through a first-order filter of time
constant ``1 / K``. ``tau_f`` is the friction the model knows (nominal plus identified).

Discretely, between two samples ``h`` seconds apart the momentum balance gives the mean external torque
``(p_k - p_{k-1}) / h - (tau_m - beta)`` (trapezoid over the two samples) and the filter is advanced exactly,
``r_k = a r_{k-1} + (1 - a) tau_ext``, ``a = exp(-K h)``: stable for any step, so a burst of lost samples only
lengthens one step instead of making the observer ring (explicit integration diverges once ``K h > 2``).

The trapezoid is exact only for a drive effort that changes linearly between the samples. Over a long step (a
burst of lost samples) the robot may start, stop or reverse, and its drive effort then follows a path the two
end samples do not show: the mean of ``tau_m - beta`` over the step can be anywhere between the two end values
(for a monotone change), so the step's external torque is off by up to half their difference; a drive starting
a move inside a 105 ms gap read as 1.5 N·m, 7 sigmas, on a healthy robot. So:

* a step longer than ``max_step`` (a gap) is not integrated over: ``r`` only decays across it, as a first-order
  filter without input does, and the integration starts afresh from the sample after it. An external torque
  still acting then is seen within a step or two; one that came and went inside the gap cannot be told from the
  drive's unseen reaction to it (the momentum change holds both), and is not guessed at;
* for a shorter step, the bound is carried through the filter like ``r`` itself, ``u_k = a u_{k-1} + (1 - a)
  e_k`` with ``e_k`` half the change of ``tau_m - beta`` over the step, for its part beyond the regular spacing (a
  regular step's quadrature error is part of the residual's learned spread), in `quadrature_error`, so a
  detector can widen its spread by it.

After a restart (a gap, `reset`) the first sample is the new reference: its velocity noise enters the next
``r`` through the momentum difference with weight ``(1 - a) / h`` instead of the ``(1 - a)^2 / h`` of the steady
filter, so for a few samples r is noisier than its learned spread says (variance ``1 + a^(2m-1)`` times the
steady level, m samples later, when velocity noise dominates). `noise_inflation` reports ``1 + d^2`` (``d`` = 1
after the restart, times ``a`` per step), an upper bound of that.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..robot import RigidBodyDynamics

__all__ = ["MomentumObserver"]


class MomentumObserver:
    """Per-joint external torque estimate ``r`` (N·m | N) of one robot.

    Args:
        dynamics: the robot's `RigidBodyDynamics` (replace it with `set_dynamics` when a payload is identified).
        gain: K, 1/s.
        friction: ``qd [N, ndof] -> tau_f [N, ndof]``, the friction and damping efforts the model knows.

    Attributes:
        r: ``[ndof]`` the estimate after the last sample. quadrature_error: ``[N, ndof]`` after each sample of the
            last `update`, the bound ``u`` on the error of ``r`` that long steps left (N·m | N; 0 while samples
            come at the regular spacing). noise_inflation: ``[N]`` after each sample of the last `update`, the
            factor (1 to 2) by which the variance of r's sensor noise may exceed its steady level after a restart.
    """

    def __init__(
        self, dynamics: RigidBodyDynamics, *, gain: float, friction: Callable[[np.ndarray], np.ndarray]
    ) -> None:
        self.dynamics = dynamics
        self.gain = float(gain)
        self.friction = friction
        self.reset()

    def reset(self) -> None:
        """Start over from the next sample (after a gap, a restart or a model change)."""
        self.r = np.zeros(self.dynamics.ndof)
        self.u = np.zeros(self.dynamics.ndof)
        self.quadrature_error = np.zeros((0, self.dynamics.ndof))
        self.noise_inflation = np.ones(0)
        self._fresh = 1.0  # weight of the reference sample's noise in r (1 just after a restart, decays by a)
        self._last: tuple[float, np.ndarray, np.ndarray] | None = None

    def set_dynamics(self, dynamics: RigidBodyDynamics) -> None:
        """Use another model (e.g. with an identified payload) from the next sample on; restarts the observer."""
        self.dynamics = dynamics
        self.reset()

    def update(
        self,
        t: np.ndarray,
        q: np.ndarray,
        qd: np.ndarray,
        tau: np.ndarray,
        *,
        regular_step: float = 0.0,
        max_step: float = math.inf,
        terms: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> np.ndarray:
        """Advance over ``N`` samples in time order and return ``r`` after each: ``[N, ndof]``; the bound on its
        error from long steps is left in `quadrature_error` (``[N, ndof]``).

        Args:
            t: ``[N]`` sample times, s (increasing). q, qd, tau: ``[N, ndof]`` measured positions (rad|m),
                velocities (rad/s | m/s) and drive efforts (N·m | N).
            regular_step: the regular sample spacing, s: a step's part beyond it counts towards
                `quadrature_error` (0 = every step counts in full).
            max_step: longest step integrated over, s; across a longer one (a gap) the observer keeps no
                evidence: ``r`` and ``u`` only decay (``a r``), and it integrates afresh from the sample after it.
            terms: ``(p, g, C^T qd)``, each ``[N, ndof]``, of these samples under `dynamics` when the caller
                computed them already (`RigidBodyDynamics.observer_terms`; a fleet evaluates many robots' in one
                pass); default: computed here.
        """
        p, g, ctqd = self.dynamics.observer_terms(q, qd) if terms is None else terms
        beta = g - ctqd + self.friction(qd)
        base = tau - beta
        n = len(t)
        out = np.empty_like(p)
        bound = np.empty_like(p)
        inflation = np.ones(n)
        if n == 0:
            self.quadrature_error = bound
            self.noise_inflation = inflation
            return out
        # Each step's terms from the sample before it (the last one of the previous call for the first), for all
        # steps at once; only the filter's recursion runs sample by sample (the same arithmetic as step by step).
        first = 0 if self._last is not None else 1
        last = (float(t[-1]), p[-1], base[-1])
        if self._last is not None:
            t0, p0, base0 = self._last
            t_prev = np.concatenate([[t0], t[:-1]])
            p_prev = np.concatenate([p0[None], p[:-1]])
            base_prev = np.concatenate([base0[None], base[:-1]])
        else:
            t_prev, p_prev, base_prev = t[:-1], p[:-1], base[:-1]
            t, p, base = t[1:], p[1:], base[1:]
        h = np.asarray(t, dtype=np.float64) - t_prev
        used = (h > 0.0) & (h <= max_step)
        decay = np.exp(-self.gain * np.where(h > 0.0, h, 0.0))
        rate = np.divide(p - p_prev, h[:, None], out=np.zeros_like(p), where=used[:, None])
        external = rate - 0.5 * (base + base_prev)
        unseen = np.maximum(0.0, 1.0 - np.divide(regular_step, h, out=np.ones_like(h), where=used))
        weight_u = (1.0 - decay) * (0.5 * unseen)
        jump = np.abs(base - base_prev)
        if first:
            out[0] = self.r
            bound[0] = self.u
        for k, (hk, usable) in enumerate(zip(h.tolist(), used.tolist(), strict=True)):
            if hk > 0.0:
                a = decay[k]
                if usable:
                    self.r = a * self.r + (1.0 - a) * external[k]
                    self.u = a * self.u + weight_u[k] * jump[k]
                    inflation[k + first] = 1.0 + self._fresh**2
                    self._fresh *= a
                else:  # too long to integrate over: no evidence from this step, the filter only decays
                    self.r = a * self.r
                    self.u = a * self.u
                    self._fresh = 1.0
            out[k + first] = self.r
            bound[k + first] = self.u
        self._last = last
        self.quadrature_error = bound
        self.noise_inflation = inflation
        return out
