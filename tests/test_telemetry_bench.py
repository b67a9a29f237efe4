# SPDX-License-Identifier: Apache-2.0
"""The telemetry benchmark runs end to end (--quick) and reports a complete, machine-readable result.

Speed is not asserted here (machines are noisy); only that every configuration ran and QoS1 lost nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mosquitto import require_mosquitto

pytestmark = pytest.mark.broker


def test_bench_quick_json_reports_every_configuration():
    """`python -m twin_ext.bench telemetry --quick --json` measures raw paho and the twin at QoS0/1, drain, latency and
    the display loop during a QoS1 flood."""
    require_mosquitto()
    result = subprocess.run(
        [sys.executable, "-m", "twin_ext.bench", "telemetry", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    runs = report["throughput"] + report["drain_qos1"] + report["latency_1khz"]
    measured = {(r["subscriber"].split()[0], r["qos"]) for r in report["throughput"]}
    assert measured == {("raw", 0), ("raw", 1), ("twin", 0), ("twin", 1)}, measured  # both sides, both QoS
    for run in runs:
        assert run["msg_s"] > 0, run
        if run["qos"] == 1:
            assert run["seen"] == run["sent"], f"QoS1 lost messages: {run}"
    for run in report["latency_1khz"]:
        assert run["publish_to_seen"]["n"] == run["seen"]
        if run["subscriber"].startswith("twin"):
            assert run["receive_to_consumer"]["p50_us"] >= 0
    twin_runs = [r for r in runs if r["subscriber"].startswith("twin")]
    assert all(r["rejected"] == 0 and r["dropped"] == 0 for r in twin_runs)
    display = report["display_under_flood_qos1"]  # the live twin's display loop while the flood comes in
    assert display["accepted"] == display["sent"] and display["states_dropped"] == 0 and display["rejected"] == 0
    assert display["configured_hz"] == 60.0
    assert display["mean_hz"] is None or display["mean_hz"] > 0  # --quick: the flood may be shorter than a tick
    assert set(report["goal_display"]) == {"display_hz", "measured_worst_1s_hz", "met"}
