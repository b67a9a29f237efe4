# SPDX-License-Identifier: Apache-2.0
"""`FleetKalman` (one filter over every robot's joints) gives what a `JointKalmanFilter` per robot gives."""

from __future__ import annotations

import numpy as np

from twin_ext.estimation import JointKalmanFilter
from twin_ext.fleet import FleetKalman

PARAMS = {"jerk_psd": 300.0, "sigma_q": 2e-4, "sigma_qd": 2e-3, "gate_chi2": 16.0}


def test_batched_filter_matches_one_filter_per_robot_step_for_step():
    """4 robots x 9 joints, each robot sampled at its own times (dt 3-7 ms), one outlier gated: states and
    covariances agree with per-robot filters to 1e-9 relative (the same arithmetic in another order)."""
    rng = np.random.default_rng(3)
    robots, joints = 4, 9
    singles = [JointKalmanFilter(joints, **PARAMS) for _ in range(robots)]
    fleet = FleetKalman(robots, joints, **PARAMS)
    q0 = rng.uniform(-1, 1, (robots, joints))
    for r, f in enumerate(singles):
        f.initialize(np.ones(joints, bool), q0[r], np.zeros(joints))
    fleet.initialize(np.ones(robots * joints, bool), q0.ravel(), np.zeros(robots * joints))
    t = np.zeros(robots)
    for step in range(200):
        dt = rng.uniform(0.003, 0.007, robots)
        t += dt
        q = q0 + 0.5 * np.sin(t)[:, None]
        qd = 0.5 * np.cos(t)[:, None] * np.ones((1, joints))
        q = q + rng.normal(0, 2e-4, q.shape)
        if step == 120:
            q[2, 4] += 0.5  # an outlier on one joint of one robot: gated there, nowhere else
        gated_single = []
        for r, f in enumerate(singles):
            f.predict(float(dt[r]))
            gated_single.append(f.update(q[r], qd[r]))
        fleet.predict_each(fleet.per_joint(dt))
        gated_fleet = fleet.update(q.ravel(), qd.ravel())
        assert np.array_equal(np.concatenate(gated_single), gated_fleet)
        if step == 120:
            assert gated_fleet.reshape(robots, joints)[2, 4] and gated_fleet.sum() == 1
    x = np.concatenate([f.x for f in singles])
    P = np.concatenate([f.P for f in singles])
    np.testing.assert_allclose(fleet.x, x, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(fleet.P, P, rtol=1e-9, atol=1e-15)
    xp, Pp = fleet.predicted_each(fleet.per_joint(np.full(robots, 0.02)))
    x1, P1 = singles[1].predicted(0.02)
    np.testing.assert_allclose(xp[joints : 2 * joints], x1, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(Pp[joints : 2 * joints], P1, rtol=1e-9, atol=1e-15)
