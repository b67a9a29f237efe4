# SPDX-License-Identifier: Apache-2.0
"""`python -m twin_ext.bench fleet --quick --json` runs end to end and reports every figure it promises."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO


def test_fleet_bench_quick_reports_rates_latency_memory_and_cpu_cost():
    """The quick fleet benchmark (5 robots x 200 Hz, 1 and 2 twin processes, raw paho anchor) prints one JSON
    document with the anchor, each run's sustained rate, p99 added latency and MB per robot, and the CPU cost."""
    from mosquitto import require_mosquitto

    require_mosquitto()
    proc = subprocess.run([sys.executable, "-m", "twin_ext.bench", "fleet", "--quick", "--json"], cwd=REPO,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["anchor"]["kind"] == "raw" and doc["anchor"]["offered_msg_s"] > 0
    twins = [r for r in doc["runs"] if r["kind"] == "twin"]
    assert [r["processes"] for r in twins] == [1, 2]
    for run in twins:
        assert run["robots_seen"] == run["robots"] == 5  # the robots of this run only (no stale retained births)
        assert run["accepted_msg_s"] > 0 and run["p99_added_ms"] > 0 and 0 < run["mb_per_robot"] < 100
    cost = doc["cpu_cost"]
    assert (
        cost["ingest_us_per_msg"] > 0 and cost["estimate_ms_per_robot_tick"] > 0 and cost["robots_per_core_at_rate"] > 0
    )
