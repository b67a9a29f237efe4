# SPDX-License-Identifier: Apache-2.0
"""Headless batch runs: suites of recordings, robots, impairment/fault profiles and what-if scenarios, judged
by checks, with JUnit XML, a summary JSON and an HTML report (docs/batch.md).

    python -m twin_ext batch config/suites/smoke.toml            # in this process
    python -m twin_ext batch SUITE.toml --workers 2              # local process pool
    python -m twin_ext batch SUITE.toml --ray auto               # Ray: one warm actor per worker

    summary = run_suite("config/suites/smoke.toml", out=Path("out/batch"))   # summary["passed"]
    result = run_sweep("pick_place_payload", {"speed_scale": [0.8, 1.0, 1.2], "payload_kg": [0, 1, 2]}, workers=2)
"""

from .. import lazy_exports

_EXPORTS = {
    "add_batch_arguments": "._cli",
    "run_batch": "._cli",
    "run_suite": "._cli",
    "run_sweep": "._cli",
    "BatchExecutorError": "._executors",
    "run_jobs": "._executors",
    "evaluate_checks": "._jobs",
    "run_job": "._jobs",
    "sweep_scenario": "._jobs",
    "warm": "._jobs",
    "CHECK_KEYS": "._suite",
    "Job": "._suite",
    "Suite": "._suite",
    "GRID_KEYS": "._sweep",
    "sweep_variants": "._sweep",
    "variant_rows": "._sweep",
    "verdicts_digest": "._sweep",
    "SuiteError": "._suite",
    "load_suite": "._suite",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
