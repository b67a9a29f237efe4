# SPDX-License-Identifier: Apache-2.0
"""The robot as USD: `load_robot` reads a UsdPhysics articulation into a `RobotModel`; joint trajectories.

    >>> from twin_ext.robot import default_robot_path, load_robot
    >>> robot = load_robot(default_robot_path())
    >>> robot.ndof, robot.link_poses(robot.drive_target).shape     # 7 arm joints + 2 fingers; [nlink, 4, 4] poses
    (9, (12, 4, 4))

Names are loaded on first use (pxr only when a USD file is read).
"""

from .. import lazy_exports

_EXPORTS = {
    "JointType": "._model",
    "RobotModel": "._model",
    "RobotModelError": "._model",
    "load_robot": "._usd_reader",
    "JointTrajectory": "._trajectory",
    "TrajectoryError": "._trajectory",
    "RobotSettings": "._settings",
    "ArticulatedTree": "._articulation",
    "RigidBodyDynamics": "._dynamics",
    "tree_from_robot": "._articulation",
    "inertia_about_origin": "._articulation",
    "make_transform": "._transforms",
    "invert_transform": "._transforms",
    "default_robot_path": "._settings",
    "JointDriveGains": "._drives",
    "apply_drive_settings": "._drives",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
