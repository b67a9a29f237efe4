"""Effort verdicts count sustained saturation, not a drive clipping a brief peak."""

from __future__ import annotations

import numpy as np
import pytest

from twin_ext.robot import default_robot_path, load_robot
from twin_ext.whatif import WhatIfEngine, WhatIfSettings


@pytest.fixture(scope="module")
def panda():
    return load_robot(default_robot_path())


def _rollout(panda, settings, qd0):
    q0 = panda.clip_to_limits(np.array(panda.drive_target))
    with WhatIfEngine(panda, settings=settings) as engine:
        targets = np.repeat(q0[None, :], 1, axis=0)
        return engine.rollout(
            np.stack([q0, q0]), np.stack([qd0[0], qd0[1]]), targets, dt=0.001, steps=300, record_every=0
        )


@pytest.mark.parametrize("specialize", [True, False], ids=["generated-kernel", "generic-kernel"])
def test_a_one_millisecond_clip_is_not_an_effort_violation_but_a_sustained_one_is(panda, specialize):
    """Wrist joint 7 starts 0.1 rad/s off its command: its 12 N·m drive clips for ~1 ms (not a violation with
    the 20 ms rule, a violation when any step counts); joint 5 starting at 3 rad/s keeps its drive pinned at
    the limit for far more than 20 ms: a violation dated at its start (t = 0). Both kernels agree."""
    j5, j7 = panda.dof_index("joint5"), panda.dof_index("joint7")
    short = np.zeros(panda.ndof)
    short[j7] = 0.1  # kd 200 x 0.1 rad/s = 20 N·m > 12 N·m, gone within a couple of steps
    sustained = np.zeros(panda.ndof)
    sustained[j5] = 3.0  # 600 N·m demanded; the joint needs many steps to shed 3 rad/s at 12 N·m
    lenient = _rollout(panda, WhatIfSettings(workers=1, specialize=specialize), [short, sustained])
    strict = _rollout(
        panda, WhatIfSettings(workers=1, specialize=specialize, effort_saturation_min_s=0.0), [short, sustained]
    )
    assert np.isnan(lenient.first_effort_saturation[0, j7])
    assert strict.first_effort_saturation[0, j7] == pytest.approx(0.0)
    assert lenient.first_effort_saturation[1, j5] == pytest.approx(0.0)
    assert strict.first_effort_saturation[1, j5] == pytest.approx(0.0)
    assert lenient.min_effort_margin[0, j7] < 0  # the clip is still visible as a negative margin


def test_a_speed_change_of_a_running_program_ramps_like_a_speed_override(panda):
    """Joined mid-way at x1.5, the command keeps the program's own velocity at t = 0 and reaches 1.5 x it after
    speed_ramp_s; started at its beginning it runs at 1.5 x at once (the robot is at rest there)."""
    from twin_ext.robot import JointTrajectory
    from twin_ext.whatif import TrajectoryCommand
    from twin_ext.whatif._scenario import _sample_command

    program = JointTrajectory.from_toml("data/scenarios/pick_place.toml")
    mid = 2.0
    hold = np.zeros(panda.ndof)
    q, qd = _sample_command(panda, TrajectoryCommand(program, start=mid), 1.5, 400, 0.001, hold, True, ramp_s=0.3)
    _, v_mid, _ = program.sample(mid)
    np.testing.assert_allclose(qd[0, :7], v_mid[:7], atol=1e-12)
    np.testing.assert_allclose(q[0, :7], program.sample(mid)[0][:7], atol=1e-12)
    tau = mid + 0.35 + 0.5 * 0.3 * 0.5 + 0.5 * 0.05  # program time reached at t = 0.35 s
    np.testing.assert_allclose(qd[350, :7], 1.5 * program.sample(tau)[1][:7], rtol=1e-9, atol=1e-12)
    _, qd_start = _sample_command(panda, TrajectoryCommand(program), 1.5, 10, 0.001, hold, True, ramp_s=0.3)
    np.testing.assert_allclose(qd_start[5, :7], 1.5 * program.sample(0.005 * 1.5)[1][:7], atol=1e-12)
