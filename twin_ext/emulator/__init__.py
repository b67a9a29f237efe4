# SPDX-License-Identifier: Apache-2.0
"""The physical robot's stand-in: a MuJoCo Panda plant, its controller, sensors and an impaired network.

    >>> from twin_ext.emulator import EmulatedRobot, ImpairmentProfile
    >>> robot = EmulatedRobot(profile=ImpairmentProfile(rate_hz=100.0))
    >>> sim = robot.simulate(1.0, seed=1)       # offline, deterministic, ~20x faster than real time
    >>> sim.deliveries[0].topic
    'twin/v1/panda/birth'
    >>> sim.truth.q.shape                       # every 1 ms plant step, 9 joints
    (1000, 9)

Live, publishing with paho-mqtt: ``robot.run("mqtt://127.0.0.1:1883", duration_s=20)``.

Command line: ``python -m twin_ext.emulator --help``. Settings: docs/SETTINGS.md ("Emulator",
"Impairment profiles", "Faults"); design and outputs: docs/emulator.md. Faults for a health monitor
(friction wear, collisions, payload, encoder glitches, torque bias; ``config/faults/``) are part of a
profile; their ground truth is ``Simulation.faults`` and the truth channel ``truth/faults``.

Names are loaded on first use: importing this package loads neither MuJoCo nor paho-mqtt.
"""

from .. import lazy_exports

_EXPORTS = {
    "COLLISION_SHAPES": "._faults",
    "FAULT_KINDS": "._faults",
    "Collision": "._faults",
    "EncoderJump": "._faults",
    "EncoderStuck": "._faults",
    "FaultProfile": "._faults",
    "Payload": "._faults",
    "TorqueBias": "._faults",
    "Wear": "._faults",
    "ClockJump": "._impairments",
    "ImpairedChannel": "._impairments",
    "ImpairmentError": "._impairments",
    "ImpairmentProfile": "._impairments",
    "Pause": "._impairments",
    "Restart": "._impairments",
    "RobotClock": "._impairments",
    "SensorNoise": "._impairments",
    "CommandRejected": "._controller",
    "ControllerError": "._controller",
    "MotionController": "._controller",
    "MujocoPlant": "._plant",
    "PANDA_VELOCITY_LIMITS": "._plant",
    "PlantError": "._plant",
    "EmulatorSettings": "._settings",
    "LightFleet": "._light_fleet",
    "LightFleetStats": "._light_fleet",
    "MISBEHAVIOURS": "._light_fleet",
    "CommandRecord": "._records",
    "Delivery": "._records",
    "FAULTS_JSON_SCHEMA": "._records",
    "FAULTS_SCHEMA": "._records",
    "FAULTS_TOPIC": "._records",
    "FaultEvent": "._records",
    "FaultTruth": "._records",
    "fault_records": "._records",
    "EmulatorError": "._records",
    "RunSummary": "._records",
    "SampleLog": "._records",
    "Simulation": "._records",
    "TRUTH_JSON_SCHEMA": "._records",
    "TRUTH_SCHEMA": "._records",
    "TRUTH_TOPIC": "._records",
    "Truth": "._records",
    "truth_records": "._records",
    "EmulatedRobot": "._robot",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
