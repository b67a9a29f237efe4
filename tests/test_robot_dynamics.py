# SPDX-License-Identifier: Apache-2.0
"""Inverse dynamics (RNEA) of the USD model against MuJoCo's on the same robots: mj_inverse, qfrc_bias, M.

Tolerance: 1e-6 relative to the largest term. Both sides evaluate the same rigid-body model in float64; the
USD assets store poses and inertias in float32, which the model reproduces to ~5e-8 (test_robot_oracle.py),
so 1e-6 leaves a 20x margin while still failing any wrong term (a missing Coriolis term is ~1e-1 relative).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import REPO

from twin_ext.robot import RigidBodyDynamics, load_robot

mujoco = pytest.importorskip("mujoco")

ROBOTS = {
    "panda": (REPO / "usd/franka_panda/panda.usda", REPO / "data/robots/franka_emika_panda/panda_nomesh.xml"),
    "ur5e": (REPO / "usd/ur5e/ur5e.usda", REPO / "data/robots/universal_robots_ur5e/ur5e_nomesh.xml"),
}
RTOL = 1e-6
NO_CONSTRAINTS = int(
    mujoco.mjtDisableBit.mjDSBL_EQUALITY | mujoco.mjtDisableBit.mjDSBL_CONTACT | mujoco.mjtDisableBit.mjDSBL_LIMIT
)


def _setup(name):
    usd, mjcf = ROBOTS[name]
    robot = load_robot(usd)
    mj = mujoco.MjModel.from_xml_path(str(mjcf))
    mj.opt.disableflags |= NO_CONSTRAINTS
    mj.dof_damping[:] = 0.0  # compare rigid-body dynamics (+ armature); passive forces are not inverse dynamics
    mj.dof_frictionloss[:] = 0.0
    qadr = np.array([mj.jnt_qposadr[mujoco.mj_name2id(mj, mujoco.mjtObj.mjOBJ_JOINT, n)] for n in robot.dof_names])
    return robot, mj, qadr


def _states(robot, n, seed):
    rng = np.random.default_rng(seed)
    lo = np.where(np.isfinite(robot.lower), robot.lower, -np.pi)
    hi = np.where(np.isfinite(robot.upper), robot.upper, np.pi)
    scale = np.where(robot.dof_type == 2, 0.05, 1.5)  # m/s (fingers), rad/s
    q = rng.uniform(lo, hi, (n, robot.ndof))
    qd = rng.normal(0.0, 1.0, (n, robot.ndof)) * scale
    qdd = rng.normal(0.0, 1.0, (n, robot.ndof)) * scale * 4.0
    return q, qd, qdd


def _rel(ours, theirs):
    return float(np.abs(ours - theirs).max() / max(np.abs(theirs).max(), 1e-9))


@pytest.mark.parametrize("name", list(ROBOTS))
def test_inverse_dynamics_bias_gravity_and_mass_matrix_equal_mujoco(name):
    """For 32 random states, RNEA efforts equal mj_inverse's qfrc_inverse, bias equals qfrc_bias, gravity equals
    qfrc_bias at rest and M (with armature) equals mj_fullM, each within 1e-6 relative."""
    robot, mj, qadr = _setup(name)
    dyn = RigidBodyDynamics(robot)
    q, qd, qdd = _states(robot, 32, seed=3)
    tau = dyn.inverse_dynamics(q, qd, qdd)
    bias = dyn.bias(q, qd)
    grav = dyn.gravity(q)
    mass = dyn.mass_matrix(q)
    data = mujoco.MjData(mj)
    full = np.zeros((mj.nv, mj.nv))
    for k in range(len(q)):
        data.qpos[:] = mj.qpos0
        data.qvel[:] = 0.0
        data.qacc[:] = 0.0
        data.qpos[qadr], data.qvel[qadr], data.qacc[qadr] = q[k], qd[k], qdd[k]
        mujoco.mj_inverse(mj, data)
        assert _rel(tau[k], data.qfrc_inverse[qadr]) <= RTOL
        assert _rel(bias[k], data.qfrc_bias[qadr]) <= RTOL
        mujoco.mj_fullM(mj, data, full)
        assert _rel(mass[k], full[np.ix_(qadr, qadr)]) <= RTOL
        data.qvel[:] = 0.0
        mujoco.mj_forward(mj, data)
        assert _rel(grav[k], data.qfrc_bias[qadr]) <= RTOL


def test_momentum_and_coriolis_transpose_terms_satisfy_the_skew_identity():
    """p = M qd, and C^T qd equals dM/dt qd - C qd with dM/dt from MuJoCo's M along the motion (central
    difference over 1e-6 s), within 1e-5 relative (the difference quotient's own error is ~1e-8 x |qd|^2)."""
    robot, mj, qadr = _setup("panda")
    dyn = RigidBodyDynamics(robot)
    q, qd, _ = _states(robot, 8, seed=5)
    p = dyn.momentum(q, qd)
    ctqd = dyn.coriolis_transpose_times_velocity(q, qd)
    data = mujoco.MjData(mj)
    full = np.zeros((mj.nv, mj.nv))

    def mass_at(qk):
        data.qpos[:] = mj.qpos0
        data.qpos[qadr] = qk
        mujoco.mj_forward(mj, data)
        mujoco.mj_fullM(mj, data, full)
        return full[np.ix_(qadr, qadr)].copy()

    for k in range(len(q)):
        m = mass_at(q[k])
        assert _rel(p[k], m @ qd[k]) <= RTOL
        h = 1e-6
        mdot = (mass_at(q[k] + h * qd[k]) - mass_at(q[k] - h * qd[k])) / (2 * h)
        data.qpos[:] = mj.qpos0
        data.qpos[qadr], data.qvel[:] = q[k], 0.0
        data.qvel[qadr] = qd[k]
        mujoco.mj_forward(mj, data)
        gravity = dyn.gravity(q[k])
        c_qd = data.qfrc_bias[qadr] - gravity
        assert _rel(ctqd[k], mdot @ qd[k] - c_qd) <= 1e-5


def test_unbatched_inputs_give_unbatched_outputs_and_bad_shapes_name_the_expected_size(panda):
    """One state in, one answer out (same numbers as a batch of one); a wrong joint count is refused clearly."""
    dyn = RigidBodyDynamics(panda)
    q = np.full(panda.ndof, 0.2)
    one = dyn.inverse_dynamics(q, q, q)
    assert one.shape == (panda.ndof,)
    np.testing.assert_array_equal(one, dyn.inverse_dynamics(q[None], q[None], q[None])[0])
    with pytest.raises(ValueError, match="9 joint columns"):
        dyn.bias(np.zeros(3), np.zeros(3))


def test_the_inertial_regressor_predicts_what_a_welded_payload_costs_in_mujoco():
    """A 1.7 kg payload welded to the Panda's hand (MuJoCo, via MjSpec) changes qfrc_inverse by exactly
    Y(q, qd, qdd) @ theta, theta the payload's ten inertial parameters in the hand body's frame (<= 1e-6
    relative to the change)."""
    robot, mj, qadr = _setup("panda")
    dyn = RigidBodyDynamics(robot)
    hand_link = robot.link_names.index("hand")
    body, com_in_body = dyn.tree.link_to_body(hand_link, np.array([0.01, -0.02, 0.08]))
    rot = dyn.tree.link_rotation_in_body(hand_link)
    mass, inertia_com = 1.7, np.diag([0.004, 0.005, 0.003])
    h = mass * com_in_body
    i_o = rot @ inertia_com @ rot.T + mass * (
        com_in_body @ com_in_body * np.eye(3) - np.outer(com_in_body, com_in_body)
    )
    theta = np.array([mass, *h, i_o[0, 0], i_o[0, 1], i_o[0, 2], i_o[1, 1], i_o[1, 2], i_o[2, 2]])

    spec = mujoco.MjSpec.from_file(str(ROBOTS["panda"][1]))
    child = spec.body("hand").add_body(name="payload", pos=[0.01, -0.02, 0.08])
    child.mass, child.ipos, child.explicitinertial = mass, [0.0, 0.0, 0.0], True
    child.fullinertia = [0.004, 0.005, 0.003, 0.0, 0.0, 0.0]
    loaded = spec.compile()
    for m in (mj, loaded):
        m.opt.disableflags |= NO_CONSTRAINTS
        m.dof_damping[:] = 0.0
    q, qd, qdd = _states(robot, 16, seed=9)
    y = dyn.inertial_regressor(q, qd, qdd, body=body)
    assert y.shape == (16, robot.ndof, 10)
    d0, d1 = mujoco.MjData(mj), mujoco.MjData(loaded)
    for k in range(len(q)):
        for m, d in ((mj, d0), (loaded, d1)):
            d.qpos[:], d.qvel[:], d.qacc[:] = m.qpos0, 0.0, 0.0
            d.qpos[qadr], d.qvel[qadr], d.qacc[qadr] = q[k], qd[k], qdd[k]
            mujoco.mj_inverse(m, d)
        change = d1.qfrc_inverse[qadr] - d0.qfrc_inverse[qadr]
        assert np.abs(change).max() > 1.0  # the payload matters here
        assert _rel(y[k] @ theta, change) <= RTOL
