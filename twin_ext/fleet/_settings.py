# SPDX-License-Identifier: Apache-2.0
"""``[fleet]``: which robots a fleet twin mirrors, with which models, in which shard, at what cost per robot."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import check_robot_id, section_from_mapping

__all__ = ["FleetSettings"]


@dataclass(frozen=True)
class FleetSettings:
    """``[fleet]``: many robots in one twin process (docs/SETTINGS.md, docs/fleet.md)."""

    robots: tuple[str, ...] = ()
    """Robot ids mirrored from the start (those of this shard); more are discovered from births if ``discover``."""
    discover: bool = True
    """Add every robot whose ``birth`` arrives under ``<prefix>/+/birth`` (and belongs to this shard)."""
    models: tuple[str, ...] = ()
    """``"model_id=path/to/robot.usda"`` entries: the USD for each ``model_id`` a birth names; a model id not listed
    (or a configured robot before its birth) uses ``[robot] usd``."""
    max_robots: int = 1000
    """Most robots one process mirrors; births beyond are refused and counted."""
    shard_count: int = 1
    """Processes the fleet is split over (each robot belongs to ``hash(robot_id) % shard_count``)."""
    shard_index: int = 0
    """This process's shard, ``0 .. shard_count-1``."""
    display_rate_hz: float = 30.0
    """Fleet ticks per second: every robot's estimate is advanced and offered to the views and history."""
    fuse_per_tick: int = 1
    """Most samples of one robot fused into its estimate per tick (the newest kept; the rest counted as thinned):
    fusing costs ~0.1 ms per sample, so 200 Hz x 100 robots cannot all be fused on one core."""
    batched_estimation: bool = True
    """Fuse the robots' newest samples and predict their snapshots in batched steps across all robots of the process
    (`FleetKalman`, same values as per-robot filters to rounding) instead of one robot after another."""
    fusion_rate_hz: float = 0.0
    """Fusion on arrival: most fusion steps per second between display ticks (e.g. 500). Each step (on the fleet's
    fusion thread, woken by the router) fuses the robots that have new samples (batched) and commits their
    estimates, so a sample is in its robot's state (`FleetRobot.fused`) about ``1/fusion_rate_hz`` after it
    arrives instead of at the next display tick; the display prediction stays at ``display_rate_hz``.
    Each step fuses at most ``fuse_per_tick`` samples per robot. 0 (default, until it fits the CPU budget of a full
    process: docs/fleet.md) = fuse at the display tick only."""
    fusion_cpu_share: float = 0.25
    """Most share of one core the fusion steps may take (measured as thread CPU time per step): when steps cost more
    (a large fleet), they come less often than ``fusion_rate_hz`` — fewer samples are fused and a sample waits longer
    — so fusing on arrival takes a bounded share of the GIL. 1 = no limit below ``fusion_rate_hz``."""
    health_every_s: float = 1.0
    """How often each robot's health monitor judges its buffered samples, s (robots are staggered so the work spreads
    over ticks). One judgement takes at most ``[health] max_samples_per_tick`` of them (an even spread with the
    newest; fewer, down to 16, when ``[health] tick_budget_ms`` binds): at 200 Hz and 1 s, 16-32 of ~200."""
    health_thread: bool = True
    """A running session (`FleetSession.run_in_background`) judges health on a thread of its own, at
    ``display_rate_hz`` with the same staggering, instead of inside the display tick: a health pass (~40 ms for 16
    robots) then no longer holds up the tick that commits the robots' estimates. False = in the tick, as before.
    A session ticked by hand (`FleetSession.tick`) always judges in the tick."""
    batched_health: bool = True
    """Judge the robots due for health together (`BatchedHealthMonitor`: one observer and one identification pass
    over all robots of a model, their RLS stepped as one stack) instead of one after another; same events and
    figures to rounding. Robots are then staggered in groups of about ``health_batch`` instead of one by one."""
    health_batch: int = 16
    """With ``batched_health``: robots judged together in one pass (the fleet splits into ``ceil(robots /
    health_batch)`` groups, staggered over ``health_every_s``). Measured: 16 per pass cost about what 32 or 100 do per
    robot (~2.5 ms per judgement of 32 samples, 8: ~3 ms), and a pass of 16 holds its tick ~40 ms."""
    health_yield_ms: float = 0.0
    """With ``batched_health``: a health pass releases the GIL at its checkpoints (between robots, stacked steps and
    dynamics calls) once this long has passed since it last did, ms (with 1 ms the longest stretch of a 16-robot pass
    fell from ~80 to ~8 ms). 0 = never, the default: each release hands the GIL to the busy network thread for up to
    Python's switch interval (5 ms), which lengthens the pass and the tick. Measured (bench fleet, 25 robots x
    200 Hz, slow 2-core machine): p99 added 238 ms with 1 ms against 92 ms without; with fusion on arrival at
    500 Hz, 65 against 44 ms."""
    max_rate_hz: float = 2000.0
    """Messages per second one robot may send before the excess is dropped unread (counted as ``flood_dropped``),
    so a flooding robot costs the others little; bursts up to 0.25 s of this rate pass."""
    web_port: int = 0
    """Port of the read-only fleet web page (`FleetWebServer`); 0 = no page."""
    web_host: str = "127.0.0.1"
    """Interface the web page binds to; anything but loopback exposes it (no authentication) to the network."""

    def __post_init__(self) -> None:
        for rid in self.robots:
            check_robot_id(rid, key="[fleet] robots")
        for entry in self.models:
            model_id, sep, path = entry.partition("=")
            if not sep or not model_id.strip() or not path.strip():
                raise ValueError(f"models entry {entry!r} must be 'model_id=path/to/robot.usda'")
        if self.shard_count < 1 or not (0 <= self.shard_index < self.shard_count):
            raise ValueError(
                f"shard_index must be in 0..shard_count-1 (shard_count={self.shard_count}), got {self.shard_index}"
            )
        if not (0 <= self.web_port <= 65535):
            raise ValueError(f"web_port must be in 0..65535 (0 = no web page), got {self.web_port}")
        if self.max_robots < 1 or self.fuse_per_tick < 1 or self.health_batch < 1:
            raise ValueError("max_robots, fuse_per_tick and health_batch must be >= 1")
        if not (math.isfinite(self.fusion_rate_hz) and self.fusion_rate_hz >= 0):
            raise ValueError(f"fusion_rate_hz must be a finite number >= 0 (0 = fuse at the display tick only), got "
                             f"{self.fusion_rate_hz}")  # fmt: skip
        if not (0 < self.fusion_cpu_share <= 1):
            raise ValueError(f"fusion_cpu_share must be in (0, 1] (a share of one core), got {self.fusion_cpu_share}")
        if not (math.isfinite(self.health_yield_ms) and self.health_yield_ms >= 0):
            raise ValueError(
                f"health_yield_ms must be a finite number >= 0 (0 = never yield), got {self.health_yield_ms}"
            )
        for name in ("display_rate_hz", "health_every_s", "max_rate_hz"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value}")

    def model_map(self) -> dict[str, str]:
        """``{model_id: USD path}`` from ``models``."""
        return {k.strip(): v.strip() for k, _, v in (e.partition("=") for e in self.models)}

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> FleetSettings:
        return section_from_mapping(cls, mapping, section="fleet")
