# SPDX-License-Identifier: Apache-2.0
"""Test helpers: ROS 2 bags shaped like real ones, made from the shipped recording's plant truth.

rosbag2 writes MCAP with ``ros2msg`` schemas; these bags are written with mcap-ros2-support's own writer (through
`twin_ext.ros2.write_joint_state_bag` and, for the controller state, the library's `Writer` directly).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "data" / "recordings" / "panda_pick_place_standard.mcap"
ROS_EPOCH_NS = 1_733_140_000_000_000_000  # a ROS wall-clock stamp (2024-12): header stamps are Unix time
LATENCY_NS = 300_000  # recorder receives each message 0.3 ms after its stamp (plus up to 0.2 ms jitter)

_CONTROLLER_MSGDEF = "\n".join(
    [
        "std_msgs/Header header",
        "string[] joint_names",
        "trajectory_msgs/JointTrajectoryPoint reference",
        "trajectory_msgs/JointTrajectoryPoint feedback",
        "trajectory_msgs/JointTrajectoryPoint error",
        "=" * 80,
        "MSG: std_msgs/Header",
        "builtin_interfaces/Time stamp",
        "string frame_id",
        "=" * 80,
        "MSG: builtin_interfaces/Time",
        "int32 sec",
        "uint32 nanosec",
        "=" * 80,
        "MSG: trajectory_msgs/JointTrajectoryPoint",
        "float64[] positions",
        "float64[] velocities",
        "float64[] accelerations",
        "float64[] effort",
        "builtin_interfaces/Duration time_from_start",
        "=" * 80,
        "MSG: builtin_interfaces/Duration",
        "int32 sec",
        "uint32 nanosec",
    ]
)


def plant_truth(rate_hz: float = 1000.0, duration_s: float = 1e9):
    """The shipped recording's plant truth resampled at ``rate_hz`` over its first ``duration_s``: ``(t_ns [T]
    from 0, names [n], q [T, n] rad, qd [T, n] rad/s)``."""
    from twin_ext.emulator import TRUTH_TOPIC
    from twin_ext.telemetry import McapReplay

    rows = [row for _, row in McapReplay(RECORDING).read_json(TRUTH_TOPIC)]
    names = list(rows[0]["names"])
    t = np.array([r["host_ns"] for r in rows], dtype=np.int64)
    q = np.array([r["position"] for r in rows])
    grid = np.arange(t[0], min(t[-1], t[0] + int(duration_s * 1e9)), int(1e9 / rate_hz), dtype=np.int64)
    qi = np.stack([np.interp(grid, t, q[:, j]) for j in range(len(names))], axis=1)
    qd = np.gradient(qi, (grid - grid[0]) * 1e-9, axis=0)
    return grid - grid[0], names, qi, qd


def write_real_world_bag(
    path: Path,
    *,
    prefix: str = "",
    reverse: bool = True,
    extra: tuple[str, ...] = ("base_rail_joint", "gripper_led"),
    duration_s: float = 4.0,
):
    """A 1 kHz ``/joint_states`` bag with ROS stamps, names in another order (``prefix`` + model name) plus
    ``extra`` joints the model lacks, and a controller-state topic. Returns ``(t_ns [T] log times, names, q [T, n])``
    of the plant truth in the bag's log-time clock (model names, model order)."""
    from mcap_ros2.writer import Writer

    from twin_ext.ros2 import JOINT_STATE_DATATYPE, JOINT_STATE_MSGDEF

    t, names, q, qd = plant_truth(1000.0, duration_s)
    order = list(range(len(names)))[::-1] if reverse else list(range(len(names)))
    bag_names = [prefix + names[j] for j in order] + list(extra)
    rng = np.random.default_rng(3)
    stamps = ROS_EPOCH_NS + t
    logs = stamps + LATENCY_NS + rng.integers(0, 200_000, len(t))
    pad = np.zeros((len(t), len(extra)))
    bag_q = np.concatenate([q[:, order], pad + 0.5], axis=1)
    bag_qd = np.concatenate([qd[:, order], pad], axis=1)
    with open(path, "wb") as stream:
        writer = Writer(stream)
        js = writer.register_msgdef(JOINT_STATE_DATATYPE, JOINT_STATE_MSGDEF)
        ctrl = writer.register_msgdef("control_msgs/msg/JointTrajectoryControllerState", _CONTROLLER_MSGDEF)
        for i in range(len(t)):
            stamp = int(stamps[i])
            header = {"stamp": {"sec": stamp // 10**9, "nanosec": stamp % 10**9}, "frame_id": ""}
            writer.write_message(
                "/joint_states",
                js,
                {
                    "header": header,
                    "name": bag_names,
                    "position": bag_q[i].tolist(),
                    "velocity": bag_qd[i].tolist(),
                    "effort": [],
                },
                log_time=int(logs[i]),
                publish_time=int(logs[i]),
                sequence=i,
            )
            if i % 10 == 0:
                point = {
                    "positions": q[i].tolist(),
                    "velocities": [],
                    "accelerations": [],
                    "effort": [],
                    "time_from_start": {"sec": 0, "nanosec": 0},
                }
                writer.write_message(
                    "/arm_controller/controller_state",
                    ctrl,
                    {"header": header, "joint_names": names, "reference": point, "feedback": point, "error": point},
                    log_time=int(logs[i]),
                )
        writer.finish()
    return stamps + LATENCY_NS, names, q
