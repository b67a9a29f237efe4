# SPDX-License-Identifier: Apache-2.0
"""Reading a rosbag2 MCAP file's ``sensor_msgs/msg/JointState`` messages as twin_ext telemetry payloads.

Each JointState becomes one of our joint-state messages (JSON codec) on ``twin/v1/<robot_id>/joint_states``,
delivered at the bag's log time (when rosbag2 received it) and stamped with its ``header.stamp`` (when the robot
sampled it); a birth announcing the mapped joints comes first. Controller states
(``control_msgs/msg/JointTrajectoryControllerState``: its ``reference`` point, or ``desired`` in older
control_msgs) give the joint states their reference channels (``reference_position`` /
``reference_velocity``, docs/telemetry.md): each joint state carries the newest reference stamped at or before
it and at most `REFERENCE_MAX_AGE_NS` older, when every one of its joints has one. Other controller-state types
are counted and skipped.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..telemetry import Birth, JointState, Topics, encode_birth, encode_json
from ._names import Ros2BagError, resolve_joint_names

__all__ = ["Ros2JointStates", "is_ros2_bag", "read_joint_state_bag"]

JOINT_STATE_TYPES = ("sensor_msgs/msg/JointState", "sensor_msgs/JointState")
CONTROLLER_STATE_TYPES = (
    "control_msgs/msg/JointTrajectoryControllerState",
    "control_msgs/msg/ControllerState",
    "trajectory_msgs/msg/JointTrajectoryPoint",
    "trajectory_msgs/msg/JointTrajectory",
)
REFERENCE_TYPES = ("control_msgs/msg/JointTrajectoryControllerState", "control_msgs/JointTrajectoryControllerState")
REFERENCE_MAX_AGE_NS = 100_000_000
"""A controller reference older than this (0.1 s) before a joint state's stamp is not attached to it, ns."""


@dataclass
class Ros2JointStates:
    """The joint states of one bag topic as twin_ext payloads.

    Attributes:
        payloads: ``[(topic, payload bytes, arrival ns)]`` in log-time order, the birth first.
        topic: the bag topic read (e.g. ``/joint_states``).
        messages: JointState messages read.
        rate_hz: median publication rate from the header stamps, Hz.
        mapping: ``{bag joint name: model joint name}``.
        warnings: what was ignored, guessed or repaired, one sentence each.
    """

    payloads: list[tuple[str, bytes, int]]
    topic: str
    messages: int
    rate_hz: float
    mapping: dict[str, str]
    warnings: list[str] = field(default_factory=list)


def is_ros2_bag(path: str | Path) -> bool:
    """True when ``path`` is an MCAP file whose schemas are ROS 2 message definitions (rosbag2's format)."""
    from mcap.exceptions import McapError
    from mcap.reader import make_reader

    try:
        with open(path, "rb") as stream:
            summary = make_reader(stream).get_summary()
    except (McapError, ValueError, EOFError, OSError, struct.error):
        return False
    if summary is None:
        return False
    return any(s.encoding in ("ros2msg", "ros2idl") for s in summary.schemas.values())


def _joint_state_topics(path: Path) -> tuple[dict[str, int], dict[str, int], set[str]]:
    """``({JointState topic: count}, {controller-state topic: count}, {topics whose type has a reference})``
    from the bag's summary."""
    from mcap.reader import make_reader

    with open(path, "rb") as stream:
        summary = make_reader(stream).get_summary()
    joint, controller, with_reference = {}, {}, set()
    counts = summary.statistics.channel_message_counts if summary and summary.statistics else {}
    for cid, channel in (summary.channels if summary else {}).items():
        schema = summary.schemas.get(channel.schema_id)
        name = schema.name if schema else ""
        if name in JOINT_STATE_TYPES:
            joint[channel.topic] = counts.get(cid, 0)
        elif name in CONTROLLER_STATE_TYPES or name in REFERENCE_TYPES:
            controller[channel.topic] = counts.get(cid, 0)
            if name in REFERENCE_TYPES:
                with_reference.add(channel.topic)
    return joint, controller, with_reference


@dataclass
class _References:
    """The reference points of one controller-state topic, in stamp order."""

    stamps: list[int] = field(default_factory=list)
    names: list[tuple[str, ...]] = field(default_factory=list)
    positions: list[np.ndarray] = field(default_factory=list)
    velocities: list[np.ndarray | None] = field(default_factory=list)
    cursor: int = -1

    def newest_at(self, stamp: int) -> int:
        """Index of the newest reference stamped at or before ``stamp`` (stamps only grow between calls), or -1."""
        while self.cursor + 1 < len(self.stamps) and self.stamps[self.cursor + 1] <= stamp:
            self.cursor += 1
        return self.cursor


def _read_references(path: Path, topic: str, open_reader) -> _References:
    """The ``reference`` (or older control_msgs' ``desired``) points of ``topic``, sorted by header stamp; points
    whose positions do not match their joint names (or are non-finite) are left out."""
    refs = _References()
    rows = []
    with open(path, "rb") as stream:
        reader = open_reader(stream)
        for _, _, message, ros in reader.iter_decoded_messages(topics=[topic], log_time_order=True):
            point = getattr(ros, "reference", None) or getattr(ros, "desired", None)
            if point is None:
                continue
            names = tuple(ros.joint_names)
            position = np.asarray(point.positions, dtype=np.float64)
            if position.shape != (len(names),) or not np.isfinite(position).all():
                continue
            velocity = np.asarray(point.velocities, dtype=np.float64)
            velocity = velocity if velocity.shape == position.shape and np.isfinite(velocity).all() else None
            stamp = int(ros.header.stamp.sec) * 1_000_000_000 + int(ros.header.stamp.nanosec)
            rows.append((stamp or int(message.log_time), names, position, velocity))
    for stamp, names, position, velocity in sorted(rows, key=lambda r: r[0]):
        refs.stamps.append(stamp)
        refs.names.append(names)
        refs.positions.append(position)
        refs.velocities.append(velocity)
    return refs


def _reference_for(
    stamp: int, names: tuple[str, ...], model_of: Mapping[str, str], sources: list[_References]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """``(reference_position [n], reference_velocity [n] | None)`` for a joint state of model joints ``names``
    stamped ``stamp`` from the newest fresh point of each controller topic, or ``(None, None)`` when a joint has
    none. ``model_of`` maps a controller's joint name onto the model's."""
    position = np.full(len(names), np.nan)
    velocity = np.full(len(names), np.nan)
    index = {n: i for i, n in enumerate(names)}
    for refs in sources:
        k = refs.newest_at(stamp)
        if k < 0 or stamp - refs.stamps[k] > REFERENCE_MAX_AGE_NS:
            continue
        v = refs.velocities[k]
        for j, name in enumerate(refs.names[k]):
            i = index.get(model_of.get(name, name), -1)
            if i >= 0:
                position[i] = refs.positions[k][j]
                velocity[i] = v[j] if v is not None else np.nan
    if not np.isfinite(position).all():
        return None, None
    return position, (velocity if np.isfinite(velocity).all() else None)


def read_joint_state_bag(
    path: str | Path,
    model_names: Sequence[str],
    *,
    robot_id: str = "ros2",
    joint_map: Mapping[str, str] | None = None,
    topic: str = "",
) -> Ros2JointStates:
    """Read the JointState messages of a rosbag2 MCAP file as telemetry payloads for ``model_names``.

    Args:
        path: the ``.mcap`` file rosbag2 wrote (or any MCAP with ``ros2msg`` schemas).
        model_names: ``[n]`` the robot model's dof names.
        robot_id: robot id the payloads carry (a topic level).
        joint_map: ``{bag joint name: model joint name}``; see `resolve_joint_names`.
        topic: the JointState topic; "" = ``/joint_states`` if present, else the only JointState topic.

    Returns:
        `Ros2JointStates`: positions rad|m, velocities rad/s|m/s, efforts N·m|N as the bag holds them.

    Raises:
        Ros2BagError: no (or several, none chosen) JointState topics, or joint names that cannot be mapped.
    """
    from mcap.reader import make_reader

    try:
        from mcap_ros2.decoder import DecoderFactory
    except ImportError:
        raise Ros2BagError(
            f"{path} is a ROS 2 bag; reading it needs mcap-ros2-support: pip install 'twin-ext[ros2]'"
        ) from None

    path = Path(path)
    joint_topics, controller_topics, reference_topics = _joint_state_topics(path)
    if topic:
        if topic not in joint_topics:
            raise Ros2BagError(
                f"{path} has no sensor_msgs/msg/JointState topic {topic!r} (it has {sorted(joint_topics)}); "
                "fix: name one of those"
            )
    elif "/joint_states" in joint_topics:
        topic = "/joint_states"
    elif len(joint_topics) == 1:
        topic = next(iter(joint_topics))
    elif not joint_topics:
        raise Ros2BagError(
            f"{path} holds no sensor_msgs/msg/JointState messages; fix: record the robot's joint states "
            "(ros2 bag record /joint_states)"
        )
    else:
        raise Ros2BagError(
            f"{path} has several JointState topics {sorted(joint_topics)}; fix: choose one (ros2_topic / --ros2-topic)"
        )
    warnings = []
    for ctrl_topic, count in sorted(controller_topics.items()):
        if ctrl_topic not in reference_topics:
            warnings.append(
                f"{count} controller-state messages on {ctrl_topic} skipped: only "
                f"{REFERENCE_TYPES[0]} gives reference channels"
            )

    def open_reader(stream):
        return make_reader(stream, decoder_factories=[DecoderFactory()])

    sources = [_read_references(path, t, open_reader) for t in sorted(reference_topics)]
    with_reference = 0
    topics = Topics(robot_id)
    payloads: list[tuple[str, bytes, int]] = []
    mapping: dict[str, str] | None = None
    bag_order: tuple[str, ...] = ()
    columns: list[int] = []
    names: tuple[str, ...] = ()
    stamps: list[int] = []
    repaired = {"no_stamp": 0, "no_velocity": 0, "no_effort": 0, "renamed": 0}
    with open(path, "rb") as stream:
        reader = make_reader(stream, decoder_factories=[DecoderFactory()])
        for _, _, message, ros in reader.iter_decoded_messages(topics=[topic], log_time_order=True):
            bag_names = tuple(ros.name)
            if bag_names != bag_order:
                if mapping is not None:
                    repaired["renamed"] += 1
                mapping_now, found = resolve_joint_names(bag_names, model_names, joint_map)
                if mapping is None:
                    warnings.extend(found)
                mapping, bag_order = mapping_now, bag_names
                columns = [i for i, b in enumerate(bag_names) if b in mapping]
                names = tuple(mapping[bag_names[i]] for i in columns)
            stamp = int(ros.header.stamp.sec) * 1_000_000_000 + int(ros.header.stamp.nanosec)
            if stamp == 0:
                stamp = int(message.log_time)
                repaired["no_stamp"] += 1
            position = np.asarray(ros.position, dtype=np.float64)[columns]
            velocity = _channel(ros.velocity, columns, len(bag_names), repaired, "no_velocity")
            effort = _channel(ros.effort, columns, len(bag_names), repaired, "no_effort")
            ref_position, ref_velocity = _reference_for(stamp, names, mapping, sources) if sources else (None, None)
            with_reference += ref_position is not None
            msg = JointState(
                robot_id, len(stamps) % (1 << 32), stamp, names, position, velocity, effort, ref_position, ref_velocity
            )
            if not payloads:
                payloads.append((topics.birth, b"", int(message.log_time)))  # filled in below, once the rate is known
            payloads.append((topics.joint_states, encode_json(msg), int(message.log_time)))
            stamps.append(stamp)
    if not stamps:
        raise Ros2BagError(f"{path}: topic {topic!r} holds no messages; fix: record some joint states")
    steps = np.diff(np.asarray(stamps, dtype=np.int64))
    steps = steps[steps > 0]
    rate_hz = float(1e9 / np.median(steps)) if steps.size else 1.0
    boot = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:16]
    birth = Birth(robot_id, "ros2_bag", names, min(rate_hz, 1e6), f"bag-{boot}")
    payloads[0] = (topics.birth, encode_birth(birth), payloads[0][2])
    if repaired["no_stamp"]:
        warnings.append(f"{repaired['no_stamp']} messages had a zero header stamp: their log time was used")
    for key, what in (("no_velocity", "velocity"), ("no_effort", "effort")):
        if repaired[key] and repaired[key] < len(stamps):
            warnings.append(f"{repaired[key]} of {len(stamps)} messages had no usable {what} (empty or non-finite)")
    if sources:
        topics_used = ", ".join(sorted(reference_topics))
        warnings.append(
            f"{sum(controller_topics[t] for t in reference_topics)} controller-state messages on {topics_used} give "
            f"reference channels: {with_reference} of {len(stamps)} joint states carry one (a joint state gets one "
            f"when every joint has a reference at most {REFERENCE_MAX_AGE_NS / 1e6:g} ms older than its stamp)"
        )
    if repaired["renamed"]:
        warnings.append(f"the joint names of {topic} changed {repaired['renamed']} times mid-bag")
    return Ros2JointStates(payloads, topic, len(stamps), rate_hz, dict(mapping or {}), warnings)


def _channel(values, columns: list[int], n: int, repaired: dict[str, int], key: str) -> np.ndarray | None:
    """A velocity/effort column set in the model's subset, or None when the bag leaves it empty or non-finite
    (ROS allows empty arrays for what a driver does not measure)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (n,) or not np.isfinite(arr[columns]).all():
        repaired[key] += 1
        return None
    return arr[columns]
