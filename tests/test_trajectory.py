# SPDX-License-Identifier: Apache-2.0
"""JointTrajectory: minimum-jerk interpolation, validation, time scaling, TOML, and the shipped scenario."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin_ext.robot import JointTrajectory, TrajectoryError

ROOT = Path(__file__).resolve().parents[1]
PICK_PLACE = ROOT / "data" / "scenarios" / "pick_place.toml"
MJCF = ROOT / "data" / "robots" / "franka_emika_panda" / "panda_nomesh.xml"


def _three_waypoints() -> JointTrajectory:
    return JointTrajectory(["a", "b"], [0.0, 1.0, 3.0], [[0.0, 1.0], [1.0, -1.0], [0.5, 2.0]], labels=["s", "m", "e"])


def test_waypoints_are_hit_exactly_at_rest():
    """At every waypoint the position is the waypoint and velocity and acceleration are zero."""
    traj = _three_waypoints()
    q, qd, qdd = traj.sample(traj.times)
    np.testing.assert_array_equal(q, traj.positions)
    np.testing.assert_array_equal(qd, 0.0)
    np.testing.assert_array_equal(qdd, 0.0)


def test_minimum_jerk_midpoint_and_peak_speed():
    """Half-way through a segment the joint is half-way, at the closed-form peak speed 1.875 dq/T."""
    traj = JointTrajectory(["j"], [2.0, 4.0], [[1.0], [3.0]])
    q, qd, qdd = traj.sample(3.0)
    assert q[0] == pytest.approx(2.0, abs=1e-15)
    assert qd[0] == pytest.approx(1.875 * 2.0 / 2.0, abs=1e-12)
    assert qdd[0] == pytest.approx(0.0, abs=1e-12)
    dense = traj.sample(np.linspace(2.0, 4.0, 20001))
    assert np.abs(dense[1]).max() == pytest.approx(traj.peak_velocity()[0], rel=1e-6)
    assert np.abs(dense[2]).max() == pytest.approx(traj.peak_acceleration()[0], rel=1e-4)


def test_derivatives_match_finite_differences():
    """qd and qdd are the time derivatives of q (central differences, h = 1e-5 s; error O(h^2))."""
    traj = _three_waypoints()
    t = np.linspace(0.01, 2.99, 997)
    h = 1e-5
    q_plus, qd_plus, _ = traj.sample(t + h)
    q_minus, qd_minus, _ = traj.sample(t - h)
    _, qd, qdd = traj.sample(t)
    np.testing.assert_allclose((q_plus - q_minus) / (2 * h), qd, atol=1e-7)
    np.testing.assert_allclose((qd_plus - qd_minus) / (2 * h), qdd, atol=1e-5)


def test_velocity_and_acceleration_are_continuous_across_waypoints():
    """No jump in qd or qdd when crossing a waypoint (both are zero on either side)."""
    traj = _three_waypoints()
    eps = 1e-9
    for t in traj.times[1:-1]:
        before = traj.sample(t - eps)
        after = traj.sample(t + eps)
        np.testing.assert_allclose(before[1], after[1], atol=1e-6)
        np.testing.assert_allclose(before[2], after[2], atol=1e-4)


def test_no_overshoot_between_waypoints():
    """Each joint stays between the two waypoints of its segment (limits checked at waypoints suffice)."""
    traj = _three_waypoints()
    q = traj.sample(np.linspace(0.0, 3.0, 3001))[0]
    for k in range(len(traj) - 1):
        seg = (np.linspace(0.0, 3.0, 3001) >= traj.times[k]) & (np.linspace(0.0, 3.0, 3001) <= traj.times[k + 1])
        lo = np.minimum(traj.positions[k], traj.positions[k + 1])
        hi = np.maximum(traj.positions[k], traj.positions[k + 1])
        assert np.all(q[seg] >= lo - 1e-12) and np.all(q[seg] <= hi + 1e-12)


def test_holds_the_end_positions_outside_the_time_range():
    """Before the first and after the last waypoint the trajectory holds still."""
    traj = _three_waypoints()
    q, qd, qdd = traj.sample([-5.0, 100.0])
    np.testing.assert_array_equal(q, traj.positions[[0, -1]])
    np.testing.assert_array_equal(qd, 0.0)
    np.testing.assert_array_equal(qdd, 0.0)


def test_sample_is_vectorised_over_any_shape_and_matches_scalar_calls():
    """Scalar t gives [n]; t of shape [A, B] gives [A, B, n]; both paths agree exactly."""
    traj = _three_waypoints()
    assert traj.sample(0.3)[0].shape == (2,)
    grid = np.linspace(-0.5, 3.5, 24).reshape(4, 6)
    q, qd, qdd = traj.sample(grid)
    assert q.shape == qd.shape == qdd.shape == (4, 6, 2)
    for idx in np.ndindex(4, 6):
        for full, one in zip((q, qd, qdd), traj.sample(float(grid[idx])), strict=True):
            np.testing.assert_allclose(full[idx], one, rtol=0, atol=1e-13)


def test_single_waypoint_is_a_hold():
    """A one-waypoint trajectory holds its position with zero velocity."""
    traj = JointTrajectory(["j"], [0.0], [[0.25]])
    q, qd, _ = traj.sample([0.0, 7.0])
    np.testing.assert_array_equal(q, [[0.25], [0.25]])
    np.testing.assert_array_equal(qd, 0.0)
    assert traj.duration == 0.0


def test_time_scaled_scales_velocity_and_acceleration():
    """time_scaled(k) keeps the path and start time; qd scales by k, qdd by k^2."""
    traj = _three_waypoints()
    fast = traj.time_scaled(2.0)
    assert fast.start_time == traj.start_time and fast.duration == pytest.approx(traj.duration / 2)
    t = np.linspace(0.0, 3.0, 31)
    q, qd, qdd = traj.sample(t)
    qf, qdf, qddf = fast.sample(t / 2.0)
    np.testing.assert_allclose(qf, q, atol=1e-12)
    np.testing.assert_allclose(qdf, 2.0 * qd, atol=1e-12)
    np.testing.assert_allclose(qddf, 4.0 * qdd, atol=1e-10)
    for bad in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(TrajectoryError, match="speed"):
            traj.time_scaled(bad)


def test_select_reorders_columns():
    """select() gives the named joints in the requested order and refuses unknown ones."""
    traj = _three_waypoints()
    sel = traj.select(["b", "a"])
    np.testing.assert_array_equal(sel.positions, traj.positions[:, ::-1])
    with pytest.raises(TrajectoryError, match=r"\['c'\].*not in this trajectory"):
        traj.select(["a", "c"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(times=[0.0, 1.0, 1.0]), r"strictly increasing: waypoint 2 \(t=1 s\)"),
        (dict(times=[0.0, 2.0, 1.0]), "strictly increasing"),
        (dict(times=[0.0, math.nan, 2.0]), "finite"),
        (dict(positions=[[0.0, 1.0], [math.inf, 0.0], [0.0, 0.0]]), "waypoint 1, joint 0"),
        (dict(positions=[[0.0, 1.0], [0.0, 0.0]]), r"shape \[K=3, n=2\]"),
        (dict(joint_names=["a", "a"]), "unique"),
        (dict(joint_names=[]), "empty"),
        (dict(joint_names="ab"), "list of names"),
        (dict(times=[]), "non-empty"),
    ],
)
def test_validation_names_the_problem(kwargs, match):
    """Bad times, positions or names raise TrajectoryError saying what is wrong."""
    args = dict(joint_names=["a", "b"], times=[0.0, 1.0, 2.0], positions=[[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    args.update(kwargs)
    with pytest.raises(TrajectoryError, match=match):
        JointTrajectory(**args)


def test_sampling_at_nan_is_refused():
    """NaN sample times raise instead of returning garbage."""
    with pytest.raises(TrajectoryError, match="finite"):
        _three_waypoints().sample([0.0, math.nan])
    with pytest.raises(TrajectoryError, match="finite"):
        _three_waypoints().sample(math.nan)


def test_toml_round_trip_is_exact(tmp_path):
    """to_toml -> from_toml reproduces names, labels, times and positions bit for bit."""
    traj = JointTrajectory(
        ['j"1', "j\\2"],
        [0.1, 0.30000000000000004, 7.0],
        [[1 / 3, -1e-300], [2.0**-40, 1e300], [-0.0, 5e-324]],
        labels=["start", "", "ünïcode"],
    )
    path = tmp_path / "t.toml"
    text = traj.to_toml(path, header="a comment\nsecond line")
    assert text.startswith("# a comment\n# second line\n")
    back = JointTrajectory.from_toml(path)
    assert back == traj
    np.testing.assert_array_equal(back.positions, traj.positions)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(min_value=1e-3, max_value=1e3), min_size=1, max_size=6),
    st.data(),
)
def test_toml_round_trip_property(steps, data):
    """Any valid trajectory survives the TOML round trip unchanged."""
    times = np.cumsum(steps)
    n = data.draw(st.integers(1, 4))
    pos = data.draw(
        st.lists(st.lists(st.floats(allow_nan=False, allow_infinity=False, width=64), min_size=n, max_size=n),
                 min_size=len(times), max_size=len(times))
    )  # fmt: skip
    traj = JointTrajectory([f"j{i}" for i in range(n)], times, pos)
    assert JointTrajectory.from_toml_text(traj.to_toml()) == traj


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            'joint_names = ["a"]\nspeed = 2\n[[waypoint]]\nt = 0.0\nq = [0.0]\n',
            r"unknown key 'speed'; valid keys: \['joint_names', 'waypoint'\]",
        ),
        (
            'joint_names = ["a"]\n[[waypoint]]\nt = 0.0\nq = [0.0]\nv = [1.0]\n',
            r"waypoint 0: unknown key 'v'; valid keys: \['t', 'q', 'label'\]",
        ),
        ('joint_names = ["a"]\n[[waypoint]]\nt = 0.0\n', "needs both 't'"),
        ('joint_names = ["a", "b"]\n[[waypoint]]\nt = 0.0\nq = [0.0]\n', "waypoint 0 has 1 positions but there are 2"),
        ('joint_names = ["a"]\n[[waypoint]]\nt = "zero"\nq = [0.0]\n', "must be a number"),
        ('joint_names = ["a"]\n', r"at least one \[\[waypoint\]\]"),
        ("[[waypoint]]\nt = 0.0\nq = [0.0]\n", "missing 'joint_names"),
        ('joint_names = ["a"\n', "not valid TOML"),
        (
            'joint_names = ["a"]\n[[waypoint]]\nt = 1.0\nq = [0.0]\n[[waypoint]]\nt = 0.5\nq = [1.0]\n',
            "strictly increasing",
        ),
    ],
)
def test_toml_errors_are_clear(text, match):
    """Malformed trajectory files are refused with a message naming the key or waypoint."""
    with pytest.raises(TrajectoryError, match=match):
        JointTrajectory.from_toml_text(text, source="x.toml")


def test_missing_file_is_a_clear_error(tmp_path):
    """A missing trajectory file names the path."""
    with pytest.raises(TrajectoryError, match="cannot read trajectory file"):
        JointTrajectory.from_toml(tmp_path / "nope.toml")


# ---- the shipped pick-and-place scenario ----------------------------------------------------------
PANDA_SPEED_LIMITS = np.array([2.175] * 4 + [2.61] * 3)  # Franka datasheet, rad/s


def test_pick_place_is_a_realistic_panda_cycle():
    """~10 s loop, inside the MJCF limits with >= 0.5 rad margin, fastest joint at 50-70 % of its datasheet
    speed and every joint below 70 %, fingers between 0 and 0.04 m, and at least one full open/close."""
    mujoco = pytest.importorskip("mujoco")
    traj = JointTrajectory.from_toml(PICK_PLACE)
    model = mujoco.MjModel.from_xml_path(str(MJCF))
    names = tuple(model.joint(j).name for j in range(model.njnt))
    assert traj.joint_names == names
    assert 9.0 <= traj.duration <= 11.0
    np.testing.assert_array_equal(traj.positions[0], traj.positions[-1])  # loops without a jump
    lo, hi = model.jnt_range[:, 0], model.jnt_range[:, 1]
    arm = traj.positions[:, :7]
    assert np.all(arm - lo[:7] >= 0.5) and np.all(hi[:7] - arm >= 0.5)
    fraction = traj.peak_velocity()[:7] / PANDA_SPEED_LIMITS
    assert 0.5 <= fraction.max() <= 0.7, fraction
    assert np.all(fraction <= 0.7)
    fingers = traj.positions[:, 7:]
    assert fingers.min() == 0.0 and fingers.max() == 0.04
    np.testing.assert_array_equal(fingers[:, 0], fingers[:, 1])
    assert traj.peak_velocity()[7:].max() <= 0.2  # franka_description finger speed limit, m/s
    assert {"pick", "place", "grasp", "release"} <= set(traj.labels)


def test_a_looping_program_unrolls_into_consecutive_cycles():
    """repeated(2) plays the pick-and-place cycle twice: same poses one period apart, one waypoint shared."""
    import numpy as np

    from twin_ext.robot import JointTrajectory, TrajectoryError

    program = JointTrajectory.from_toml("data/scenarios/pick_place.toml")
    twice = program.repeated(2)
    assert twice.duration == pytest.approx(2 * program.duration) and len(twice) == 2 * len(program) - 1
    for t in (0.7, 3.3, 9.1):
        np.testing.assert_allclose(twice.sample(t + program.duration)[0], program.sample(t)[0], atol=1e-12)
    with pytest.raises(TrajectoryError, match="ends where it starts"):
        JointTrajectory(["a"], [0.0, 1.0], [[0.0], [1.0]]).repeated(2)
