"""The what-if benchmark runs end to end (tiny sizes) and reports both engines, the ratio and the latencies."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("mujoco")


def test_the_whatif_benchmark_reports_ours_the_anchor_their_ratio_and_the_latency(capsys):
    """`python -m twin_ext.bench whatif --quick --json` prints both throughputs from one run, their ratio, the
    interactive p50/p95 and a warm start-up time (the speed goals themselves are checked by people, not tests)."""
    from twin_ext.bench._whatif import main

    assert main(["--quick", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["quick"] is True and doc["worlds"] == 64 and doc["steps"] == 100
    ours, anchor = doc["ours"], doc["mujoco_rollout"]
    assert ours["world_steps_per_s"] > 0 and anchor["world_steps_per_s"] > 0
    assert doc["ratio"] == pytest.approx(ours["world_steps_per_s"] / anchor["world_steps_per_s"])
    assert doc["final_state_difference_rad"] < 1e-2  # same robot, same commands: the two agree closely
    inter = doc["interactive"]
    assert inter["variants"] == 256 and inter["p95_ms"] >= inter["p50_ms"] > 0
    assert doc["start_up"]["warm"]["workers"] >= 1 and doc["start_up"]["warm"]["process_seconds"] > 0
