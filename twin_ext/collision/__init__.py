# SPDX-License-Identifier: Apache-2.0
"""Collision geometry from USD: the robot's links as conservative sphere sets, the scene's colliders.

    from twin_ext.collision import load_scene, robot_spheres
    spheres = robot_spheres(robot)          # RobotSpheres: per-link spheres (link frames), excess, self pairs
    scene = load_scene("usd/scenes/pick_place_cell.usda", exclude=(robot.root_path,))

Pure NumPy (+ pxr when a file is read); the what-if engine turns both into Warp arrays
(`twin_ext.whatif`, docs/whatif.md "Clearance"). Names load on first use.
"""

from .. import lazy_exports

_EXPORTS = {
    "Collider": "._scene",
    "SceneColliders": "._scene",
    "SceneError": "._scene",
    "load_scene": "._scene",
    "CollisionGeometryError": "._robot_spheres",
    "RobotSpheres": "._robot_spheres",
    "robot_spheres": "._robot_spheres",
    "fit_spheres": "._spheres",
    "box_triangles": "._triangles",
    "sphere_excess": "._spheres",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
