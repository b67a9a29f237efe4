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
"""

from __future__ import annotations

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
        self._last: tuple[float, np.ndarray, np.ndarray] | None = None

    def set_dynamics(self, dynamics: RigidBodyDynamics) -> None:
        """Use another model (e.g. with an identified payload) from the next sample on; restarts the observer."""
        self.dynamics = dynamics
        self.reset()

    def update(self, t: np.ndarray, q: np.ndarray, qd: np.ndarray, tau: np.ndarray) -> np.ndarray:
        """Advance over ``N`` samples in time order and return ``r`` after each: ``[N, ndof]``.

        Args:
            t: ``[N]`` sample times, s (increasing). q, qd, tau: ``[N, ndof]`` measured positions (rad|m),
                velocities (rad/s | m/s) and drive efforts (N·m | N).
        """
        dyn = self.dynamics
        p, g, ctqd = dyn.observer_terms(q, qd)
        beta = g - ctqd + self.friction(qd)
        base = tau - beta
        out = np.empty_like(p)
        for i in range(len(t)):
            if self._last is not None:
                t0, p0, base0 = self._last
                h = float(t[i] - t0)
                if h > 0.0:
                    external = (p[i] - p0) / h - 0.5 * (base[i] + base0)
                    a = np.exp(-self.gain * h)
                    self.r = a * self.r + (1.0 - a) * external
            self._last = (float(t[i]), p[i], base[i])
            out[i] = self.r
        return out
