# SPDX-License-Identifier: Apache-2.0
"""Suites on Ray: a real two-node cluster on this machine (127.0.0.1), one warm actor per worker, results identical
to the local run; the local process pool gives them too."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray")

REPO = Path(__file__).resolve().parents[1]
SUITE = """
name = "scale"
[[emulate]]
faults = ["collision_joint2"]
duration_s = 7.0
[emulate.checks]
expect_events = ["collision"]
[[emulate]]
faults = ["none"]
duration_s = 4.0
seeds = [0, 1]
[emulate.checks]
forbid_events = ["collision"]
[[whatif]]
scenarios = ["speed_payload_check"]
samples = 2
[whatif.checks]
verdicts = { speed_payload_check = "fail" }
"""
# Ray resolves 127.0.0.1 to the machine's reachable address unless multi-node-on-one-host mode is off: keep
# every Ray process on the loopback interface.
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}


@pytest.fixture(scope="module")
def two_node_cluster():
    """A Ray head and a second node (separate raylets, one CPU each) on 127.0.0.1, owned by this test module."""
    os.environ.update(LOOPBACK)
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        yield cluster.address
    finally:
        cluster.shutdown()


def _batch(suite: Path, out: Path, *args, name: str = "scale"):
    env = {**os.environ, **LOOPBACK, "TWIN_EXT_CACHE_DIR": os.environ.get("TWIN_EXT_CACHE_DIR", "")}
    proc = subprocess.run(
        [sys.executable, "-m", "twin_ext", "batch", str(suite), "--out", str(out), "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads((out / name / "summary.json").read_text())


def _results(summary):
    return {r["name"]: (r["status"], r["checks"], json.dumps(r["metrics"], sort_keys=True)) for r in summary["results"]}


def test_a_suite_on_a_two_node_ray_cluster_and_on_the_process_pool_gives_the_local_results(tmp_path, two_node_cluster):
    """The same suite in this process, on 2 local worker processes and as Ray actors on a head plus a second
    node: every job's status, checks and metrics are identical (the jobs are deterministic)."""
    suite = tmp_path / "scale.toml"
    suite.write_text(SUITE)
    local = _batch(suite, tmp_path / "local")
    pool = _batch(suite, tmp_path / "pool", "--workers", "2")
    on_ray = _batch(suite, tmp_path / "ray", "--ray", two_node_cluster, "--workers", "2")
    assert len(local["results"]) == 4 and local["passed"]
    assert _results(pool) == _results(local)
    assert _results(on_ray) == _results(local)


def test_ray_asked_for_at_an_address_nobody_serves_is_one_clear_error(tmp_path):
    """--ray with an unreachable address exits 2 naming the address and the fix, without a traceback."""
    suite = tmp_path / "scale.toml"
    suite.write_text('name = "scale"\n[[whatif]]\nscenarios = ["speed_payload_check"]\nsamples = 2\n')
    env = {**os.environ, **LOOPBACK}
    proc = subprocess.run(
        [sys.executable, "-m", "twin_ext", "batch", str(suite), "--out", str(tmp_path), "--ray", "127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
        env=env,
    )
    assert proc.returncode == 2 and "127.0.0.1:1" in proc.stderr and "fix:" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_2000_variant_sweep_in_batches_on_the_two_node_ray_cluster_equals_the_whole_sweep_in_one_process(
    tmp_path, two_node_cluster
):
    """config/suites/sweep.toml's 8 batches of 250 variants as tasks of 2 warm actors on the head and the second
    node: the merged verdicts (every figure, by digest) equal one engine run over all 2000 variants here."""
    from twin_ext.batch import load_suite, sweep_scenario, verdicts_digest
    from twin_ext.robot import default_robot_path, load_robot
    from twin_ext.whatif import WhatIfEngine, WhatIfSettings

    suite = REPO / "config" / "suites" / "sweep.toml"
    (result,) = _batch(suite, tmp_path, "--ray", two_node_cluster, "--workers", "2", name="sweep")["results"]
    (job,) = load_suite(suite).jobs
    with WhatIfEngine(load_robot(default_robot_path()), settings=WhatIfSettings(use_process_pool=False)) as engine:
        whole = [v.to_dict() for v in engine.run(sweep_scenario(job.params)).variants]
    assert result["metrics"]["batches"] == 8 and len(whole) == 2000
    assert result["metrics"]["verdicts_sha256"] == verdicts_digest(whole)
