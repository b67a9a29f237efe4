# SPDX-License-Identifier: Apache-2.0
"""The what-if benchmark runs end to end (tiny sizes) and reports both engines on the same robots and commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("mujoco")


def test_the_whatif_benchmark_runs_both_engines_on_the_same_problem_and_they_agree():
    """`python -m twin_ext.bench whatif --quick --json` runs ours and mujoco.rollout on the same three arms and
    commands: the anchor is set up like-for-like (implicitfast; contacts, limit and equality constraints off) with
    the shipped model timed beside it, both advance worlds, their final states agree to 1e-2 rad (same robot, same
    commands, same integrator: measured 1e-4 on the Panda, 1e-9 on the others), and the interactive latencies are
    ordered (the speed goals themselves are read by people from the printed figures, not checked by tests)."""
    proc = subprocess.run(
        [sys.executable, "-m", "twin_ext.bench", "whatif", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert [r["robot"] for r in doc["robots"]] == ["panda", "ur5e", "kinova_gen3"]
    assert [r["ndof"] for r in doc["robots"]] == [9, 6, 7]
    for r in doc["robots"]:
        like, shipped = r["mujoco_rollout"], r["mujoco_rollout_shipped"]
        assert like["integrator"] == "mjINT_IMPLICITFAST"
        assert {"mjDSBL_CONTACT", "mjDSBL_LIMIT", "mjDSBL_EQUALITY"} <= set(like["disabled"])
        assert shipped["disabled"] == []
        assert r["ours"]["world_steps_per_s"] > 0 and like["world_steps_per_s"] > 0 and shipped["world_steps_per_s"] > 0
        assert r["final_state_difference_rad"] < 1e-2, r["robot"]
        assert r["profile"]["ours_ns_per_world_step_per_core"] > 0
    assert doc["robots"][0]["mujoco_rollout_shipped"]["integrator"] == "mjINT_IMPLICIT"  # the Panda as shipped
    assert doc["ratio"] == doc["robots"][0]["ratio"]  # the top level keeps the Panda's figures
    inter = doc["interactive"]
    assert inter["p95_ms"] >= inter["p50_ms"] > 0
    assert doc["start_up"]["warm"]["process_seconds"] > 0
