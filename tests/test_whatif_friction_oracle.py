"""The engine's smooth Coulomb friction against MuJoCo's ``frictionloss`` on the Panda (docs/whatif.md "Friction
against MuJoCo").

The two are different models (a ``tanh`` force vs a bounded constraint force), so they cannot agree to solver
precision; what is checked is that the difference is small against the effect of friction itself. Undriven
Panda arm falling for 1 s at dt = 1 ms from a bent pose, MuJoCo implicitfast with contacts, limits and equality
off (our engine models none of them): without friction the two agree to 1e-7 rad (bound 1e-5); with 1 N·m on
every arm joint friction moves MuJoCo's trajectory by ~0.36 rad and ours stays within 0.016 rad of it (bound
0.03 rad, i.e. under 10 % of friction's own effect).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from twin_ext.robot import load_robot
from twin_ext.whatif import WhatIfEngine, WhatIfSettings

mujoco = pytest.importorskip("mujoco")

REPO = Path(__file__).resolve().parents[1]
START = np.array([0.0, -0.3, 0.0, -1.6, 0.0, 1.9, 0.8, 0.02, 0.02])
ARM = np.arange(7)
DT, STEPS = 1e-3, 1000


def _ours(friction: float) -> np.ndarray:
    robot = load_robot(REPO / "usd/franka_panda/panda.usda")
    f = np.zeros(robot.ndof)
    f[ARM] = friction
    robot = dataclasses.replace(robot, kp=np.zeros(robot.ndof), kd=np.zeros(robot.ndof), friction=f)
    settings = WhatIfSettings(
        use_process_pool=False, joint_limits="off", gravity_compensation=False, velocity_feedforward=False
    )
    engine = WhatIfEngine(robot, settings=settings)
    return engine.rollout(START, None, np.tile(START, (STEPS, 1)), dt=DT, record_every=1).q[0]


def _mujoco(friction: float, names) -> np.ndarray:
    spec = mujoco.MjSpec.from_file(str(REPO / "data/robots/franka_emika_panda/panda_nomesh.xml"))
    for actuator in list(spec.actuators):
        spec.delete(actuator)
    for key in list(spec.keys):
        spec.delete(key)
    for joint in spec.joints:
        if joint.name.startswith("joint"):
            joint.frictionloss = friction
    model = spec.compile()
    model.opt.timestep = DT
    model.opt.integrator = mujoco.mjtIntegrator.mjINT_IMPLICITFAST
    model.opt.disableflags |= int(
        mujoco.mjtDisableBit.mjDSBL_CONTACT | mujoco.mjtDisableBit.mjDSBL_LIMIT | mujoco.mjtDisableBit.mjDSBL_EQUALITY
    )
    data = mujoco.MjData(model)
    adr = [model.jnt_qposadr[model.joint(n).id] for n in names]
    data.qpos[adr] = START
    out = np.zeros((STEPS, len(names)))
    for k in range(STEPS):
        mujoco.mj_step(model, data)
        out[k] = data.qpos[adr]
    return out


def test_smooth_coulomb_friction_stays_within_a_tenth_of_its_effect_of_mujoco_frictionloss():
    """1 s undriven fall: frictionless runs agree to 1e-5 rad; with 1 N·m friction ours is within 0.03 rad of
    MuJoCo's frictionloss while friction itself moves the trajectory by more than 0.3 rad."""
    names = load_robot(REPO / "usd/franka_panda/panda.usda").dof_names
    free_ours, free_mj = _ours(0.0), _mujoco(0.0, names)
    assert np.abs(free_ours - free_mj)[:, ARM].max() < 1e-5
    fric_ours, fric_mj = _ours(1.0), _mujoco(1.0, names)
    effect = np.abs(fric_mj - free_mj)[:, ARM].max()
    assert effect > 0.3  # the test exercises friction
    assert np.abs(fric_ours - fric_mj)[:, ARM].max() < 0.03
