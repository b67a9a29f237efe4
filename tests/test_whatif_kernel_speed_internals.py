# SPDX-License-Identifier: Apache-2.0
"""Internals of the rollout kernels' speed work (issue 17): the inlined sine/cosine both kernels call instead of
libm, and the generated kernel skipping the controller's gravity model when gravity compensation is off."""

# No `from __future__ import annotations`: Warp reads the test kernel's annotations, which name closure types.
import numpy as np
import pytest
from test_whatif_engine import PANDA_HOME, PANDA_USD, _everything, _wild_targets

from twin_ext.robot import load_robot
from twin_ext.whatif import WhatIfEngine, WhatIfSettings, _kernels


def _sin_cos_of(x: np.ndarray, precision: str) -> tuple:
    wp = _kernels.init_warp()
    sin_cos = _kernels.shared_funcs(precision).sin_cos
    scalar = wp.float64 if precision == "float64" else wp.float32

    @wp.kernel(enable_backward=False, module="unique")
    def evaluate(x: wp.array(dtype=scalar), s: wp.array(dtype=scalar), c: wp.array(dtype=scalar)):
        i = wp.tid()
        a, b = sin_cos(x[i])
        s[i] = a
        c[i] = b

    xs = wp.array(x, dtype=scalar)
    s = wp.zeros(len(x), dtype=scalar)
    c = wp.zeros(len(x), dtype=scalar)
    wp.launch(evaluate, dim=len(x), inputs=[xs, s, c])
    return s.numpy(), c.numpy()


def test_the_inlined_sine_and_cosine_equal_libm_to_one_rounding_and_keep_nan_for_bad_angles():
    """sin_cos (float64) agrees with NumPy's sin/cos to 2.3e-16 absolute (one rounding of a value <= 1: the
    rotation matrices' entries) on every quadrant boundary, over +-10 rad (joint angles) and +-1e4 rad, and gives
    NaN for NaN and +-inf like libm (a diverging world stays detectable); angles past 1e5 rad use libm itself."""
    rng = np.random.default_rng(17)
    quadrant_edges = np.arange(-40, 41) * (np.pi / 4)
    x = np.concatenate(
        [
            rng.uniform(-10.0, 10.0, 20000),
            rng.uniform(-1e4, 1e4, 20000),
            quadrant_edges,
            np.nextafter(quadrant_edges, np.inf),
            np.nextafter(quadrant_edges, -np.inf),
            [0.0, -0.0, 1e-300, 2e5, -3e7],
        ]
    )
    s, c = _sin_cos_of(x, "float64")
    assert np.abs(s - np.sin(x)).max() <= 2.3e-16
    assert np.abs(c - np.cos(x)).max() <= 2.3e-16
    s, c = _sin_cos_of(np.array([np.nan, np.inf, -np.inf]), "float64")
    assert np.isnan(s).all() and np.isnan(c).all()


def test_float32_sine_and_cosine_are_libms():
    """The float32 sin_cos is libm's sinf/cosf (within float32 rounding of NumPy's)."""
    x = np.linspace(-7.0, 7.0, 1001).astype(np.float32)
    s, c = _sin_cos_of(x, "float32")
    assert np.abs(s - np.sin(x)).max() <= 1e-6 and np.abs(c - np.cos(x)).max() <= 1e-6


@pytest.mark.parametrize("gravity_compensation", [False, True], ids=["no-gravcomp", "gravcomp"])
def test_the_generated_kernel_equals_the_generic_one_with_and_without_gravity_compensation(gravity_compensation):
    """The generated kernel computes the controller's gravity torque only when the controller compensates gravity;
    either way its rollouts and verdicts equal the generic kernel's (which always computes it) to 1e-9 rad,
    with payloads (some known to the controller), friction, latency and a perturbation on."""
    robot = load_robot(PANDA_USD)
    q0 = np.clip(PANDA_HOME, robot.lower, robot.upper)
    targets, velocities = _wild_targets(robot, q0, 300, 2e-3, seed=5)
    nworld = 3
    kwargs = dict(dt=2e-3, target_velocities=velocities, variants=_everything(robot, "hand"),
                  world_variant=np.arange(nworld), record_every=3, gravity_compensation=gravity_compensation)  # fmt: skip
    q0s = np.tile(q0, (nworld, 1))
    runs = [
        WhatIfEngine(robot, settings=WhatIfSettings(use_process_pool=False, specialize=specialize)).rollout(
            q0s, None, targets, **kwargs
        )
        for specialize in (True, False)
    ]
    a, b = runs
    np.testing.assert_allclose(a.q, b.q, atol=1e-9, rtol=0)
    np.testing.assert_allclose(a.tau, b.tau, atol=1e-7, rtol=0)
    for field in ("first_position_violation", "first_velocity_violation", "first_effort_saturation", "diverged_at"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert np.abs(a.q[1] - a.q[0]).max() > 1e-3, "the variants must differ"
