# SPDX-License-Identifier: Apache-2.0
"""ROS 2 bags in and out, without a ROS install: rosbag2 MCAP files of ``sensor_msgs/msg/JointState``.

    bag = read_joint_state_bag("run.mcap", model_names=robot.dof_names, robot_id="panda")
    for topic, payload, arrival_ns in bag.payloads: ingest.on_payload(topic, payload, arrival_ns)
    write_joint_state_bag("twin.mcap", t_ns, robot.dof_names, q, qd)      # topic /twin/joint_states

Joint names are matched exactly, then through a joint-name map, then by one common driver prefix (franka_ros
publishes ``panda_joint1``..): see `resolve_joint_names`. Uses ``mcap-ros2-support`` (loaded on first use).
"""

from .. import lazy_exports

_EXPORTS = {
    "JOINT_STATE_DATATYPE": "._export",
    "JOINT_STATE_MSGDEF": "._export",
    "TWIN_JOINT_STATES_TOPIC": "._export",
    "write_joint_state_bag": "._export",
    "Ros2BagError": "._names",
    "resolve_joint_names": "._names",
    "Ros2JointStates": "._bag",
    "is_ros2_bag": "._bag",
    "read_joint_state_bag": "._bag",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
