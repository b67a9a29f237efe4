# SPDX-License-Identifier: Apache-2.0
"""Benchmarks: each prints the anchor's figure and ours from the same run, and their ratio.

    python -m twin_ext.bench whatif     [--json]   Warp rollouts vs mujoco.rollout
    python -m twin_ext.bench telemetry  [--json]   MQTT link + decode vs raw paho-mqtt
    python -m twin_ext.bench fidelity   [--json]   twin estimate vs last-sample-hold, against plant truth
    python -m twin_ext.bench health     [--json]   health monitor vs emulator fault truth, vs two anchors
    python -m twin_ext.bench control    [--json]   command pre-flight and stop latency vs what-if / raw paho
    python -m twin_ext.bench fleet      [--json]   robots x rate per twin process (estimation + health) vs raw paho
    python -m twin_ext.bench batch      [--json]   suite jobs/s: process pool and Ray (1, 2 workers) vs a serial loop
    python -m twin_ext.bench all        [--json]

Speed goals live here, never in timed tests.
"""

__all__ = ["BENCHMARKS"]

BENCHMARKS = ("whatif", "telemetry", "fidelity", "health", "control", "fleet", "batch")
"""Names of the benchmarks (``python -m twin_ext.bench <name>``); each lives in the private module ``_<name>``."""
