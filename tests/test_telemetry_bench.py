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
    """`python -m twin_ext.bench telemetry --quick --json` measures raw paho and the twin at QoS0/1, drain and latency."""
    require_mosquitto()
    result = subprocess.run(
        [sys.executable, "-m", "twin_ext.bench", "telemetry", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout)
    assert report["benchmark"] == "telemetry" and report["quick"] is True
    runs = report["throughput"] + report["drain_qos1"] + report["latency_1khz"]
    assert len(report["throughput"]) == 4 and len(report["drain_qos1"]) == 2 and len(report["latency_1khz"]) == 4
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
    assert set(report["ratio_twin_over_raw"]) == {"qos0", "qos1", "qos1_drain"}
    assert report["goal"]["qos1_msg_s"] == 10_000 and isinstance(report["goal"]["met"], bool)
    assert report["anchor"]["qos1_msg_s"] == 7_700
