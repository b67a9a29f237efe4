# SPDX-License-Identifier: Apache-2.0
"""The emulator's plant: a MuJoCo Panda tracking the pick-and-place program with its own PD servos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

mujoco = pytest.importorskip("mujoco")

from twin_ext.emulator import (  # noqa: E402  # noqa: E402
    PANDA_VELOCITY_LIMITS,
    CommandRejected,
    ControllerError,
    MotionController,
    MujocoPlant,
    PlantError,
)
from twin_ext.robot import JointTrajectory  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MJCF = ROOT / "data" / "robots" / "franka_emika_panda" / "panda_nomesh.xml"
PROGRAM = JointTrajectory.from_toml(ROOT / "data" / "scenarios" / "pick_place.toml")


def _track(plant: MujocoPlant, traj: JointTrajectory, duration: float):
    q0 = traj.sample(traj.start_time)[0]
    plant.reset(q0)
    n = round(duration / plant.timestep)
    t = traj.start_time + np.arange(n) * plant.timestep
    q_d, qd_d, _ = traj.sample(t)
    q = np.empty_like(q_d)
    qd = np.empty_like(q_d)
    tau = np.empty_like(q_d)
    for i in range(n):
        q[i], qd[i] = plant.q, plant.qd
        tau[i] = plant.step(q_d[i], qd_d[i])
    return q, qd, tau, q_d, qd_d


@pytest.fixture(scope="module")
def cycle():
    """One full pick-and-place cycle on the default plant (about 0.3 s of CPU)."""
    plant = MujocoPlant()
    return plant, _track(plant, PROGRAM, PROGRAM.duration)


def test_plant_is_the_panda_at_one_millisecond():
    """Default plant: panda_nomesh.xml, 9 joints in MJCF order, MJCF limits, 1 ms step, implicit integrator."""
    plant = MujocoPlant()
    assert plant.mjcf_path == DEFAULT_MJCF
    assert plant.joint_names == PROGRAM.joint_names
    assert plant.timestep == plant.model.opt.timestep == 1e-3
    ref = mujoco.MjModel.from_xml_path(str(DEFAULT_MJCF))
    np.testing.assert_array_equal(plant.lower, ref.jnt_range[:, 0])
    np.testing.assert_array_equal(plant.upper, ref.jnt_range[:, 1])
    assert plant.is_prismatic.tolist() == [False] * 7 + [True] * 2
    # the plant's dynamics are the file's: same masses and inertias
    np.testing.assert_array_equal(plant.model.body_mass, ref.body_mass)
    np.testing.assert_array_equal(plant.model.body_inertia, ref.body_inertia)


def test_plant_tracks_the_program(cycle):
    """Over a whole cycle: arm joints within 3 mrad and 0.05 rad/s of the target, fingers within 2 mm.

    Why these bounds: the servo (kp = 4500..2000 N·m/rad) with velocity feed-forward and gravity
    compensation leaves only the inertial lag M(q) qdd / kp, about 1.6 mrad at the cycle's peak
    acceleration (4.2 rad/s^2 on joint 2); the finger tendon servo (100 N/m, kd/kp = 0.1 s, 0.1 kg of
    armature per finger) lags about 1 mm at 0.05 m/s. The bounds are ~2x the measured maxima, far below
    what would hide a broken controller (without feed-forward the lag is > 100 mrad, see below).
    """
    _, (q, qd, _, q_d, qd_d) = cycle
    err = np.abs(q - q_d)
    assert err[:, :7].max() < 3e-3, err[:, :7].max(axis=0)
    assert np.abs(qd - qd_d)[:, :7].max() < 0.05
    assert err[:, 7:].max() < 2e-3
    # and the arm really moved: the program spans more than a radian on joint 1
    assert np.ptp(q[:, 0]) > 1.0


def test_velocity_feedforward_is_what_makes_it_track():
    """Without feed-forward the servo's damper drags moving joints kd/kp * qd = 0.1 s * qd behind (> 50 mrad)."""
    plant = MujocoPlant(velocity_feedforward=False)
    q, _, _, q_d, qd_d = _track(plant, PROGRAM, 2.0)
    lag = np.abs(q - q_d)[:, :7].max()
    predicted = 0.1 * np.abs(qd_d[:, :7]).max()
    assert lag > 0.05 and lag == pytest.approx(predicted, rel=0.35)


def test_effort_at_rest_is_the_gravity_torque(cycle):
    """At rest the published drive torque equals g(q) from an independent MuJoCo inverse-dynamics oracle
    (qfrc_bias at zero velocity), to 1e-3 N·m: the controller's gravity compensation is what holds the arm."""
    plant = MujocoPlant()
    q0 = PROGRAM.positions[PROGRAM.labels.index("pick")]  # arm stretched out over the table
    plant.reset(q0)
    for _ in range(300):
        tau = plant.step(q0, np.zeros(plant.ndof))
    oracle = mujoco.MjModel.from_xml_path(str(DEFAULT_MJCF))
    data = mujoco.MjData(oracle)
    data.qpos[:] = plant.q
    mujoco.mj_forward(oracle, data)
    np.testing.assert_allclose(tau[:7], data.qfrc_bias[:7], atol=1e-3)
    assert np.abs(tau[1]) > 30.0  # joint 2 really carries the arm's weight
    assert np.abs(plant.qd).max() < 1e-6


def test_torque_is_clamped_to_the_joint_limits():
    """A violent step target saturates joints 5-7 at their 12 N·m limit (servo + gravity together)."""
    plant = MujocoPlant()
    q0 = PROGRAM.sample(0.0)[0]
    plant.reset(q0)
    target = q0.copy()
    target[4:7] += 1.0
    taus = np.array([plant.step(target, np.zeros(plant.ndof)) for _ in range(50)])
    assert np.abs(taus[:, 4:7]).max() == pytest.approx(12.0, abs=1e-6)
    assert np.abs(taus[:, :4]).max() <= 87.0 + 1e-9


def test_finger_target_maps_to_the_tendon_ctrl_range():
    """Finger opening 0 .. 0.04 m maps to the Menagerie gripper actuator's ctrl 0 .. 255 (at zero velocity)."""
    plant = MujocoPlant()
    q = PROGRAM.sample(0.0)[0]
    for opening, ctrl in ((0.04, 255.0), (0.0, 0.0), (0.02, 127.5)):
        q[7:] = opening
        plant.set_targets(q, np.zeros(plant.ndof))
        assert plant.data.ctrl[7] == pytest.approx(ctrl, abs=1e-6)  # the MJCF gain is 4/255 to 11 digits
    np.testing.assert_allclose(plant.data.ctrl[:7], q[:7], atol=1e-12)  # arm ctrl = joint target


def test_bad_plants_are_refused(tmp_path):
    """Missing file, invalid MJCF, a step outside [1e-5, 1e-2] s and non-servo actuators raise PlantError."""
    with pytest.raises(PlantError, match="not found"):
        MujocoPlant(tmp_path / "nope.xml")
    broken = tmp_path / "broken.xml"
    broken.write_text("<mujoco><worldbody><body></mujoco>")
    with pytest.raises(PlantError, match="cannot load MJCF"):
        MujocoPlant(broken)
    with pytest.raises(PlantError, match="timestep"):
        MujocoPlant(timestep=0.1)
    motor = tmp_path / "motor.xml"
    motor.write_text(
        "<mujoco><worldbody><body><joint name='j' axis='0 0 1'/><geom size='0.1' mass='1'/></body></worldbody>"
        "<actuator><motor joint='j'/></actuator></mujoco>"
    )
    with pytest.raises(PlantError, match="position servo"):
        MujocoPlant(motor)


# ---- the motion controller --------------------------------------------------------------------------
def _controller(**kwargs) -> MotionController:
    plant_names = PROGRAM.joint_names
    ref = mujoco.MjModel.from_xml_path(str(DEFAULT_MJCF))
    return MotionController(
        PROGRAM, joint_names=plant_names, lower=ref.jnt_range[:, 0], upper=ref.jnt_range[:, 1],
        velocity_limits=PANDA_VELOCITY_LIMITS, **kwargs,
    )  # fmt: skip


def test_controller_loops_the_program_smoothly():
    """After one cycle the targets start over; the loop point is at rest (no jump in position or velocity)."""
    ctrl = _controller()
    dt = 1e-3
    targets = [ctrl.step(dt) for _ in range(round(2.5 * PROGRAM.duration / dt))]
    q = np.array([t[0] for t in targets])
    assert np.abs(np.diff(q, axis=0)).max() < 2.61 * dt * 1.01  # never faster than the speed limit
    period = round(PROGRAM.duration / dt)
    np.testing.assert_allclose(q[period + 1234], q[1234], atol=1e-6)


def test_controller_refuses_programs_that_do_not_fit():
    """Programs outside the joint limits, too fast, missing joints or not closing a loop are refused up front."""
    ref = mujoco.MjModel.from_xml_path(str(DEFAULT_MJCF))
    lo, hi = ref.jnt_range[:, 0], ref.jnt_range[:, 1]
    names = PROGRAM.joint_names
    bad = PROGRAM.positions.copy()
    bad[3, 0] = 3.0
    with pytest.raises(ControllerError, match=r"joint1 at 3, outside its limits"):
        MotionController(JointTrajectory(names, PROGRAM.times, bad), joint_names=names, lower=lo, upper=hi)
    with pytest.raises(ControllerError, match="slow it down"):
        MotionController(
            PROGRAM.time_scaled(2.0), joint_names=names, lower=lo, upper=hi, velocity_limits=PANDA_VELOCITY_LIMITS
        )
    with pytest.raises(ControllerError, match="does not fit this robot"):
        MotionController(PROGRAM.select(names[:7]), joint_names=names, lower=lo, upper=hi)
    with pytest.raises(ControllerError, match="must end where it starts"):
        MotionController(
            JointTrajectory(names, PROGRAM.times[:3], PROGRAM.positions[:3]), joint_names=names, lower=lo, upper=hi
        )


def test_controller_rejects_unsafe_commands_with_reasons():
    """move_to outside limits, too fast, to unknown joints, or while stopped, and overrides above the maximum."""
    ctrl = _controller()
    cases = [
        (lambda: ctrl.move_to(["joint9"], [0.0], 1.0), "unknown_joint"),
        (lambda: ctrl.move_to(["joint4"], [0.5], 5.0), "out_of_limits"),
        (lambda: ctrl.move_to(["joint1"], [2.0], 0.5), "too_fast"),
        (lambda: ctrl.set_speed_override(1.5), "above_max_speed_override"),
    ]
    for call, reason in cases:
        with pytest.raises(CommandRejected) as info:
            call()
        assert info.value.reason == reason
    with pytest.raises(CommandRejected, match=r"use duration_s >= 1\.73"):
        ctrl.move_to(["joint1"], [2.0], 0.5)  # 1.875 * 2.0 rad / 2.175 rad/s = 1.724 s
    ctrl.stop()
    with pytest.raises(CommandRejected) as info:
        ctrl.move_to(["joint1"], [0.1], 2.0)
    assert info.value.reason == "stopped"
