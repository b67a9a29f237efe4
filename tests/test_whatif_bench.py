# SPDX-License-Identifier: Apache-2.0
"""The what-if benchmark runs end to end (tiny sizes) and reports both engines on the same robot and commands."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("mujoco")


def test_the_whatif_benchmark_runs_both_engines_on_the_same_problem_and_they_agree():
    """`python -m twin_ext.bench whatif --quick --json` runs ours and mujoco.rollout on the same robot and commands:
    both advance worlds, their final states agree to 1e-2 rad, and the interactive latencies are ordered (the
    speed goals themselves are read by people from the printed figures, not checked by tests)."""
    proc = subprocess.run(
        [sys.executable, "-m", "twin_ext.bench", "whatif", "--quick", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads(proc.stdout)
    assert doc["ours"]["world_steps_per_s"] > 0 and doc["mujoco_rollout"]["world_steps_per_s"] > 0
    assert doc["final_state_difference_rad"] < 1e-2  # same robot, same commands: the two agree closely
    inter = doc["interactive"]
    assert inter["p95_ms"] >= inter["p50_ms"] > 0
    assert doc["start_up"]["warm"]["process_seconds"] > 0
