# SPDX-License-Identifier: Apache-2.0
"""ROS 2 bags in and out without ROS: rosbag2 MCAP files of sensor_msgs/msg/JointState replayed by the twin, and
the twin's estimate exported as one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from ros2_bags import RECORDING, ROS_EPOCH_NS, write_real_world_bag

from twin_ext.ros2 import Ros2BagError, is_ros2_bag, read_joint_state_bag, resolve_joint_names, write_joint_state_bag
from twin_ext.telemetry import decode, decode_birth

REPO = Path(__file__).resolve().parents[1]
PANDA = ("joint1", "joint2", "joint3", "joint4", "joint5", "joint6", "joint7", "finger_joint1", "finger_joint2")


def _read_bag(path: Path, topic: str):
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        return [(m.log_time, ros) for _, _, m, ros in reader.iter_decoded_messages(topics=[topic])]


def test_a_bag_written_with_the_library_writer_round_trips_into_telemetry_exactly(tmp_path):
    """Stamps, names, positions, velocities and efforts come back bit-for-bit as twin_ext joint states, after a
    birth naming the joints and the publication rate."""
    rng = np.random.default_rng(0)
    t = ROS_EPOCH_NS + np.arange(50, dtype=np.int64) * 2_000_000  # 500 Hz
    q, qd, tau = (rng.normal(size=(50, len(PANDA))) for _ in range(3))
    bag = tmp_path / "round_trip.mcap"
    assert write_joint_state_bag(bag, t, PANDA, q, qd, tau, topic="/joint_states") == 50
    assert is_ros2_bag(bag) and not is_ros2_bag(RECORDING)
    read = read_joint_state_bag(bag, PANDA, robot_id="arm")
    assert read.topic == "/joint_states" and read.messages == 50 and read.warnings == []
    birth = decode_birth(read.payloads[0][1])
    assert birth.joint_names == PANDA and birth.rate_hz == pytest.approx(500.0)
    for i, (topic, payload, arrival) in enumerate(read.payloads[1:]):
        msg = decode(payload)
        assert topic == "twin/v1/arm/joint_states" and arrival == t[i] and msg.stamp_ns == t[i]
        assert msg.names == PANDA
        np.testing.assert_array_equal(msg.position, q[i])
        np.testing.assert_array_equal(msg.velocity, qd[i])
        np.testing.assert_array_equal(msg.effort, tau[i])


def test_joint_names_match_by_map_then_exactly_then_by_one_unambiguous_prefix():
    """franka_ros names (panda_joint1..) match by the common prefix with a warning; an explicit map wins; extra
    joints are ignored with a warning; a model joint nothing maps to is an error naming it and the fix."""
    franka = [f"panda_joint{i}" for i in range(1, 8)] + ["panda_finger_joint1", "panda_finger_joint2"]
    mapping, warnings = resolve_joint_names(franka, PANDA)
    assert mapping["panda_joint1"] == "joint1" and mapping["panda_finger_joint2"] == "finger_joint2"
    assert len(warnings) == 1 and "prefix 'panda_'" in warnings[0]
    mapping, warnings = resolve_joint_names([*PANDA[::-1], "conveyor"], PANDA)
    assert mapping["joint3"] == "joint3" and any("conveyor" in w and "ignored" in w for w in warnings)
    explicit = {f"arm_{i}": n for i, n in enumerate(PANDA)}
    mapping, warnings = resolve_joint_names(list(explicit), PANDA, explicit)
    assert mapping == explicit and warnings == []
    with pytest.raises(Ros2BagError, match=r"finger_joint1.*joint_map"):
        resolve_joint_names([f"panda_joint{i}" for i in range(1, 8)], PANDA)


def test_a_real_world_shaped_bag_replays_with_clear_warnings_and_its_export_tracks_the_plant(tmp_path):
    """A 1 kHz bag with ROS wall-clock stamps, joints in reverse order, two extra joints and a controller-state
    topic replays through ``python -m twin_ext replay``; the warnings name what was ignored; the exported
    /twin/joint_states bag follows the plant's truth.

    Tolerance: the bag carries the exact plant positions at 1 kHz, received 0.3-0.5 ms after their stamps; the
    twin's error is bounded by that unknown latency times the joint speed (< 1.5 rad/s here): < 1 mrad RMS."""
    bag = tmp_path / "robot.mcap"
    t_log, names, q = write_real_world_bag(bag)
    out = tmp_path / "out"
    export = tmp_path / "twin.mcap"
    proc = subprocess.run(
        [sys.executable, "-m", "twin_ext", "replay", str(bag), "--whatif", "none", "--out", str(out)]
        + ["--export-ros2", str(export)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "['base_rail_joint', 'gripper_led'] are not in the robot model: ignored" in proc.stderr
    assert "controller-state messages on /arm_controller/controller_state give reference channels" in proc.stderr
    assert "Traceback" not in proc.stderr
    rows = _read_bag(export, "/twin/joint_states")
    assert len(rows) > 100 and list(rows[0][1].name) == list(PANDA)
    t = np.array([ros.header.stamp.sec * 10**9 + ros.header.stamp.nanosec for _, ros in rows])
    est = np.array([ros.position for _, ros in rows])
    cols = [names.index(n) for n in PANDA]
    truth = np.stack([np.interp(t, t_log, q[:, c]) for c in cols], axis=1)
    scored = t > t_log[0] + 2 * 10**9  # after the clock sync's warm-up, as the fidelity score
    rms = float(np.sqrt(np.mean((est[scored] - truth[scored]) ** 2)))
    assert rms < 1e-3, rms


def test_a_franka_ros_bag_replays_in_a_suite_through_the_prefix_match_with_a_warning(tmp_path):
    """``panda_joint1``.. names (franka_ros) in a suite's replay job: the job runs and its warnings say the prefix
    was used; a ``max_warnings = 0`` check holds a stricter group to an explicit joint_map (it fails)."""
    from twin_ext.batch import run_suite

    write_real_world_bag(tmp_path / "franka.mcap", prefix="panda_", reverse=False, extra=(), duration_s=3.0)
    suite = tmp_path / "franka.toml"
    suite.write_text(
        'name = "franka"\n[[replay]]\nrecordings = ["*.mcap"]\n[replay.checks]\nforbid_events = ["collision"]\n'
        '[[replay]]\nrecordings = ["franka.mcap"]\n[replay.checks]\nmax_warnings = 0\n'
    )
    summary = run_suite(suite, out=tmp_path / "out")
    lenient, strict = summary["results"]
    assert lenient["status"] == "pass", lenient
    assert any("prefix 'panda_'" in w for w in lenient["warnings"])
    assert lenient["metrics"]["source"] == "ros2" and lenient["metrics"]["accepted"] > 2900
    assert strict["status"] == "fail" and strict["checks"][0]["name"] == "max_warnings"
    assert not summary["passed"]


def test_a_bag_whose_joints_do_not_map_is_refused_naming_the_joints_and_the_fix(tmp_path):
    """A bag without the fingers: ``replay`` exits 2 naming the missing model joints and ``--joint-map``;
    mapping them explicitly is the documented way out (here onto bag joints that carry them)."""
    arm = [f"panda_joint{i}" for i in range(1, 8)]
    t = ROS_EPOCH_NS + np.arange(200, dtype=np.int64) * 1_000_000
    bag = tmp_path / "arm_only.mcap"
    write_joint_state_bag(bag, t, [*arm, "left", "right"], np.zeros((200, 9)), topic="/joint_states")
    base = [sys.executable, "-m", "twin_ext", "replay", str(bag), "--whatif", "none", "--out", str(tmp_path / "o")]
    refused = subprocess.run(base[:5], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "finger_joint1" in refused.stderr and "joint_map" in refused.stderr
    mapped = subprocess.run(
        [*base, "--joint-map", "left=finger_joint1", "--joint-map", "right=finger_joint2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert mapped.returncode == 0, mapped.stderr[-2000:]
    assert "prefix 'panda_'" in mapped.stderr


def test_the_joint_name_map_set_in_a_twin_config_file_maps_a_bag_in_replay_and_in_a_suite(tmp_path):
    """``[telemetry] ros2_joint_map`` of a twin config (config/twin.toml's key) maps the bag's finger names in
    ``replay --config`` and in a suite's ``[[replay]] config``; a malformed entry is refused naming the key."""
    from twin_ext.batch import run_suite
    from twin_ext.config import ConfigError
    from twin_ext.telemetry import TelemetrySettings

    arm = [f"panda_joint{i}" for i in range(1, 8)]
    t = ROS_EPOCH_NS + np.arange(200, dtype=np.int64) * 1_000_000
    bag = tmp_path / "arm_only.mcap"
    write_joint_state_bag(bag, t, [*arm, "left", "right"], np.zeros((200, 9)), topic="/joint_states")
    config = tmp_path / "twin.toml"
    config.write_text('[telemetry]\nros2_joint_map = ["left=finger_joint1", "right=finger_joint2"]\n')
    replay = [sys.executable, "-m", "twin_ext", "replay", str(bag), "--whatif", "none", "--out", str(tmp_path / "o")]
    mapped = subprocess.run([*replay, "--config", str(config)], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert mapped.returncode == 0, mapped.stderr[-2000:]
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\n[[replay]]\nrecordings = ["arm_only.mcap"]\nconfig = "twin.toml"\n')
    without = tmp_path / "w.toml"
    without.write_text('name = "w"\n[[replay]]\nrecordings = ["arm_only.mcap"]\n')
    assert run_suite(suite, out=tmp_path / "out")["passed"]
    (refused,) = run_suite(without, out=tmp_path / "out")["results"]
    assert refused["status"] == "error" and "finger_joint1" in refused["error"]
    with pytest.raises(ConfigError, match=r"\[telemetry\] ros2_joint_map entry 'left'.*BAG=MODEL"):
        TelemetrySettings.from_mapping({"ros2_joint_map": ["left"]})


def test_a_controller_state_topic_gives_each_joint_state_the_newest_reference_before_it(tmp_path):
    """control_msgs JointTrajectoryControllerState at 100 Hz beside 1 kHz joint states: every joint state carries
    reference_position = the newest controller reference stamped at or before it (mapped by joint name, whatever
    the joint states' order), no reference velocity when the controller sends none, and the warning counts them."""
    bag = tmp_path / "robot.mcap"
    _, names, q = write_real_world_bag(bag, duration_s=1.0)
    states = read_joint_state_bag(bag, PANDA)
    messages = [decode(payload) for _, payload, _ in states.payloads[1:]]
    assert len(messages) == len(q) and all(m.reference_position is not None for m in messages)
    assert all(m.reference_velocity is None for m in messages)
    for i, m in enumerate(messages):
        expected = q[10 * (i // 10)]  # the bag's controller publishes every 10th sample, at that sample's stamp
        assert [m.reference_position[m.names.index(n)] for n in names] == pytest.approx(expected, abs=1e-12), i
    assert any(f"{len(q)} of {len(q)} joint states carry one" in w for w in states.warnings), states.warnings
