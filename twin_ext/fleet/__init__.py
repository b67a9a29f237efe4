# SPDX-License-Identifier: Apache-2.0
"""Fleet twins: many robots in one process, one MQTT connection, sharded across processes by robot id.

    session = FleetSession.from_file("config/twin.toml")   # [fleet] robots / models / shards, [history]
    session.start()                                         # one MQTT link for every robot of this shard
    session.tick()                                          # every robot: estimate (batched), health, history
    rows = session.rows()                                   # FleetRow per robot for the fleet views

Each robot keeps its own telemetry ingest (clock sync, sequence, plausibility), `LiveTwin` (estimator) and
`HealthService`, built from the same parts a single-robot `TwinSession` uses; what one robot sends (garbage,
floods, clock jumps) reaches only its own parts. The estimation step of a tick runs batched across the robots
(``[fleet] batched_estimation``: one `FleetKalman` predict + update and one batched prediction to the display time;
each robot's estimator keeps its own state and counters, every batched operation is per joint). Samples are fused
as they arrive (``[fleet] fusion_rate_hz``: batched fusion steps between the display ticks; a robot's freshest state
is ``FleetRobot.fused``, a `FusedState`). Design, sharding and the broker side for large fleets:
docs/fleet.md; settings ``[fleet]`` in docs/SETTINGS.md.
"""

from .. import lazy_exports

_EXPORTS = {
    "FleetSettings": "._settings",
    "shard_of": "._sharding",
    "in_shard": "._sharding",
    "FleetRouter": "._router",
    "FleetRobot": "._robot",
    "FusedState": "._robot",
    "FleetSession": "._session",
    "FleetRow": "._view",
    "SORT_KEYS": "._view",
    "fleet_rows": "._view",
    "sort_rows": "._view",
    "render_fleet_table": "._view",
    "FleetWebServer": "._web",
    "FleetKalman": "._batched_kalman",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
