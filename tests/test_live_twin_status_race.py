# SPDX-License-Identifier: Apache-2.0
"""`LiveTwin.status` from a view thread before the first snapshot does not tick alongside the display loop."""

from __future__ import annotations

import threading

from twin_ext.live import LiveTwin
from twin_ext.runs import VirtualClock
from twin_ext.telemetry import TelemetryIngest, TelemetrySettings


def test_status_before_the_first_snapshot_waits_for_the_running_tick_instead_of_ticking_beside_it(panda):
    """A tick blocked inside the estimator (as a slow first tick would be) holds back a `status` call from another
    thread: the estimator is never entered by two threads at once, and both calls finish once the tick does."""
    clock = VirtualClock(1_000_000_000)
    twin = LiveTwin(panda, TelemetryIngest(settings=TelemetrySettings(robot_id="panda"), model=panda), now_ns=clock)
    inside, release = threading.Event(), threading.Event()
    active, most = [0], [0]
    guard = threading.Lock()
    snapshot = twin.estimator.snapshot

    def slow_snapshot(t_ns):
        with guard:
            active[0] += 1
            most[0] = max(most[0], active[0])
        inside.set()
        release.wait(timeout=5.0)
        try:
            return snapshot(t_ns)
        finally:
            with guard:
                active[0] -= 1

    twin.estimator.snapshot = slow_snapshot
    display = threading.Thread(target=twin.tick, daemon=True)
    display.start()
    assert inside.wait(timeout=5.0)
    statuses = []
    viewer = threading.Thread(target=lambda: statuses.append(twin.status()), daemon=True)
    viewer.start()
    viewer.join(timeout=0.3)  # without serialised ticks the viewer enters the estimator now, beside the display
    with guard:
        concurrent = most[0]
    release.set()
    display.join(timeout=5.0)
    viewer.join(timeout=5.0)
    assert concurrent == 1 and most[0] == 1
    assert not display.is_alive() and not viewer.is_alive() and len(statuses) == 1
