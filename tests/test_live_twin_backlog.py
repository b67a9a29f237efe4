# SPDX-License-Identifier: Apache-2.0
"""A stalled link's released backlog is fused in full; a sustained flood is still thinned (offline, no broker)."""

from __future__ import annotations

import dataclasses

from test_twin_offline import STANDARD

from twin_ext.emulator import EmulatedRobot, ImpairmentProfile, Pause
from twin_ext.live import LiveTwin, TwinSettings
from twin_ext.runs import OfflineFeed, VirtualClock
from twin_ext.telemetry import TelemetryIngest, TelemetrySettings


def _fused_and_thinned(panda, sim, settings: TwinSettings) -> tuple[int, int]:
    clock = VirtualClock(sim.start_ns)
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id=sim.settings.robot_id), model=panda, now_ns=clock)
    twin = LiveTwin(panda, ingest, settings=settings, now_ns=clock)
    feed = OfflineFeed(sim.deliveries, ingest, clock)
    for t in range(sim.start_ns + 16_666_667, sim.end_ns, 16_666_667):
        feed.advance(t)
        twin.tick(t)
    return twin.estimator.stats.fused, twin._thinned


def test_a_released_backlog_is_fused_in_full_out_of_unused_tick_capacity(panda):
    """A 0.6 s stall at 200 Hz releases ~120 samples into one tick: with the burst allowance none is thinned; with
    max_burst_samples = 0 (only max_samples_per_tick = 32 per tick) ~88 are."""
    standard = ImpairmentProfile.from_toml(STANDARD)
    profile = dataclasses.replace(standard, pauses=(Pause(at_s=2.0, duration_s=0.6, backlog=True),))
    sim = EmulatedRobot(profile=profile).simulate(4.0, seed=4)
    fused, thinned = _fused_and_thinned(panda, sim, TwinSettings())
    fused_0, thinned_0 = _fused_and_thinned(panda, sim, TwinSettings(max_burst_samples=0))
    assert thinned == 0 and thinned_0 > 60, (thinned, thinned_0)
    assert fused == fused_0 + thinned_0


def test_a_sustained_flood_is_thinned_to_the_per_tick_limit_once_the_bucket_is_empty(panda):
    """1 kHz telemetry on a clean link (16-17 samples every 60 Hz tick) against a per-tick limit of 8 for 3 s: the
    burst allowance lets the first ticks through and is then used up, so the twin thins at most the bucket
    (256 + 8) less than with no bursts, and every sample is either fused or thinned."""
    profile = ImpairmentProfile(rate_hz=1000.0)
    sim = EmulatedRobot(profile=profile).simulate(3.0, seed=4)
    fused, thinned = _fused_and_thinned(panda, sim, TwinSettings(max_samples_per_tick=8))
    fused_0, thinned_0 = _fused_and_thinned(panda, sim, TwinSettings(max_samples_per_tick=8, max_burst_samples=0))
    assert thinned_0 > 1000 and thinned_0 - 264 <= thinned < thinned_0, (thinned, thinned_0)
    assert fused + thinned == fused_0 + thinned_0
