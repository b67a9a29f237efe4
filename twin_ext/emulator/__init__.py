"""The physical robot's stand-in: a MuJoCo Panda plant, its controller, sensors and an impaired network.

    >>> from twin_ext.emulator import EmulatedRobot, ImpairmentProfile
    >>> robot = EmulatedRobot(profile=ImpairmentProfile.from_toml("config/impairments/standard.toml"))
    >>> sim = robot.simulate(10.0, seed=1)            # offline, deterministic, ~20x faster than real time
    >>> sim.deliveries[0].topic                         # 'twin/v1/panda/birth'
    >>> sim.truth.q.shape                               # (10000, 9): every 1 ms plant step
    >>> robot.run("mqtt://127.0.0.1:1883", duration_s=20)   # live, publishing with paho-mqtt

Command line: ``python -m twin_ext.emulator --help``. Settings: docs/SETTINGS.md ("Emulator",
"Impairment profiles"); design and outputs: docs/emulator.md.

Imports are lazy: importing this package loads neither MuJoCo nor paho-mqtt.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "ClockJump",
    "CommandRecord",
    "CommandRejected",
    "Delivery",
    "EmulatedRobot",
    "EmulatorError",
    "EmulatorSettings",
    "EmulatorSettingsError",
    "ImpairedChannel",
    "ImpairmentError",
    "ImpairmentProfile",
    "MotionController",
    "MujocoPlant",
    "Pause",
    "PlantError",
    "Restart",
    "RobotClock",
    "RunSummary",
    "SampleLog",
    "SensorNoise",
    "Simulation",
    "TRUTH_JSON_SCHEMA",
    "TRUTH_SCHEMA",
    "TRUTH_TOPIC",
    "Truth",
    "truth_records",
]

_HOME = {
    "ClockJump": "impairments",
    "ImpairedChannel": "impairments",
    "ImpairmentError": "impairments",
    "ImpairmentProfile": "impairments",
    "Pause": "impairments",
    "Restart": "impairments",
    "RobotClock": "impairments",
    "SensorNoise": "impairments",
    "CommandRejected": "controller",
    "MotionController": "controller",
    "MujocoPlant": "plant",
    "PlantError": "plant",
    "EmulatorSettings": "settings",
    "EmulatorSettingsError": "settings",
    "CommandRecord": "robot",
    "Delivery": "robot",
    "EmulatedRobot": "robot",
    "EmulatorError": "robot",
    "RunSummary": "robot",
    "SampleLog": "robot",
    "Simulation": "robot",
    "TRUTH_JSON_SCHEMA": "robot",
    "TRUTH_SCHEMA": "robot",
    "TRUTH_TOPIC": "robot",
    "Truth": "robot",
    "truth_records": "robot",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module 'twin_ext.emulator' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
