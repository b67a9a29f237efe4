# SPDX-License-Identifier: Apache-2.0
"""twin_ext — a live digital twin of a robot arm for NVIDIA Isaac Sim / Omniverse Kit.

The core (everything outside ``twin_ext.kit``) is plain Python: it imports no ``omni.*`` module and runs
headless. Packages, lowest layer first (each imports only from layers below it; docs/design.md):

    twin_ext.config      parsing and validation of settings: the one validator, robot ids, broker URLs
    twin_ext.robot       load_robot(path) -> RobotModel (USD / UsdPhysics articulation), JointTrajectory
    twin_ext.telemetry   messages, codecs, MQTT link, clock sync, MCAP record/replay, commands
    twin_ext.estimation  Kalman state estimator -> TwinSnapshot
    twin_ext.whatif      Warp batched rollouts, scenarios and verdicts
    twin_ext.stage       USD stage writers: kinematic mirror, what-if ghost
    twin_ext.sinks       where snapshots go: stage mirror, MCAP state recorder, report traces
    twin_ext.live        the live twin: LiveTwin, TwinSession, TwinConfig, remote what-if
    twin_ext.emulator    a stand-in physical robot (MuJoCo plant, controller, impaired network)
    twin_ext.runs        jobs: demo, replay, fidelity evaluation, reports, dashboard
    twin_ext.bench       benchmarks against anchors
    twin_ext.kit         the Kit / Isaac Sim skin (the only place that imports omni.*)

Every error this package raises on purpose derives from `TwinExtError`, and its message names the
problem and the fix. Each package lists its public names in ``__all__``; its modules are private
(``_name.py``) and are loaded on first use, so ``import twin_ext.whatif`` costs nothing until a name
is used (PEP 562, `lazy_exports`).

This module imports nothing from the package, so every other module may import it.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any

__version__ = "0.1.0"

__all__ = ["TwinExtError", "__version__", "lazy_exports"]


class TwinExtError(Exception):
    """Base of every error twin_ext raises on purpose; the message names the problem and the fix."""


def lazy_exports(package: str, homes: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """PEP 562 ``__getattr__`` and ``__dir__`` for ``package``, whose public names live in private modules.

    Args:
        package: the package's ``__name__``.
        homes: ``{public name: relative module}``, e.g. ``{"MqttLink": "._mqtt_link"}``.

    A name is imported from its module on first access and then cached in the package's namespace.
    Used as ``__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)`` in a package's ``__init__``.
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home, package), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted(set(vars(sys.modules[package])) | set(homes))

    return __getattr__, __dir__
