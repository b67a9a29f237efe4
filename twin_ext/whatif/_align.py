# SPDX-License-Identifier: Apache-2.0
"""Align a scenario's trajectory command with where the robot is now.

A twin sees the robot's joints, not its program counter. To ask "what if the program continues ...", the
command must start at the program time whose state matches the twin's estimate; otherwise the rollout
begins with a jump between state and command that no real robot would see.
"""

from __future__ import annotations

from dataclasses import replace

from ..estimation import TwinSnapshot
from ._errors import WhatIfError
from ._scenario import Scenario, TrajectoryCommand

__all__ = ["align_to_snapshot"]


def align_to_snapshot(scenario: Scenario, snapshot: TwinSnapshot) -> tuple[Scenario, float | None]:
    """``scenario`` with its trajectory command starting at the state nearest ``snapshot`` (positions and
    velocities, `JointTrajectory.nearest_time`), and that start time in s. Target-stream commands are
    returned unchanged (start None).

    Raises:
        WhatIfError: the command names joints the snapshot's robot does not have.
    """
    command = scenario.command
    if not isinstance(command, TrajectoryCommand):
        return scenario, None
    program = command.trajectory
    model = snapshot.model
    missing = [n for n in program.joint_names if n not in model.dof_names]
    if missing:
        raise WhatIfError(
            f"the command names joints {missing} that {model.name} does not have ({list(model.dof_names)})"
        )
    cols = [model.dof_index(n) for n in program.joint_names]
    start = program.nearest_time(snapshot.q[cols], snapshot.qd[cols])
    return replace(scenario, command=TrajectoryCommand(program, start=start)), start
