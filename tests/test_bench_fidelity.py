"""`python -m twin_ext.bench fidelity` runs and reports ours beside the anchor (no timing asserted here)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_fidelity_benchmark_prints_twin_and_anchor_figures_as_json():
    """A short run: twin, last-sample-hold and newest-message errors, their ratio, and the forecast errors."""
    proc = subprocess.run(
        [sys.executable, "-m", "twin_ext.bench", "fidelity", "--json", "--seeds", "1", "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    for key in (
        "twin_rms_rad",
        "hold_rms_rad",
        "newest_rms_rad",
        "ratio_to_hold",
        "forecast_whatif_rms_rad",
        "forecast_hold_rms_rad",
        "twin_when_ok_rms_rad",
    ):
        assert result[key] > 0, key
    assert result["ratio_to_hold"] == pytest.approx(result["twin_rms_rad"] / result["hold_rms_rad"])  # one seed
    assert result["goal_met"] == (result["ratio_to_hold"] <= 1 / 3)
