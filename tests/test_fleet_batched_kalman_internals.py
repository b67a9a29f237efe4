# SPDX-License-Identifier: Apache-2.0
"""The fleet's fusion step in one Warp kernel launch (`FleetFusionKernel`, ``kalman_backend = "warp"``) is the
NumPy `FleetKalman` step: the same operations in the same order on the same float64 state.

Oracle: `FleetKalman.predict_each` + `FleetKalman.update` (NumPy), themselves tested against one
`JointKalmanFilter` per robot (tests/test_fleet_batched_kalman.py). Stated tolerance 1e-12 relative (a compiler may
contract a multiply-add; measured: equal bit for bit); gate decisions must be identical.
"""

from __future__ import annotations

import numpy as np
import pytest
from test_fleet_batched_estimation import panda  # noqa: F401 - the fixture the end-to-end comparison takes
from test_fleet_batched_estimation import (
    test_fusion_on_arrival_equals_the_per_robot_estimators_and_commits_each_sample_at_its_step as fusion_on_arrival,
)

from twin_ext.fleet import FleetKalman, _batched_estimation, _batched_kalman_kernel

PARAMS = {"jerk_psd": 300.0, "sigma_q": 2e-4, "sigma_qd": 2e-3, "gate_chi2": 16.0}


@pytest.fixture(scope="module", autouse=True)
def kernel():
    """The kernel built (a cold cache compiles it here, once)."""
    assert _batched_kalman_kernel.build_fleet_kernel(120), _batched_kalman_kernel._kernel.error


@pytest.mark.parametrize("noise_adapt_rate", [0.0, 0.01])
@pytest.mark.parametrize(("robots", "joints"), [(1, 1), (8, 9), (40, 9)])
def test_the_fusion_kernel_equals_the_numpy_fleet_filter_step_for_step(robots, joints, noise_adapt_rate):
    """300 steps, each robot by its own dt (3-7 ms, some 0), noisy sines, one outlier: gates identical, x, P, r
    within 1e-12 relative after every step, with and without the noise adaptation."""
    rng = np.random.default_rng(7)
    n = robots * joints
    numpy = FleetKalman(robots, joints, noise_adapt_rate=noise_adapt_rate, **PARAMS)
    warp = FleetKalman(robots, joints, noise_adapt_rate=noise_adapt_rate, **PARAMS)
    warp.fusion_kernel = _batched_kalman_kernel.FleetFusionKernel(n)
    q0 = rng.uniform(-1, 1, n)
    for f in (numpy, warp):
        f.initialize(np.ones(n, bool), q0, np.zeros(n))
    t = np.zeros(n)
    gated_total = 0
    for step in range(300):
        dt = numpy.per_joint(rng.uniform(0.003, 0.007, robots))
        if step % 7 == 0:
            dt[:joints] = 0.0  # a robot whose sample has its filter's time: no predict
        t += dt
        q = q0 + 0.5 * np.sin(t) + rng.normal(0, 2e-4, n)
        qd = 0.5 * np.cos(t)
        if step == 100:
            q[n // 2] += 0.5
        numpy.predict_each(dt)
        expected = numpy.update(q, qd)
        gated = warp.predict_update_each(dt, q, qd)
        np.testing.assert_array_equal(gated, expected, err_msg=f"step {step}")
        gated_total += int(gated.sum())
        for name in ("x", "P", "r"):
            np.testing.assert_allclose(getattr(warp, name), getattr(numpy, name), rtol=1e-12, atol=1e-300,
                                       err_msg=f"{name} step {step}")  # fmt: skip
    assert 0 < gated_total < 0.5 * 300 * n  # both the gated and the updated path ran


def test_without_the_kernel_the_fleet_filter_predicts_and_updates_with_numpy():
    """``fusion_kernel`` unset: `predict_update_each` is `predict_each` then `update`, bit for bit."""
    rng = np.random.default_rng(3)
    a, b = FleetKalman(3, 9, noise_adapt_rate=0.01, **PARAMS), FleetKalman(3, 9, noise_adapt_rate=0.01, **PARAMS)
    for f in (a, b):
        f.initialize(np.ones(27, bool), np.zeros(27), np.zeros(27))
    for _ in range(20):
        dt, q, qd = rng.uniform(0, 0.01, 27), rng.normal(0, 1e-3, 27), rng.normal(0, 1e-2, 27)
        a.predict_each(dt)
        expected = a.update(q, qd)
        np.testing.assert_array_equal(b.predict_update_each(dt, q, qd), expected)
        for name in ("x", "P", "r"):
            np.testing.assert_array_equal(getattr(b, name), getattr(a, name))


def test_fusion_on_arrival_with_the_kernel_equals_the_per_robot_estimators(panda, monkeypatch):  # noqa: F811
    """The end-to-end comparison of fusion on arrival (misbehaving robots, late samples, gaps, bursts) with every
    batched step fused by the kernel: the same agreement with the per-robot estimators, and the kernel really ran."""
    launches = []
    run = _batched_kalman_kernel.FleetFusionKernel.run

    def counted(self, *args, **kwargs):
        launches.append(self.n)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(_batched_kalman_kernel.FleetFusionKernel, "run", counted)
    monkeypatch.setattr(_batched_estimation._kalmans, "cache", {}, raising=False)  # no filter made before the build
    fusion_on_arrival(panda)
    assert len(launches) > 500
