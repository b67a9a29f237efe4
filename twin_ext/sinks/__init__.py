# SPDX-License-Identifier: Apache-2.0
"""Where twin snapshots go: the USD kinematic mirror, the MCAP state recorder, report traces.

A sink has ``on_snapshot(snapshot)`` and ``close()`` (`Sink`). The Isaac Sim articulation driver is a sink
too; it lives in twin_ext/kit/ because it needs Kit.
"""

from .. import lazy_exports

_EXPORTS = {
    "Sink": "._base",
    "MirrorSink": "._mirror",
    "STATE_TOPIC": "._state_recorder",
    "StateRecorderSink": "._state_recorder",
    "TraceSink": "._trace",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
