"""Where twin state goes: a USD kinematic mirror (pxr), a what-if ghost, recorders, report traces.

The Isaac Sim articulation driver lives in twin_ext/kit/ (it needs Kit).
"""

from .base import Sink
from .ghost import GhostRobot
from .mirror_sink import MirrorSink
from .state_recorder import STATE_TOPIC, StateRecorderSink
from .trace_sink import TraceSink
from .usd_mirror import UsdKinematicMirror

__all__ = ["GhostRobot", "MirrorSink", "STATE_TOPIC", "Sink", "StateRecorderSink", "TraceSink", "UsdKinematicMirror"]
