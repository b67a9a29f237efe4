# SPDX-License-Identifier: Apache-2.0
"""Internals of the what-if command sampling (`twin_ext.whatif._scenario`): how a program becomes targets."""

from __future__ import annotations

import numpy as np

from twin_ext.robot import JointTrajectory
from twin_ext.whatif import TrajectoryCommand
from twin_ext.whatif._scenario import _sample_command


def test_a_speed_change_of_a_running_program_ramps_like_a_speed_override(panda):
    """Joined mid-way at x1.5, the command keeps the program's own velocity at t = 0 and reaches 1.5 x it after
    speed_ramp_s; started at its beginning it runs at 1.5 x at once (the robot is at rest there)."""
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
