# SPDX-License-Identifier: Apache-2.0
"""Telemetry out of a recording file, whatever wrote it: our own MCAP (`McapRecorder`) or a rosbag2 MCAP of
``sensor_msgs/msg/JointState`` (converted by `twin_ext.ros2`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import TwinExtError

__all__ = ["RecordingSource", "load_recording", "parse_joint_map"]


@dataclass
class RecordingSource:
    """What a recording gives a replay.

    Attributes:
        payloads: ``[(topic, payload bytes, arrival ns)]`` in arrival order.
        truth_rows: the emulator's truth records (``host_ns``, ``names``, ``position`` rad|m), [] when absent.
        kind: ``"twin_ext"`` or ``"ros2"``.
        warnings: what was ignored or guessed (ROS 2 bags: joint-name matching, extra joints, skipped channels).
    """

    payloads: list[tuple[str, bytes, int]]
    truth_rows: list[dict[str, Any]]
    kind: str
    warnings: list[str] = field(default_factory=list)


class RecordingReadError(TwinExtError, ValueError):
    """A recording that cannot be replayed; the message names the file and the fix."""


def load_recording(
    path: str | Path,
    model_names,
    *,
    robot_id: str = "",
    joint_map: Mapping[str, str] | None = None,
    ros2_topic: str = "",
) -> RecordingSource:
    """Read ``path`` as telemetry for a robot with dof names ``model_names`` (``[n]``).

    Args:
        robot_id: for a ROS 2 bag, the robot id its payloads carry ("" = ``ros2``); ignored for our recordings.
        joint_map: ROS 2 bags: ``{bag joint name: model joint name}``.
        ros2_topic: ROS 2 bags: the JointState topic ("" = ``/joint_states`` or the only one).

    Raises:
        TwinExtError: a missing, damaged or foreign file, or a bag whose joints do not map (names the fix).
    """
    from ..emulator import TRUTH_TOPIC
    from ..ros2 import is_ros2_bag, read_joint_state_bag
    from ..telemetry import McapReplay

    path = Path(path)
    if not path.is_file():
        raise RecordingReadError(f"recording not found: {path}; fix: check the path (globs are expanded by suites)")
    if is_ros2_bag(path):
        bag = read_joint_state_bag(
            path, model_names, robot_id=robot_id or "ros2", joint_map=joint_map, topic=ros2_topic
        )
        return RecordingSource(bag.payloads, [], "ros2", list(bag.warnings))
    replay = McapReplay(path)
    try:
        payloads = list(replay.iter_payloads())
        truth_rows = [row for _, row in replay.read_json(TRUTH_TOPIC)]
    except TwinExtError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged or foreign file
        raise RecordingReadError(f"cannot read {path} as a twin_ext recording or a ROS 2 bag: {exc}") from None
    if not payloads:
        raise RecordingReadError(
            f"{path} holds no telemetry payloads (neither twin_ext channels nor sensor_msgs/msg/JointState); "
            "fix: record with twin_ext (telemetry.record_path) or ros2 bag record -s mcap /joint_states"
        )
    return RecordingSource(payloads, truth_rows, "twin_ext")


def parse_joint_map(entries) -> dict[str, str]:
    """``["panda_joint1=joint1", ...]`` (``--joint-map``) or a mapping -> ``{bag name: model name}``."""
    if isinstance(entries, Mapping):
        items = list(entries.items())
    else:
        items = []
        for entry in entries:
            bag, sep, model = str(entry).partition("=")
            if not sep or not bag.strip() or not model.strip():
                raise RecordingReadError(f"joint map entry {entry!r} must be BAG=MODEL, e.g. panda_joint1=joint1")
            items.append((bag.strip(), model.strip()))
    out = {}
    for bag, model in items:
        if not isinstance(bag, str) or not isinstance(model, str):
            raise RecordingReadError(f"joint map entry {bag!r} = {model!r} must map a string onto a string")
        out[bag] = model
    return out
