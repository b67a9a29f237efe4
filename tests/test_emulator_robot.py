# SPDX-License-Identifier: Apache-2.0
"""EmulatedRobot offline: the delivery schedule, ground truth, clock, events and commands (no broker)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("mujoco")

from twin_ext.emulator import ClockJump, EmulatedRobot, EmulatorError, EmulatorSettings, ImpairmentProfile, Restart
from twin_ext.robot import JointTrajectory
from twin_ext.telemetry import (
    MoveTo,
    Resume,
    SpeedOverride,
    Stop,
    TelemetryIngest,
    TelemetrySettings,
    decode,
    decode_birth,
    decode_status,
    encode_command,
)

ROOT = Path(__file__).resolve().parents[1]
STANDARD = ImpairmentProfile.from_toml(ROOT / "config" / "impairments" / "standard.toml")
PROGRAM = JointTrajectory.from_toml(ROOT / "data" / "scenarios" / "pick_place.toml")
START_NS = 7_000_000_000  # an arbitrary host clock origin: nothing may assume 0


def _states(sim):
    return [(d, decode(d.payload)) for d in sim.joint_state_deliveries]


@pytest.fixture(scope="module")
def clean_sim():
    return EmulatedRobot(profile=ImpairmentProfile()).simulate(3.0, seed=0, start_ns=START_NS)


@pytest.fixture(scope="module")
def standard_sim():
    return EmulatedRobot(profile=STANDARD).simulate(10.3, seed=5, start_ns=START_NS)


def test_noise_free_profile_publishes_exactly_the_plant_state_at_the_stamp(clean_sim):
    """With no impairments every joint state carries bit-for-bit the plant's q, qd and drive torque at
    the stamped instant, arrives when it was sampled, and seq counts up from 0 at 200 Hz."""
    sim = clean_sim
    truth = sim.truth
    row_of = {int(s): i for i, s in enumerate(truth.robot_ns)}
    states = _states(sim)
    assert len(states) == 600
    for k, (d, msg) in enumerate(states):
        row = row_of[msg.stamp_ns]
        assert msg.seq == k and msg.names == truth.joint_names
        np.testing.assert_array_equal(msg.position, truth.q[row])
        np.testing.assert_array_equal(msg.velocity, truth.qd[row])
        np.testing.assert_array_equal(msg.effort, truth.tau[row])
        assert d.arrival_ns == truth.t_ns[row] == START_NS + 5_000_000 * k
    np.testing.assert_array_equal(truth.robot_ns, truth.t_ns)  # the robot clock is the host clock here
    assert len(truth) == 3000 and np.all(np.diff(truth.t_ns) == 1_000_000)


def test_binary_codec_carries_the_same_exact_state():
    """The binary codec publishes the same values as JSON (both lossless for float64)."""
    settings = EmulatorSettings(codec="binary")
    sim = EmulatedRobot(settings, profile=ImpairmentProfile()).simulate(0.5, seed=0)
    birth = decode_birth(sim.deliveries[0].payload)
    assert birth.codec == "binary"
    row_of = {int(s): i for i, s in enumerate(sim.truth.robot_ns)}
    for d in sim.joint_state_deliveries:
        assert d.payload[:4] == b"TWJS"
        msg = decode(d.payload)
        np.testing.assert_array_equal(msg.position, sim.truth.q[row_of[msg.stamp_ns]])


def test_session_starts_with_birth_and_online_and_ends_offline(standard_sim):
    """Retained birth and online status come first (at the start), a clean offline status at the end."""
    sim = standard_sim
    first, second = sim.deliveries[:2]
    assert (first.kind, first.retain, first.arrival_ns) == ("birth", True, START_NS)
    birth = decode_birth(first.payload)
    assert birth.joint_names == PROGRAM.joint_names and birth.rate_hz == 200.0 and birth.robot_id == "panda"
    assert decode_status(second.payload).state == "online"
    offline = [d for d in sim.deliveries if d.kind == "offline"]
    assert len(offline) == 1 and offline[0].arrival_ns == sim.end_ns
    assert decode_status(offline[0].payload).boot_id == birth.boot_id
    assert all(a.arrival_ns <= b.arrival_ns for a, b in zip(sim.deliveries, sim.deliveries[1:], strict=False))


def test_stamps_follow_the_robot_clock_exactly(standard_sim):
    """Every stamp is host + 250 ms + round(50e-6 (host - start)) of the step it sampled -- exactly."""
    s = standard_sim.samples
    expected = s.host_ns + 250_000_000 + np.round((s.host_ns - START_NS) * 50e-6).astype(np.int64)
    np.testing.assert_array_equal(s.stamp_ns, expected)
    np.testing.assert_array_equal(standard_sim.truth.robot_ns[s.step], s.stamp_ns)
    stamps = {msg.stamp_ns for _, msg in _states(standard_sim)}
    assert stamps <= set(s.stamp_ns.tolist())


def test_standard_profile_delivers_with_the_profile_statistics(standard_sim):
    """Loss, latency and noise in an end-to-end run look like the profile (loose, short-run tolerances:
    2060 samples; loss within 3 points, mean latency within 2 ms, noise std within 15 %). The standard profile is
    one TCP connection: arrivals keep send order, and a slow message delays those behind it, so its mean latency
    is above the drawn 20 ms; the same delays per message (reordering.toml) give the drawn mean."""
    sim = standard_sim
    s = sim.samples
    assert len(s) == 2060
    lost = (s.copies == 0).mean()
    assert abs(lost - 0.05) < 0.03
    delivered = s.copies > 0
    arrivals = s.first_arrival_ns[delivered]
    assert np.all(np.diff(arrivals) >= 0)  # in send order
    latency_ms = (arrivals - s.host_ns[delivered]) / 1e6
    assert 20.0 < latency_ms.mean() < 30.0 and latency_ms.min() >= 0.0
    reordering = ImpairmentProfile.from_toml(ROOT / "config" / "impairments" / "reordering.toml")
    r = EmulatedRobot(profile=reordering).simulate(10.3, seed=5, start_ns=START_NS).samples
    r_delivered = r.copies > 0
    r_latency_ms = (r.first_arrival_ns[r_delivered] - r.host_ns[r_delivered]) / 1e6
    assert abs(r_latency_ms.mean() - 20.0) < 2.0 and np.any(np.diff(r.first_arrival_ns[r_delivered]) < 0)
    noise = s.position - sim.truth.q[s.step]
    assert abs(noise.std() - 1e-4) < 1.5e-5
    assert sim.channel["lost"] == (s.copies == 0).sum()


def test_simulation_is_deterministic_for_a_seed():
    """Same seed: identical deliveries, truth and boot ids; another seed: a different schedule."""
    robot = EmulatedRobot(profile=STANDARD)
    a = robot.simulate(1.0, seed=3)
    b = robot.simulate(1.0, seed=3)
    c = robot.simulate(1.0, seed=4)
    assert a.deliveries == b.deliveries
    np.testing.assert_array_equal(a.truth.q, b.truth.q)
    assert a.births[0].boot_id == b.births[0].boot_id != c.births[0].boot_id
    assert a.deliveries != c.deliveries
    np.testing.assert_array_equal(a.truth.q, c.truth.q)  # the arm does not depend on the network


def test_feeding_an_ingest_accounts_for_every_delivery(standard_sim):
    """Through TelemetryIngest.on_payload: accepted + duplicates + out-of-order = delivered joint states,
    and the accepted stamps are a subset of the samples the robot produced."""
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="panda", state_buffer=100_000))
    standard_sim.feed(ingest)
    stats = ingest.stats
    delivered = len(standard_sim.joint_state_deliveries)
    assert stats.accepted + stats.duplicates + stats.out_of_order == delivered
    assert stats.births == 1 and stats.rejected == stats.duplicates + stats.out_of_order
    accepted = {r.message.stamp_ns for r in ingest.poll_states()}
    assert len(accepted) == stats.accepted and accepted <= set(standard_sim.samples.stamp_ns.tolist())


def test_restart_event_gives_a_new_boot_and_sequence_from_zero():
    """A scripted restart: offline status, no samples of the old boot after it, then a new retained birth with
    a new boot id, online status, and seq from 0; the ingest counts one restart."""
    profile = ImpairmentProfile(latency_ms=20.0, jitter_ms=10.0, restarts=(Restart(at_s=1.0, down_s=0.5),))
    sim = EmulatedRobot(profile=profile).simulate(2.5, seed=1)
    kinds = [d.kind for d in sim.deliveries if d.kind != "joint_states"]
    assert kinds == ["birth", "online", "offline", "birth", "online", "offline"]
    b1, b2 = sim.births
    assert b1.boot_id != b2.boot_id
    off_at = next(d.arrival_ns for d in sim.deliveries if d.kind == "offline")
    second_birth_at = [d.arrival_ns for d in sim.deliveries if d.kind == "birth"][1]
    assert second_birth_at - off_at == 500_000_000
    old = [d for d in sim.joint_state_deliveries if d.boot_id == b1.boot_id]
    assert max(d.arrival_ns for d in old) <= off_at and sim.channel["dropped_in_restart"] > 0
    new = [decode(d.payload) for d in sim.joint_state_deliveries if d.boot_id == b2.boot_id]
    assert min(m.seq for m in new) == 0
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="panda"))
    sim.feed(ingest)
    assert ingest.stats.restarts == 1 and ingest.birth.boot_id == b2.boot_id


def test_clock_jump_steps_the_stamps():
    """A scripted +300 ms clock jump at 1 s: stamps step by exactly 300 ms there and nowhere else."""
    profile = ImpairmentProfile(clock_jumps=(ClockJump(at_s=1.0, step_ms=300.0),))
    sim = EmulatedRobot(profile=profile).simulate(2.0, seed=0)
    s = sim.samples
    steps = np.diff(s.stamp_ns - s.host_ns)
    assert steps.tolist().count(300_000_000) == 1 and set(steps.tolist()) == {0, 300_000_000}
    assert s.host_ns[np.flatnonzero(steps)[0] + 1] == 1_000_000_000


def test_sequence_numbers_wrap_at_two_to_the_32():
    """seq_start near 2**32: seq runs 2**32-2, 2**32-1, 0, 1, ... (uint32 wrap)."""
    sim = EmulatedRobot(profile=ImpairmentProfile(seq_start=2**32 - 2)).simulate(0.03, seed=0)
    assert [decode(d.payload).seq for d in sim.joint_state_deliveries] == [2**32 - 2, 2**32 - 1, 0, 1, 2, 3]


def test_rates_land_on_the_control_tick():
    """300 Hz samples fall on the 1 kHz control grid, 3 or 4 ms apart, averaging 1/300 s; > 1 kHz is refused."""
    sim = EmulatedRobot(profile=ImpairmentProfile(rate_hz=300.0)).simulate(1.0, seed=0)
    gaps = np.diff(sim.samples.host_ns)
    assert set(gaps.tolist()) <= {3_000_000, 4_000_000}
    assert len(sim.samples) == 300
    with pytest.raises(EmulatorError, match="above the plant's step rate 1000 Hz"):
        EmulatedRobot(profile=ImpairmentProfile(rate_hz=2000.0)).simulate(0.1)


# ---- commands ----------------------------------------------------------------------------------------
def test_commands_are_ignored_unless_enabled():
    """By default every command is rejected ('commands_disabled') and the arm does exactly what it would
    have done without it."""
    robot = EmulatedRobot(profile=ImpairmentProfile())
    plain = robot.simulate(2.0, seed=0)
    commanded = robot.simulate(2.0, seed=0, commands=[(0.5, encode_command(Stop())), (1.0, SpeedOverride(scale=0.5))])
    assert [(c.accepted, c.reason) for c in commanded.commands] == [(False, "commands_disabled")] * 2
    np.testing.assert_array_equal(plain.truth.q, commanded.truth.q)


def _enabled(**kwargs) -> EmulatedRobot:
    return EmulatedRobot(EmulatorSettings(accept_commands=True, **kwargs), profile=ImpairmentProfile())


def test_speed_override_slows_the_program_by_time_scaling():
    """Override 0.5 at t = 0 (rate ramps 1 -> 0.5 in 0.15 s): at t = 2.9 s the target is the program at
    s = 0.15 * 0.75 + 0.5 * (2.9 - 0.15) s, to 1e-3 rad (1 ms discretisation of the rate)."""
    sim = _enabled().simulate(3.0, seed=0, commands=[(0.0, SpeedOverride(scale=0.5))])
    assert sim.commands[0].accepted
    s = 0.15 * 0.75 + 0.5 * (2.9 - 0.15)
    np.testing.assert_allclose(sim.truth.q_target[2900], PROGRAM.sample(s)[0], atol=1e-3)
    np.testing.assert_allclose(sim.truth.qd_target[2900], 0.5 * PROGRAM.sample(s)[1], atol=2e-3)


def test_stop_brings_the_arm_to_rest_and_resume_continues():
    """Stop at 0.8 s (mid-move): within 0.6 s the arm is at rest (|qd| < 1e-3 rad/s) on the program's path;
    resume at 2.0 s: it moves again and reaches the pre-pick waypoint the program was heading for."""
    sim = _enabled().simulate(4.5, seed=0, commands=[(0.8, Stop()), (2.0, Resume(id="r1"))])
    assert [c.accepted for c in sim.commands] == [True, True]
    truth = sim.truth
    assert np.abs(truth.qd[800]).max() > 0.3  # it was moving
    assert np.abs(truth.qd[1400:2000]).max() < 1e-3
    assert np.abs(truth.qd_target[1400:2000]).max() == 0.0
    assert np.abs(truth.qd[2500]).max() > 0.1
    pre_pick = PROGRAM.positions[PROGRAM.labels.index("pre-pick")]
    distances = np.abs(truth.q[:, :7] - pre_pick[:7]).max(axis=1)
    assert distances.min() < 3e-3


def test_move_to_reaches_and_holds_the_target():
    """move_to joint1 = 0.4 rad in 2 s: the target arrives on time, the other joints hold, the plant follows."""
    cmd = MoveTo(names=("joint1",), position=(0.4,), duration_s=2.0)
    sim = _enabled().simulate(3.5, seed=0, commands=[(0.5, cmd)])
    assert sim.commands[0].accepted
    truth = sim.truth
    held = truth.q_target[500].copy()
    assert truth.q_target[2500, 0] == pytest.approx(0.4, abs=1e-12)
    np.testing.assert_array_equal(truth.q_target[2500:, 1:], np.broadcast_to(held[1:], truth.q_target[2500:, 1:].shape))
    assert abs(truth.q[3499, 0] - 0.4) < 3e-3
    assert np.abs(truth.qd_target[2501:]).max() < 1e-12  # at rest (to the rounding of the path clock)


@pytest.mark.parametrize(
    ("command", "reason"),
    [
        (MoveTo(names=("joint8",), position=(0.0,), duration_s=2.0), "unknown_joint"),
        (MoveTo(names=("joint4",), position=(0.3,), duration_s=5.0), "out_of_limits"),
        (MoveTo(names=("joint1",), position=(1.5,), duration_s=0.5), "too_fast"),
        (SpeedOverride(scale=1.5), "above_max_speed_override"),
        (b'{"v":1,"type":"launch"}', "unknown_type"),
        (b"\x00\xff", "not_json"),
        (b'{"v":1,"type":"speed_override","scale":NaN}', "not_json"),
    ],
)
def test_unacceptable_commands_are_rejected_with_a_reason(command, reason):
    """With commands enabled, unsafe or malformed commands are rejected, logged with a reason code, and
    change nothing."""
    robot = _enabled()
    sim = robot.simulate(0.5, seed=0, commands=[(0.1, command)])
    assert [(c.accepted, c.reason) for c in sim.commands] == [(False, reason)]
    plain = robot.simulate(0.5, seed=0)
    np.testing.assert_array_equal(sim.truth.q, plain.truth.q)


def test_max_speed_override_setting_admits_faster_runs():
    """Raising max_speed_override lets the twin's what-if speeds (x1.5) run on the emulator."""
    sim = _enabled(max_speed_override=1.5).simulate(0.5, seed=0, commands=[(0.0, SpeedOverride(scale=1.5))])
    assert sim.commands[0].accepted


def test_bad_arguments_are_clear_errors():
    """Non-positive durations and programs that do not fit the robot raise EmulatorError."""
    robot = EmulatedRobot(profile=ImpairmentProfile())
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(EmulatorError, match="duration_s"):
            robot.simulate(bad)
    short = JointTrajectory(PROGRAM.joint_names, PROGRAM.times[:2], PROGRAM.positions[:2])
    with pytest.raises(EmulatorError, match="must end where it starts"):
        EmulatedRobot(program=short).simulate(0.1)
    with pytest.raises(EmulatorError, match="cannot read trajectory file"):
        EmulatedRobot(EmulatorSettings(program="no/such/program.toml"))


def test_truth_interpolation_matches_the_steps(clean_sim):
    """Truth.interpolate returns the recorded rows at step times and blends linearly between them."""
    truth = clean_sim.truth
    q, _ = truth.interpolate(truth.t_ns[[10, 20]])
    np.testing.assert_array_equal(q, truth.q[[10, 20]])
    mid, _ = truth.interpolate(truth.t_ns[10] + 500_000)
    np.testing.assert_allclose(mid, 0.5 * (truth.q[10] + truth.q[11]), atol=1e-15)
