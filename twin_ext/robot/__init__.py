"""The robot as USD: `load_robot` reads a UsdPhysics articulation into a `RobotModel`.

>>> from twin_ext.robot import load_robot
>>> robot = load_robot("usd/franka_panda/panda.usda")
>>> robot.link_poses(robot.drive_target).shape   # [nlink, 4, 4]
"""

from .model import JointType, RobotModel, RobotModelError

__all__ = ["JointType", "RobotModel", "RobotModelError", "load_robot", "default_robot_path"]


def load_robot(path, *, prim_path=None):
    """Read the articulation in the USD file ``path`` into a `RobotModel`.

    See `twin_ext.robot.usd_reader.load_robot` for what is read and the errors raised.
    """
    from .usd_reader import load_robot as _load  # pxr is heavy: import on first use

    return _load(path, prim_path=prim_path)


def default_robot_path() -> str:
    """Path of the shipped Franka Panda USD (``usd/franka_panda/panda.usda``)."""
    from pathlib import Path

    return str(Path(__file__).resolve().parents[2] / "usd" / "franka_panda" / "panda.usda")
