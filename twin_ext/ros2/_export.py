# SPDX-License-Identifier: Apache-2.0
"""Writing the twin's estimate as a ROS 2 bag: ``sensor_msgs/msg/JointState`` on ``/twin/joint_states``, MCAP
(rosbag2's default storage; Foxglove and ``ros2 bag play`` open it)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["JOINT_STATE_DATATYPE", "JOINT_STATE_MSGDEF", "TWIN_JOINT_STATES_TOPIC", "write_joint_state_bag"]

JOINT_STATE_DATATYPE = "sensor_msgs/msg/JointState"
TWIN_JOINT_STATES_TOPIC = "/twin/joint_states"
"""Topic of the twin's estimate in an exported bag."""

# The message definition in rosbag2's concatenated form: the type's fields, then each dependency after a
# separator line (field names and types as in ROS 2's sensor_msgs, std_msgs and builtin_interfaces).
_SEPARATOR = "=" * 80
JOINT_STATE_MSGDEF = "\n".join(
    [
        "std_msgs/Header header",
        "string[] name",
        "float64[] position",
        "float64[] velocity",
        "float64[] effort",
        _SEPARATOR,
        "MSG: std_msgs/Header",
        "builtin_interfaces/Time stamp",
        "string frame_id",
        _SEPARATOR,
        "MSG: builtin_interfaces/Time",
        "int32 sec",
        "uint32 nanosec",
    ]
)


def write_joint_state_bag(
    path: str | Path,
    t_ns: np.ndarray,
    names: Sequence[str],
    position: np.ndarray,
    velocity: np.ndarray | None = None,
    effort: np.ndarray | None = None,
    *,
    topic: str = TWIN_JOINT_STATES_TOPIC,
    frame_id: str = "",
    log_t_ns: np.ndarray | None = None,
) -> int:
    """Write joint states as a rosbag2-compatible MCAP file.

    Args:
        path: the ``.mcap`` file to write (replaced).
        t_ns: ``[T]`` int64 ns; header stamp and log time of each message.
        names: ``[n]`` joint names.
        position: ``[T, n]`` rad|m; rows with a non-finite value are skipped (nothing to say yet).
        velocity: ``[T, n]`` rad/s|m/s or None (then empty arrays, as ROS allows).
        effort: ``[T, n]`` N·m|N or None.
        topic: the topic (default ``/twin/joint_states``).
        frame_id: ``header.frame_id``.
        log_t_ns: ``[T]`` int64 ns, when the recorder received each message (default: its stamp).

    Returns:
        Messages written.
    """
    from mcap_ros2.writer import Writer

    t_ns = np.asarray(t_ns, dtype=np.int64)
    position = np.asarray(position, dtype=np.float64)
    names = list(names)
    if position.shape != (len(t_ns), len(names)):
        raise ValueError(f"position has shape {position.shape}, expected ({len(t_ns)}, {len(names)}): [T, n]")
    written = 0
    with open(path, "wb") as stream:
        writer = Writer(stream)
        schema = writer.register_msgdef(JOINT_STATE_DATATYPE, JOINT_STATE_MSGDEF)
        for i, t in enumerate(t_ns):
            if not np.isfinite(position[i]).all():
                continue
            t = int(t)
            message = {
                "header": {"stamp": {"sec": t // 1_000_000_000, "nanosec": t % 1_000_000_000}, "frame_id": frame_id},
                "name": names,
                "position": position[i].tolist(),
                "velocity": [] if velocity is None else np.asarray(velocity[i], dtype=np.float64).tolist(),
                "effort": [] if effort is None else np.asarray(effort[i], dtype=np.float64).tolist(),
            }
            log = t if log_t_ns is None else int(log_t_ns[i])
            writer.write_message(topic, schema, message, log_time=log, publish_time=log, sequence=written)
            written += 1
        writer.finish()
    return written
