# SPDX-License-Identifier: Apache-2.0
"""`python -m twin_ext replay`: the twin over a recording as a headless batch job, with its report."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RECORDING = REPO / "data" / "recordings" / "panda_pick_place_standard.mcap"


def _replay(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "twin_ext", "replay", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def test_replaying_the_shipped_recording_writes_motion_whatif_and_a_report_scored_against_truth(tmp_path):
    """The shipped recording carries the plant's truth: the report scores the twin (well under 1/3 of
    last-sample-hold) and holds the what-if asked mid-way; the motion opens as USD."""
    proc = _replay(str(RECORDING), "--out", str(tmp_path), "--samples", "4")
    assert proc.returncode == 0, proc.stderr[-3000:]
    match = re.search(r"twin RMS ([0-9.]+) mrad vs last-sample-hold ([0-9.]+) mrad", proc.stdout)
    assert match and float(match.group(1)) < float(match.group(2)) / 3, proc.stdout
    for name in ("twin_motion.usda", "whatif.json", "report.html", "report_joints.png", "report_errors.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert "What-if" in (tmp_path / "report.html").read_text()


def test_replay_refuses_a_missing_or_foreign_file_with_one_clear_line(tmp_path):
    """No traceback: a missing path and a file that is not an MCAP recording are named."""
    missing = _replay(str(tmp_path / "nope.mcap"))
    assert missing.returncode == 2 and "nope.mcap" in missing.stderr and "Traceback" not in missing.stderr
    foreign = tmp_path / "foreign.mcap"
    foreign.write_bytes(b"not an mcap file at all")
    bad = _replay(str(foreign))
    assert bad.returncode == 2 and "foreign.mcap" in bad.stderr and "Traceback" not in bad.stderr
