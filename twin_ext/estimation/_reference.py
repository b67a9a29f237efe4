# SPDX-License-Identifier: Apache-2.0
"""The drive-tracking gap predictor: where the joints go while telemetry pauses, when the robot sends its reference.

A robot that publishes its controller's reference (``reference_position`` / ``reference_velocity``, docs/telemetry.md)
tells the twin what its drives are tracking, with exact (noise-free) derivatives. Through a gap:

* the reference is extrapolated (`extrapolate_reference`): at constant acceleration (the difference of its last two
  velocities) for ``reference_coast_after_s`` past its last value, then with its velocity decaying towards hold
  with ``coast_time_constant_s``: bounded like the predictor without a reference, so it never runs away;
* each joint follows it through a linearised position drive (`tracking_error`: a PD servo with the target velocity
  fed forward and gravity compensated, as the robot's controller is modelled in the emulator):
  ``m ë = -kp e - kd ė`` for the tracking error ``e = q - r``, with ``m`` the joint's effective inertia
  (mass-matrix diagonal plus armature at the gap's start) and ``kp`` / ``kd`` the robot model's drive gains;
  closed form per joint, no time stepping.

Measured against the emulator's plant (docs/telemetry.md, "Reference channels"): the tracking error of a
velocity-fed-forward drive is below a milliradian, so the drive model and plain tracking differ by < 0.1 mrad;
what matters is the reference's extrapolation. A purely linear one (``r0 + rd0 t``) overshoots the program's
stops and is worse on average than the bounded predictor without a reference.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ReferenceTrack", "drive_tracking", "extrapolate_reference", "tracking_error"]


class ReferenceTrack:
    """The newest reference of every joint (model order) and the twin time it was sampled at.

    Attributes:
        t_ns: ``[n]`` int64 twin-clock sample time of each joint's newest reference (ns; ``INT64_MIN`` = none).
        position: ``[n]`` rad | m.
        velocity: ``[n]`` rad/s | m/s (from ``reference_velocity``, else the difference of the last two references).
        acceleration: ``[n]`` rad/s² | m/s², the difference of the last two velocities (0 after a long silence).
    """

    _NONE = np.iinfo(np.int64).min

    def __init__(self, n: int) -> None:
        self.t_ns = np.full(n, self._NONE, dtype=np.int64)
        self.position = np.zeros(n)
        self.velocity = np.zeros(n)
        self.acceleration = np.zeros(n)

    @property
    def any(self) -> bool:
        """Whether any joint ever had a reference."""
        return bool(np.any(self.t_ns != self._NONE))

    def update(
        self, idx: np.ndarray, position: np.ndarray, velocity: np.ndarray | None, sample_ns: int, max_diff_ns: int
    ) -> None:
        """Take the reference of joints ``idx`` ``[k]`` sampled at ``sample_ns`` (joints with a newer one keep theirs).

        Without ``velocity`` the reference velocity is the difference to the joint's previous reference when that
        is at most ``max_diff_ns`` older, else 0 (the reference is held)."""
        newer = sample_ns > self.t_ns[idx]
        if not newer.any():
            return
        idx = idx[newer]
        position = position[newer]
        prev_t = self.t_ns[idx]
        known = prev_t != self._NONE
        dt = (sample_ns - np.where(known, prev_t, sample_ns)) * 1e-9
        ok = known & (dt > 0) & (dt <= max_diff_ns * 1e-9)
        step = np.where(ok, dt, 1.0)
        if velocity is not None:
            v = velocity[newer]
        else:
            v = np.where(ok, (position - self.position[idx]) / step, 0.0)
        self.acceleration[idx] = np.where(ok, (v - self.velocity[idx]) / step, 0.0)
        self.t_ns[idx] = sample_ns
        self.position[idx] = position
        self.velocity[idx] = v

    def usable(self, t_filter_ns: int, max_age_ns: int) -> np.ndarray:
        """``[n]`` bool: joints whose reference is at most ``max_age_ns`` older than the newest measurement."""
        return (self.t_ns != self._NONE) & (self.t_ns >= t_filter_ns - max_age_ns)


def extrapolate_reference(
    r: np.ndarray, rd: np.ndarray, rdd: np.ndarray, h: np.ndarray | float, *, ca_s: float, tau_s: float
) -> np.ndarray:
    """The reference ``h`` s past its last value: constant acceleration up to ``ca_s``, then the velocity decays as
    ``exp(-t / tau_s)`` (``tau_s`` = 0: held at once).

    Args:
        r, rd, rdd: ``[n]`` last reference position rad|m, velocity rad/s|m/s, acceleration rad/s²|m/s².
        h: horizon, s (scalar or ``[n]``, >= 0).

    Returns:
        ``[n, 3]`` reference (position, velocity, acceleration) at ``h``.
    """
    h = np.maximum(np.asarray(h, dtype=np.float64), 0.0)
    hc = np.minimum(h, ca_s)
    out = np.empty((len(r), 3))
    q = r + rd * hc + 0.5 * rdd * hc * hc
    v = rd + rdd * hc
    rest = h - hc
    if tau_s > 0.0:
        decay = np.exp(-rest / tau_s)
        q = q + v * tau_s * (1.0 - decay)
        a = np.where(rest > 0.0, -v * decay / tau_s, rdd)
        v = v * decay
    else:
        a = np.where(rest > 0.0, 0.0, rdd)
        v = np.where(rest > 0.0, 0.0, v)
    out[:, 0], out[:, 1], out[:, 2] = q, v, a
    return out


def tracking_error(
    e0: np.ndarray, ed0: np.ndarray, s: float, *, kp: np.ndarray, kd: np.ndarray, inertia: np.ndarray
) -> np.ndarray:
    """A linearised PD drive's tracking error ``s`` s after (``e0`` rad|m, ``ed0`` rad/s|m/s; ``[n]`` each):
    ``m ë = -kp e - kd ė`` (``kp`` N·m/rad | N/m > 0, ``kd`` N·m·s/rad | N·s/m, ``inertia`` kg·m² | kg > 0).

    Returns:
        ``[n, 3]`` (e, ė, ë) at ``s``.
    """
    x0 = np.stack([e0, ed0, np.zeros_like(e0)], axis=1)
    zero = np.zeros_like(e0)
    return drive_tracking(x0, zero, zero, s, kp=kp, kd=kd, damping=zero, inertia=inertia)


def drive_tracking(
    x0: np.ndarray,
    r0: np.ndarray,
    rd: np.ndarray,
    s: float,
    *,
    kp: np.ndarray,
    kd: np.ndarray,
    damping: np.ndarray,
    inertia: np.ndarray,
) -> np.ndarray:
    """Joints following a linearly extrapolated reference through linearised PD drives, ``s`` s ahead.

    Args:
        x0: ``[n, 3]`` (q rad|m, qd rad/s|m/s, qdd) at the start.
        r0: ``[n]`` reference position at the start, rad | m.
        rd: ``[n]`` reference velocity (constant over the horizon), rad/s | m/s.
        s: horizon, s (>= 0).
        kp: ``[n]`` drive stiffness, N·m/rad | N/m (> 0).
        kd: ``[n]`` drive damping, N·m·s/rad | N·s/m.
        damping: ``[n]`` joint viscous damping, N·m·s/rad | N·s/m.
        inertia: ``[n]`` effective inertia, kg·m² | kg (> 0).

    Returns:
        ``[n, 3]`` (q, qd, qdd) at ``s``.
    """
    a = kp / inertia
    b = (kd + damping) / inertia
    e_ss = -damping * rd / kp  # the steady lag the joint damping leaves behind a moving reference
    e0 = x0[:, 0] - r0 - e_ss
    ed0 = x0[:, 1] - rd
    mu = -0.5 * b
    w = np.sqrt((mu * mu - a).astype(np.complex128))  # real: overdamped, imaginary: underdamped
    e1, e2 = np.exp((mu + w) * s), np.exp((mu - w) * s)
    c = 0.5 * (e1 + e2)
    ws = w * s
    small = np.abs(ws) < 1e-4
    sinh_over_w = np.where(
        small, np.exp(mu * s) * s * (1.0 + ws * ws / 6.0), (e1 - e2) / (2.0 * np.where(small, 1.0, w))
    )
    # expm(A s) y0 = c y0 + (sinh(w s) / w) (A - mu I) y0 for A = [[0, 1], [-a, -b]] (mu = -b / 2)
    e = np.real(c * e0 + sinh_over_w * (ed0 - mu * e0))
    ed = np.real(c * ed0 + sinh_over_w * (-a * e0 - b * ed0 - mu * ed0))
    x = np.empty_like(x0)
    x[:, 0] = r0 + rd * s + e_ss + e
    x[:, 1] = rd + ed
    x[:, 2] = -a * e - b * ed
    return x
