# SPDX-License-Identifier: Apache-2.0
"""Internals of the drive-tracking gap predictor (twin_ext.estimation._reference).

Oracles: an RK4 integration of the linearised drive's differential equation, and the closed-form bound of the
reference's bounded extrapolation.
"""

from __future__ import annotations

import numpy as np

from twin_ext.estimation._reference import drive_tracking, extrapolate_reference


def test_the_drive_model_closed_form_matches_a_numerical_integration():
    """drive_tracking equals an RK4 integration of m q'' = kp (r - q) + kd (rd - qd) - b qd with r = r0 + rd t
    (over-, critically and under-damped joints; within 1e-8, the RK4 error at a 0.1 ms step)."""
    kp = np.array([4500.0, 400.0, 100.0])
    kd = np.array([450.0, 40.0, 2.0])
    b = np.array([1.0, 0.0, 0.5])
    m = np.array([1.5, 1.0, 0.3])
    kd[1] = 2.0 * np.sqrt(kp[1] * m[1])  # critically damped
    x0 = np.array([[0.3, -1.0, 0.0], [-0.1, 0.5, 0.0], [0.02, 0.0, 0.0]])
    r0, rd = np.array([0.25, 0.0, -0.1]), np.array([0.4, -0.2, 1.0])
    s = 0.7

    def f(t, y):
        q, qd = y
        return np.array([qd, (kp * (r0 + rd * t - q) + kd * (rd - qd) - b * qd) / m])

    y, h = np.array([x0[:, 0], x0[:, 1]]), 1e-4
    for k in range(round(s / h)):
        t = k * h
        k1 = f(t, y)
        k2 = f(t + h / 2, y + h / 2 * k1)
        k3 = f(t + h / 2, y + h / 2 * k2)
        k4 = f(t + h, y + h * k3)
        y = y + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    x = drive_tracking(x0, r0, rd, s, kp=kp, kd=kd, damping=b, inertia=m)
    np.testing.assert_allclose(x[:, 0], y[0], rtol=0, atol=1e-8)
    np.testing.assert_allclose(x[:, 1], y[1], rtol=0, atol=1e-8)


def test_the_extrapolated_reference_is_bounded():
    """Past reference_coast_after_s the reference moves at most |v| tau further, v its velocity at that horizon."""
    r, rd, rdd = np.array([0.0, 1.0]), np.array([1.0, -0.5]), np.array([-2.0, 4.0])
    ca, tau = 0.25, 0.1
    far = extrapolate_reference(r, rd, rdd, 100.0, ca_s=ca, tau_s=tau)
    at_ca = extrapolate_reference(r, rd, rdd, ca, ca_s=ca, tau_s=tau)
    np.testing.assert_allclose(far[:, 0], at_ca[:, 0] + at_ca[:, 1] * tau, atol=1e-12)
    np.testing.assert_allclose(far[:, 1:], 0.0, atol=1e-12)
