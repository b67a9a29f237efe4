# SPDX-License-Identifier: Apache-2.0
"""The SIMD rollout kernel (several worlds per CPU thread, `twin_ext.whatif._lanes`) against the scalar specialised
kernel: same rollouts and verdicts with every effect on, a partly filled last thread, and worlds diverging beside
healthy ones in the same thread."""

import numpy as np
import pytest
from test_whatif_engine import PANDA_HOME, _everything, _robot, _wild_targets

from twin_ext.whatif import Variant, WhatIfEngine, WhatIfSettings
from twin_ext.whatif._lanes import generate_source

_FIELDS = (
    "first_position_violation",
    "first_velocity_violation",
    "first_effort_saturation",
    "diverged_at",
)
_MARGINS = ("max_tracking_error", "min_position_margin", "min_velocity_margin", "min_effort_margin")


def _rollouts(robot, simd_worlds: tuple[int, ...], *args, settings: dict | None = None, **kwargs):
    return [
        WhatIfEngine(robot, settings=WhatIfSettings(use_process_pool=False, simd_worlds=n, **(settings or {}))).rollout(
            *args, **kwargs
        )
        for n in simd_worlds
    ]


@pytest.mark.parametrize("simd_worlds", [4, 8])
@pytest.mark.parametrize("name, link", [("branchy", "tool"), ("panda", "hand")])
def test_the_simd_kernel_equals_the_scalar_kernel_with_every_effect_on(name, link, simd_worlds):
    """11 worlds (the last thread partly filled) with payloads (one known to the controller), a perturbation,
    friction, latency, gains, limit springs engaged, gravity compensation and velocity feed-forward: q, qd, tau and
    the margins equal the scalar kernel's to 1e-9 rad (1e-7 N·m for tau; the vector code contracts multiply-adds in
    other places, so values may differ by roundings amplified over 400 steps), the verdict steps exactly."""
    robot = _robot(name)
    q0 = np.clip(PANDA_HOME if name == "panda" else np.zeros(robot.ndof), robot.lower, robot.upper)
    targets, velocities = _wild_targets(robot, q0, 400, 2e-3, seed=3)
    nworld = 11
    variants = _everything(robot, link)
    world_variant = np.arange(nworld) % len(variants)
    q0s = np.tile(q0, (nworld, 1)) + 0.01 * np.arange(nworld)[:, None] / nworld
    q0s = np.clip(q0s, robot.lower, robot.upper)
    scalar, simd = _rollouts(robot, (1, simd_worlds), q0s, None, targets, dt=2e-3, target_velocities=velocities,
                             variants=variants, world_variant=world_variant, record_every=4,
                             gravity_compensation=True)  # fmt: skip
    np.testing.assert_allclose(simd.q, scalar.q, atol=1e-9, rtol=0)
    np.testing.assert_allclose(simd.qd, scalar.qd, atol=1e-7, rtol=0)
    np.testing.assert_allclose(simd.tau, scalar.tau, atol=1e-7, rtol=0)
    np.testing.assert_allclose(simd.q_final, scalar.q_final, atol=1e-9, rtol=0)
    for field in _MARGINS:
        np.testing.assert_allclose(getattr(simd, field), getattr(scalar, field), atol=1e-7, rtol=0)
    for field in _FIELDS:
        np.testing.assert_array_equal(getattr(simd, field), getattr(scalar, field))
    assert np.isfinite(scalar.first_position_violation).any(), "limits must be crossed (the limit path is exercised)"
    assert np.abs(simd.q[1] - simd.q[0]).max() > 1e-3, "the worlds must differ"


def test_a_world_diverging_beside_healthy_ones_freezes_as_in_the_scalar_kernel():
    """Stiff worlds blowing up at a 50 ms step share a thread with healthy ones: the divergence step and the verdict
    steps equal the scalar kernel's (a world that kept stepping after it would move them on), and the healthy
    worlds' rollouts equal the scalar kernel's to 1e-9 rad."""
    robot = _robot("panda")
    targets = np.tile(PANDA_HOME + 0.5, (200, 1))
    variants = [Variant("soft", kp_scale=0.1, kd_scale=0.1), Variant("stiff", kp_scale=50.0)]
    world_variant = np.array([0, 1, 0, 0, 1, 0, 1])
    scalar, simd = _rollouts(robot, (1, 8), np.tile(PANDA_HOME, (len(world_variant), 1)), None, targets, dt=0.05, variants=variants,
                             world_variant=world_variant, record_every=1,
                             settings={"implicit_saturated_damping": False})  # fmt: skip
    assert np.isfinite(scalar.diverged_at[world_variant == 1]).all()
    assert np.isnan(scalar.diverged_at[world_variant == 0]).all()
    for field in _FIELDS:
        np.testing.assert_array_equal(getattr(simd, field), getattr(scalar, field))
    healthy = world_variant == 0
    np.testing.assert_allclose(simd.q[healthy], scalar.q[healthy], atol=1e-9, rtol=0)
    np.testing.assert_allclose(simd.q_final[healthy], scalar.q_final[healthy], atol=1e-9, rtol=0)
    for w in np.flatnonzero(~healthy):
        # a blowing-up world amplifies roundings without bound: compare what freezing decides -- the step it
        # stops at and the verdicts (above; they would move on if it kept stepping), a finite record up to that
        # step and a non-finite one and final state at it (records after it are not written, by either kernel)
        stop = int(np.flatnonzero(~np.isfinite(scalar.q[w]).all(axis=1))[0])  # the record of the divergence step
        assert np.isfinite(simd.q[w, :stop]).all() and not np.isfinite(simd.q[w, stop]).all()
        assert not np.isfinite(simd.q_final[w]).all()


def test_the_generator_refuses_lane_counts_that_are_not_powers_of_two():
    """Lanes are vector registers' widths: 3 is refused."""
    with pytest.raises(ValueError, match="power of two"):
        generate_source([-1, 0], [1, 1], lanes=3)
