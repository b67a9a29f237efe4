# SPDX-License-Identifier: Apache-2.0
"""The live twin: the loop (telemetry -> estimator -> snapshot -> sinks), its assembly from configuration,
and what-if over MQTT.

    session = TwinSession.from_file("config/twin.toml")   # robot, MQTT link, estimator, what-if
    session.start()
    snapshot = session.tick()                              # TwinSnapshot: q, qd, covariance, health

`TwinConfig` parses every section of `TWIN_SECTIONS` (the registry; the Kit skin adds ``kit``).
"""

from .. import lazy_exports

_EXPORTS = {
    "OTHER_PROGRAM_SECTIONS": "._config",
    "TWIN_SECTIONS": "._config",
    "TwinConfig": "._config",
    "load_config": "._config",
    "REFUSAL_REASONS": "._remote_whatif",
    "RemoteWhatIf": "._remote_whatif",
    "HealthService": "._health_service",
    "RemoteWhatIfSettings": "._remote_whatif",
    "SessionError": "._session",
    "TwinSession": "._session",
    "CommandGateClosed": "._twin",
    "JointReading": "._twin",
    "LiveTwin": "._twin",
    "TwinSettings": "._twin",
    "TwinStatus": "._twin",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
