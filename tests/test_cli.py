# SPDX-License-Identifier: Apache-2.0
"""The command line: instant help, robot description, the demo's outputs, and clean errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(*args, cwd=None, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "twin_ext", *args], capture_output=True, text=True, timeout=timeout, cwd=cwd or REPO
    )


def test_help_does_not_import_heavy_libraries():
    """--help answers without importing pxr, warp or mujoco (checked via -X importtime)."""
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "twin_ext", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert proc.returncode == 0 and "demo" in proc.stdout
    modules = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "twin_ext.cli" in modules  # the parse works
    heavy = sorted(m for m in modules if m.split(".")[0] in ("pxr", "warp", "mujoco", "numpy"))
    assert heavy == [], f"--help imported {heavy}"


def test_info_describes_a_robot_and_reports_a_bad_path_without_a_traceback():
    """info prints joints/limits/drives/masses; a missing file is one error line and exit code 2."""
    ok = _run("info", "--robot", str(REPO / "usd/ur5e/ur5e.usda"))
    assert ok.returncode == 0 and "shoulder_pan_joint" in ok.stdout and "kg" in ok.stdout
    bad = _run("info", "--robot", "/nope.usda")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "/nope.usda" in bad.stderr
