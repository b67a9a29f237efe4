# SPDX-License-Identifier: Apache-2.0
"""The headless Isaac Sim batch runner's in-Kit part, in the real (bare) Kit kernel: a suite runs inside Kit with
the stage driver fed every tick and the app updated once per display tick, and writes the usual outputs."""

from __future__ import annotations

import json

from kit_harness import run_in_kit

SUITE = """
name = "in_kit"
[[emulate]]
faults = ["none"]
duration_s = 4.0
[emulate.checks]
forbid_events = ["collision"]
max_fidelity_ratio = 0.34
[[whatif]]
scenarios = ["speed_payload_check"]
samples = 2
[whatif.checks]
verdicts = { speed_payload_check = "fail" }
"""


def test_a_suite_runs_inside_the_kit_kernel_ticking_the_app_and_writes_junit_summary_and_html(tmp_path):
    """In Kit (bare kernel: the driver is the private pxr mirror), the suite passes, Kit's loop is updated once per
    display tick of the replayed run (60 Hz over 4 s), and the outputs match the plain-Python runner's."""
    suite = tmp_path / "in_kit.toml"
    suite.write_text(SUITE)
    out = tmp_path / "out"
    result = run_in_kit(
        tmp_path,
        "batch_suite",
        args={"suite": str(suite), "out": str(out)},
        settings={"exts/twin_ext/kit/autostart": "false"},  # the extension only puts twin_ext on the path
        timeout=400,
    )
    assert result["passed"], result["results"]
    assert result["counts"] == {"pass": 2, "fail": 0, "error": 0}
    emulate = next(r for r in result["results"] if r["kind"] == "emulate")
    assert result["frames"] == emulate["metrics"]["display_ticks"] > 200
    folder = out / "in_kit"
    assert json.loads((folder / "summary.json").read_text())["passed"]
    assert (folder / "junit.xml").stat().st_size > 0 and (folder / "index.html").stat().st_size > 0
