# SPDX-License-Identifier: Apache-2.0
"""USD stage writers (pxr): the twin's kinematic mirror of the robot, the what-if ghost, the identified-
friction layer over the robot asset, and the what-if scene with its first-contact marker.

They write link transforms onto a stage (a private one, Kit's open stage, or its session layer); the
sinks in `twin_ext.sinks` and the Kit drivers decide when.
"""

from .. import lazy_exports

_EXPORTS = {
    "UsdKinematicMirror": "._kinematic_mirror",
    "GhostRobot": "._ghost",
    "write_identified_layer": "._identified_layer",
    "mark_contact": "._scene_overlay",
    "reference_scene": "._scene_overlay",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
