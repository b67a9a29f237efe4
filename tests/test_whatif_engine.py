"""Behaviour of the what-if engine: kernels agree with each other, every modelled effect does what it says,
and the verdict statistics computed inside the kernel are right.

Engines are cached per configuration for the whole module (kernels compile once per tree shape and
precision into the Warp cache; an engine is cheap once they are there).
"""

from __future__ import annotations

import threading
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from twin_ext.robot import JointTrajectory, JointType, RobotModel, load_robot, make_transform
from twin_ext.whatif import Payload, Perturbation, Variant, WhatIfEngine, WhatIfSettings

REPO = Path(__file__).resolve().parents[1]
PANDA_USD = REPO / "usd/franka_panda/panda.usda"
UR5E_USD = REPO / "usd/ur5e/ur5e.usda"
PANDA_HOME = np.array([0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854, 0.02, 0.02])
UR5E_HOME = np.array([-1.5708, -1.5708, 1.5708, -1.5708, -1.5708, 0.0])


def _quat(axis, angle):
    axis = np.asarray(axis, dtype=np.float64) / np.linalg.norm(axis)
    return np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])


def branchy_robot() -> RobotModel:
    """A 5-dof tree the shipped arms are not: a welded base at an odd pose, a side branch off the first link,
    a tilted prismatic joint, a diagonal axis, a welded tool, joint frames that are neither identity nor
    equal on both sides, friction on two joints and finite speed/effort limits."""
    X = make_transform  # noqa: N806
    names = ["base", "l1", "l2", "side", "slider", "tool", "wrist"]
    parent = [-1, 0, 1, 1, 2, 4, 4]
    joints = [
        JointType.FIXED,
        JointType.REVOLUTE,
        JointType.REVOLUTE,
        JointType.REVOLUTE,
        JointType.PRISMATIC,
        JointType.FIXED,
        JointType.REVOLUTE,
    ]
    axes = [(0, 0, 0), (0, 0, 1), (1, 0, 0), (0, -1, 0), (0.6, 0.8, 0.0), (0, 0, 0), (1, 1, 1)]
    axes = np.array([np.asarray(a, float) / (np.linalg.norm(a) or 1.0) for a in axes])
    frame0 = np.stack([
        X([0.1, -0.2, 0.3], _quat([0.2, 0.3, 1.0], 0.4)), X([0.0, 0.0, 0.15], [1, 0, 0, 0]),
        X([0.05, 0.02, 0.2], _quat([1, 0, 0], 1.2)), X([-0.1, 0.0, 0.1], _quat([0, 0, 1], np.pi)),
        X([0.3, 0.0, 0.0], _quat([0, 1, 0], 0.7)), X([0.0, 0.1, 0.05], _quat([1, 1, 0], 0.5)),
        X([0.0, 0.1, 0.0], _quat([1, 1, 1], 2.0)),
    ])  # fmt: skip
    frame1 = np.stack([np.eye(4), X([0.01, 0.0, 0.0], _quat([0, 0, 1], 0.3)), X([0.02, 0.01, 0.0], [1, 0, 0, 0]),
                       np.eye(4), X([0.0, 0.0, 0.01], _quat([1, 0, 0], -0.2)), np.eye(4),
                       X([0.0, 0.0, 0.01], [1, 0, 0, 0])])  # fmt: skip
    dof_links = [1, 2, 3, 4, 6]
    n = len(dof_links)
    dof_type = np.array([joints[i] for i in dof_links])
    link_dof = np.array([-1, 0, 1, 2, 3, -1, 4])
    return RobotModel(
        name="branchy", source="<python>", root_path="/branchy", link_names=tuple(names),
        link_paths=tuple(f"/branchy/{x}" for x in names), link_parent=np.array(parent), link_dof=link_dof,
        joint_names=tuple("" if joints[i] == JointType.FIXED else f"j_{names[i]}" for i in range(7)),
        joint_type=np.array(joints), joint_axis=axes, joint_parent_frame=frame0, joint_child_frame=frame1,
        dof_names=tuple(f"j_{names[i]}" for i in dof_links), dof_paths=tuple(f"/j_{names[i]}" for i in dof_links),
        dof_link=np.array(dof_links), dof_type=dof_type,
        lower=np.array([-np.inf, -1.5, -1.0, -0.1, -np.inf]), upper=np.array([np.inf, 1.5, 1.0, 0.2, np.inf]),
        velocity_limit=np.array([3.0, 3.0, 3.0, 0.5, 5.0]), effort_limit=np.array([40.0, 40.0, 40.0, 100.0, 10.0]),
        kp=np.array([300.0, 500.0, 300.0, 2000.0, 100.0]), kd=np.array([10.0, 20.0, 10.0, 50.0, 2.0]),
        drive_target=np.zeros(n), has_drive=np.ones(n, bool), armature=np.full(n, 0.05),
        damping=np.full(n, 0.3), friction=np.array([0.0, 0.5, 0.0, 2.0, 0.0]),
        mimic_leader=np.full(n, -1), mimic_gear=np.ones(n), mimic_offset=np.zeros(n),
        mass=np.array([2.0, 1.5, 1.2, 0.7, 0.8, 0.3, 0.4]),
        com=np.array([[0, 0, 0.05], [0.1, 0.02, 0], [0.0, 0.05, 0.1], [-0.05, 0, 0], [0, 0.05, 0], [0, 0, 0.02],
                      [0.01, 0.02, 0.03]]),
        inertia_diag=np.array([[0.01, 0.02, 0.015], [0.01, 0.012, 0.008], [0.006, 0.005, 0.004], [0.001, 0.001, 0.002],
                               [0.002, 0.003, 0.004], [0.0004, 0.0004, 0.0002], [0.0008, 0.0006, 0.0005]]),
        inertia_axes=np.array([[1, 0, 0, 0], _quat([1, 2, 3], 0.3), [1, 0, 0, 0], _quat([0, 1, 0], 0.5),
                               [1, 0, 0, 0], [1, 0, 0, 0], _quat([1, 0, 1], 0.2)]),
    )  # fmt: skip


@cache
def _robot(name: str) -> RobotModel:
    return {"panda": lambda: load_robot(PANDA_USD), "ur5e": lambda: load_robot(UR5E_USD), "branchy": branchy_robot}[
        name
    ]()


@cache
def engine(name: str, **overrides) -> WhatIfEngine:
    settings = dict(use_process_pool=False)
    settings.update(overrides)
    return WhatIfEngine(_robot(name), settings=WhatIfSettings(**settings))


def _everything(robot: RobotModel, link: str):
    """Variants exercising every modelled effect at once."""
    return [
        Variant("plain"),
        Variant("loaded", payloads=(Payload(link, 1.5, (0.02, 0.0, 0.05), (0.002, 0.003, 0.001)),),
                kp_scale=0.7, kd_scale={robot.dof_names[0]: 1.5}, friction=0.8, damping_scale=2.0, latency=0.006,
                perturbation=Perturbation(link, force=(20.0, -10.0, 30.0), torque=(0.5, 0.0, -0.3), point=(0.0, 0.01, 0.02),
                                          start=0.05, duration=0.1)),
        Variant("known load", payloads=(Payload(link, 1.0, (0.0, 0.0, 0.1), known_to_controller=True),), friction=0.3),
    ]  # fmt: skip


def _wild_targets(robot: RobotModel, q0: np.ndarray, steps: int, dt: float, seed: int):
    """Targets that swing every joint and push some past their limits (limit springs engage)."""
    rng = np.random.default_rng(seed)
    lo = np.where(np.isfinite(robot.lower), robot.lower, -2.0)
    hi = np.where(np.isfinite(robot.upper), robot.upper, 2.0)
    far = np.where(rng.random(robot.ndof) < 0.5, hi + 0.1 * (hi - lo), lo - 0.1 * (hi - lo))
    traj = JointTrajectory(robot.dof_names, [0.0, 0.5 * steps * dt, steps * dt], [q0, far, q0])
    q, qd, _ = traj.sample(np.arange(steps) * dt)
    return q, qd


@pytest.mark.parametrize("name, link", [("branchy", "tool"), ("panda", "hand")])
def test_the_specialised_kernel_equals_the_generic_kernel_with_every_effect_on(name, link):
    """Generated (shape-specialised) and generic kernels give the same rollouts and verdicts (<= 1e-9) with payloads,
    perturbations, friction, latency, gains, limits, gravity compensation and velocity feedforward all active."""
    robot = _robot(name)
    q0 = np.clip(PANDA_HOME if name == "panda" else np.zeros(robot.ndof), robot.lower, robot.upper)
    targets, velocities = _wild_targets(robot, q0, 400, 2e-3, seed=1)
    variants = _everything(robot, link)
    nworld = 6
    q0s = q0 + np.random.default_rng(2).normal(0.0, 0.01, (nworld, robot.ndof))
    q0s = np.clip(q0s, robot.lower, robot.upper)
    kwargs = dict(dt=2e-3, target_velocities=velocities, variants=variants, world_variant=np.arange(nworld) % 3,
                  record_every=5, gravity_compensation=True)  # fmt: skip
    a = engine(name, specialize=True).rollout(q0s, None, targets, **kwargs)
    b = engine(name, specialize=False).rollout(q0s, None, targets, **kwargs)
    np.testing.assert_allclose(a.q, b.q, atol=1e-9, rtol=0)
    np.testing.assert_allclose(a.tau, b.tau, atol=1e-7, rtol=0)
    for field in ("first_position_violation", "first_velocity_violation", "first_effort_saturation", "diverged_at"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for field in ("max_tracking_error", "min_position_margin", "min_velocity_margin", "min_effort_margin"):
        np.testing.assert_allclose(getattr(a, field), getattr(b, field), atol=1e-7, rtol=0)
    assert np.isfinite(a.first_position_violation).any(), "the limit springs must have been exercised"
    assert np.abs(a.q[1] - a.q[0]).max() > 1e-3, "the variants must differ"


def test_float32_rollouts_track_float64_within_1e4():
    """float32 kernels follow float64 within 1e-4 rad over 2 s with every effect on (float32 round-off is 6e-8
    relative; the servo-stabilised dynamics do not amplify it: measured ~1e-6)."""
    robot = _robot("ur5e")
    targets, velocities = _wild_targets(robot, UR5E_HOME, 1000, 2e-3, seed=3)
    variants = _everything(robot, "wrist_3_link")
    kwargs = dict(dt=2e-3, target_velocities=velocities, variants=variants, record_every=10)
    q0 = np.tile(UR5E_HOME, (3, 1))
    a = engine("ur5e").rollout(q0, None, targets, **kwargs)
    b = engine("ur5e", precision="float32").rollout(q0, None, targets, **kwargs)
    assert np.abs(a.q - b.q).max() <= 1e-4
    assert np.abs(a.q[0] - UR5E_HOME).max() > 0.5  # the comparison covered a real motion


def test_the_worker_pool_gives_exactly_the_in_process_results():
    """Splitting the worlds over worker processes (shared memory) changes nothing: results are bit-identical."""
    robot = _robot("panda")
    nworld = 37  # uneven split over the workers
    q0 = PANDA_HOME + np.random.default_rng(4).normal(0.0, 0.02, (nworld, robot.ndof))
    q0 = np.clip(q0, robot.lower, robot.upper)
    targets, velocities = _wild_targets(robot, PANDA_HOME, 300, 2e-3, seed=5)
    variants = _everything(robot, "hand")
    kwargs = dict(
        dt=2e-3, target_velocities=velocities, variants=variants, world_variant=np.arange(nworld) % 3, record_every=3
    )
    pooled = WhatIfEngine(robot, settings=WhatIfSettings(workers=2))
    assert pooled.wait_ready()["workers"] == 2
    a = pooled.rollout(q0, None, targets, **kwargs)
    b = engine("panda").rollout(q0, None, targets, **kwargs)
    for field in (
        "q",
        "qd",
        "tau",
        "q_final",
        "first_position_violation",
        "first_effort_saturation",
        "min_effort_margin",
    ):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))


def test_recording_decimation_keeps_every_nth_step_on_a_matching_time_axis():
    """record_every=7 keeps steps 7, 14, ... (t = 7 (r + 1) dt) of the record_every=1 trajectory; 0 keeps none."""
    robot = _robot("panda")
    targets = np.tile(PANDA_HOME + 0.1, (100, 1))
    full = engine("panda").rollout(PANDA_HOME, None, targets, dt=1e-3, record_every=1)
    some = engine("panda").rollout(PANDA_HOME, None, targets, dt=1e-3, record_every=7)
    none = engine("panda").rollout(PANDA_HOME, None, targets, dt=1e-3, record_every=0)
    assert some.q.shape == (1, 14, robot.ndof) and none.q.shape == (1, 0, robot.ndof)
    np.testing.assert_allclose(some.t, 7e-3 * np.arange(1, 15))
    np.testing.assert_array_equal(some.q[0], full.q[0, 6::7][:14])
    np.testing.assert_array_equal(some.tau[0], full.tau[0, 6::7][:14])
    np.testing.assert_array_equal(none.q_final, full.q_final)


def test_per_world_targets_and_variants_act_on_their_own_worlds():
    """Two worlds with their own targets and variants give what each gives alone."""
    t1 = np.tile(PANDA_HOME + 0.05, (200, 1))
    t2 = np.tile(PANDA_HOME - 0.05, (200, 1))
    v = [Variant("a"), Variant("b", kp_scale=0.5, payloads=(Payload("hand", 2.0),))]
    both = engine("panda").rollout(np.tile(PANDA_HOME, (2, 1)), None, np.stack([t1, t2]), dt=2e-3, variants=v)
    one = engine("panda").rollout(PANDA_HOME, None, t1, dt=2e-3, variants=v[:1])
    two = engine("panda").rollout(PANDA_HOME, None, t2, dt=2e-3, variants=v[1:])
    np.testing.assert_array_equal(both.q[0], one.q[0])
    np.testing.assert_array_equal(both.q[1], two.q[0])


def test_gravity_compensation_holds_the_arm_still_and_misses_an_unknown_payload():
    """With g(q) in the drives and targets at q the arm at rest does not accelerate; a payload the controller was
    not told about makes it sag, one it was told about does not."""
    robot = _robot("panda")
    rng = np.random.default_rng(6)
    q = np.clip(PANDA_HOME + rng.normal(0.0, 0.3, (16, robot.ndof)), robot.lower, robot.upper)
    eng = engine("panda")
    held = eng.accelerations(q, None, q, gravity_compensation=True)
    assert np.abs(held.qdd).max() < 1e-8
    unknown = eng.accelerations(
        q, None, q, gravity_compensation=True, variants=[Variant("u", payloads=(Payload("hand", 2.0),))]
    )
    known = eng.accelerations(
        q,
        None,
        q,
        gravity_compensation=True,
        variants=[Variant("k", payloads=(Payload("hand", 2.0, known_to_controller=True),))],
    )
    assert np.abs(unknown.qdd).max() > 0.1
    assert np.abs(known.qdd).max() < 1e-8


def test_a_perturbation_acts_only_during_its_window():
    """A wrench from 0.1 s to 0.2 s leaves the motion unchanged before 0.1 s and changes it after."""
    targets = np.tile(PANDA_HOME, (300, 1))
    push = Variant("push", perturbation=Perturbation("hand", force=(0.0, 50.0, 0.0), start=0.1, duration=0.1))
    calm = engine("panda").rollout(PANDA_HOME, None, targets, dt=1e-3, record_every=1)
    pushed = engine("panda").rollout(PANDA_HOME, None, targets, dt=1e-3, record_every=1, variants=[push])
    np.testing.assert_array_equal(pushed.q[0, :100], calm.q[0, :100])  # samples up to t = 0.1 s
    assert np.abs(pushed.q[0, 101] - calm.q[0, 101]).max() > 0
    assert np.abs(pushed.q[0, 199] - calm.q[0, 199]).max() > 1e-3


def test_command_latency_delays_the_response_by_the_latency():
    """With 20 ms latency the response to a step is the undelayed response shifted by 20 steps of 1 ms."""
    targets = np.tile(PANDA_HOME, (300, 1))
    targets[50:] += 0.05
    now = engine("panda").rollout(PANDA_HOME, None, targets, dt=1e-3, record_every=1)
    late = engine("panda").rollout(
        PANDA_HOME, None, targets, dt=1e-3, record_every=1, variants=[Variant("late", latency=0.02)]
    )
    np.testing.assert_allclose(late.q[0, 20:], now.q[0, :-20], atol=1e-12)


def test_a_joint_driven_past_its_limit_is_stopped_by_the_limit_spring_and_flagged():
    """A target 0.3 rad beyond joint4's upper limit: the joint stops near the limit, the command is flagged as
    outside the limits and the rollout reports a position violation; with limits off it goes through."""
    robot = _robot("panda")
    j4 = robot.dof_index("joint4")
    target = PANDA_HOME.copy()
    target[j4] = robot.upper[j4] + 0.3
    targets = np.tile(target, (1000, 1))
    out = engine("panda").rollout(PANDA_HOME, None, targets, dt=1e-3)
    assert out.command_outside_limits[j4] and out.command_outside_limits.sum() == 1
    assert robot.upper[j4] < out.q_final[0, j4] < robot.upper[j4] + 0.05
    assert np.isfinite(out.first_position_violation[0, j4]) and out.min_position_margin[0, j4] < 0
    free = engine("panda", joint_limits="off").rollout(PANDA_HOME, None, targets, dt=1e-3)
    assert free.q_final[0, j4] > robot.upper[j4] + 0.2


def test_first_violation_times_match_the_recorded_trajectory():
    """First velocity-limit and effort-saturation times equal the first recorded step exceeding the limit."""
    robot = _robot("ur5e")
    targets = np.tile(UR5E_HOME + 1.2, (600, 1))  # a big step: the servos saturate, the undamped arm races
    out = engine("ur5e", gravity_compensation=False).rollout(
        UR5E_HOME, None, targets, dt=1e-3, record_every=1, variants=[Variant("undamped", damping_scale=0.0)]
    )
    np.testing.assert_allclose(out.first_effort_saturation[0], 0.0)  # the step saturates every servo at once
    for j in range(robot.ndof):
        over = np.flatnonzero(np.abs(out.qd[0, :, j]) > robot.velocity_limit[j])
        if over.size:
            # sample r is the state at (r + 1) dt, which the kernel checks at the start of step r + 1
            assert out.first_velocity_violation[0, j] == pytest.approx((over[0] + 1) * 1e-3)
        else:
            assert np.isnan(out.first_velocity_violation[0, j])
    assert np.isfinite(out.first_velocity_violation).any()
    np.testing.assert_allclose(
        out.min_velocity_margin[0], (robot.velocity_limit - np.abs(out.qd[0])).min(axis=0), atol=1e-12
    )


def test_smooth_coulomb_friction_stops_a_coasting_joint():
    """With the drives off, joint1 (vertical axis: no gravity torque) spinning at 1 rad/s stops within 0.5 s under
    5 N·m of friction, and keeps turning with the viscous damping alone."""
    robot = _robot("panda")
    qd0 = np.zeros(robot.ndof)
    qd0[0] = 1.0
    off = dict(kp_scale=0.0, kd_scale=0.0)
    targets = np.tile(PANDA_HOME, (500, 1))
    rub = engine("panda").rollout(
        PANDA_HOME, qd0, targets, dt=1e-3, variants=[Variant("f", friction={"joint1": 5.0}, **off)]
    )
    coast = engine("panda").rollout(PANDA_HOME, qd0, targets, dt=1e-3, variants=[Variant("c", **off)])
    assert abs(rub.qd_final[0, 0]) < 0.02
    assert coast.qd_final[0, 0] > 0.3


def test_chunked_launches_give_the_same_result_as_one_launch():
    """Splitting the time loop into launches of 7 steps changes nothing (state and statistics carry over)."""
    targets, velocities = _wild_targets(_robot("panda"), PANDA_HOME, 200, 2e-3, seed=7)
    one = engine("panda").rollout(PANDA_HOME, None, targets, target_velocities=velocities, dt=2e-3)
    many = engine("panda", chunk_steps=7).rollout(PANDA_HOME, None, targets, target_velocities=velocities, dt=2e-3)
    for field in ("q", "q_final", "first_position_violation", "max_tracking_error", "min_effort_margin"):
        np.testing.assert_array_equal(getattr(one, field), getattr(many, field))


def test_cancel_stops_between_chunks_and_progress_is_reported():
    """Setting the cancel event from the progress callback stops after the current chunk; completed is False."""
    cancel = threading.Event()
    seen = []

    def progress(fraction):
        seen.append(fraction)
        cancel.set()

    out = engine("panda", chunk_steps=50).rollout(PANDA_HOME, None, np.tile(PANDA_HOME, (500, 1)), dt=1e-3,
                                                  progress=progress, cancel=cancel)  # fmt: skip
    assert not out.completed
    assert seen and seen[0] == pytest.approx(0.1)


def test_a_diverging_integration_is_detected():
    """Stiff drives at a 50 ms step blow up: the divergence step is reported and counts as a violation.
    (Saturated drives' damping is made explicit here, as in MuJoCo, so nothing keeps the integration stable.)"""
    targets = np.tile(PANDA_HOME + 0.5, (200, 1))
    out = engine("panda", implicit_saturated_damping=False).rollout(
        PANDA_HOME, None, targets, dt=0.05, variants=[Variant("stiff", kp_scale=50.0)]
    )
    assert np.isfinite(out.diverged_at[0]) and out.violated[0]


def test_wait_ready_reports_the_start_up():
    """wait_ready reports the start-up time, the kernel load time and the worker count."""
    info = engine("panda").wait_ready()
    assert set(info) >= {"seconds", "kernel_seconds", "workers"} and info["workers"] == 0
    assert 0 <= info["kernel_seconds"] <= info["seconds"]


def test_an_engine_survives_its_shared_workers_being_shut_down():
    """After shutdown_workers() (e.g. by a Kit extension reload) the next request starts fresh workers."""
    from twin_ext.whatif import shutdown_workers

    robot = _robot("panda")
    pooled = WhatIfEngine(robot, settings=WhatIfSettings(workers=2))
    targets = np.tile(PANDA_HOME, (50, 1))
    before = pooled.rollout(PANDA_HOME, None, targets, dt=2e-3)
    shutdown_workers()
    after = pooled.rollout(PANDA_HOME, None, targets, dt=2e-3)
    np.testing.assert_array_equal(before.q, after.q)


def test_cancelling_a_pooled_request_stops_the_workers_early():
    """With the worker pool, setting the cancel event stops every worker between chunks: completed is False and
    the progress reported stays within 0..1."""
    cancel = threading.Event()
    seen = []

    def progress(fraction):
        seen.append(fraction)
        cancel.set()

    pooled = WhatIfEngine(_robot("panda"), settings=WhatIfSettings(workers=2, chunk_steps=20))
    q0 = np.tile(PANDA_HOME, (64, 1))
    out = pooled.rollout(q0, None, np.tile(PANDA_HOME, (4000, 1)), dt=1e-3, progress=progress, cancel=cancel)
    assert not out.completed
    assert seen and all(0.0 <= f <= 1.0 for f in seen)
