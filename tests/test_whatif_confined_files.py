# SPDX-License-Identifier: Apache-2.0
"""`ConfinedFiles`: what a remote what-if request may read — names inside two folders, regular files only,
size-capped, never blocking — and what its errors may say."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pytest

from twin_ext.whatif import ConfinedFiles, FileNotAllowed, WhatIfError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def files(tmp_path) -> ConfinedFiles:
    scenarios, trajectories = tmp_path / "scenarios", tmp_path / "trajectories"
    scenarios.mkdir()
    (trajectories / "cell2").mkdir(parents=True)
    shutil.copy(REPO / "data" / "scenarios" / "pick_place.toml", trajectories / "pick_place.toml")
    shutil.copy(REPO / "data" / "scenarios" / "pick_place.toml", trajectories / "cell2" / "pick.toml")
    text = (REPO / "config" / "scenarios" / "pick_place_payload.toml").read_text()
    (scenarios / "payload.toml").write_text(
        text.replace("../../data/scenarios/pick_place.toml", "../trajectories/pick_place.toml")
    )
    (scenarios / "escape.toml").write_text(
        text.replace("../../data/scenarios/pick_place.toml", "../../../../etc/passwd")
    )
    (scenarios / "absolute.toml").write_text(text.replace("../../data/scenarios/pick_place.toml", "/etc/passwd"))
    (trajectories / "bad.toml").write_text('password = "hunter2"\njoint_names = [\n')
    (trajectories / "binary.toml").write_bytes(b"\xff\xfe\x00garbage")
    os.mkfifo(trajectories / "fifo.toml")
    (trajectories / "dir.toml").mkdir()
    (trajectories / "out.toml").symlink_to("/etc/passwd")
    (trajectories / "zero.toml").symlink_to("/dev/zero")
    (trajectories / "inside.toml").symlink_to(trajectories / "pick_place.toml")
    with open(trajectories / "huge.toml", "wb") as fh:
        fh.truncate(1 << 30)
    return ConfinedFiles(scenarios, trajectories, max_bytes=65536, timeout_s=0.5)


def test_names_in_the_folders_load_and_local_style_paths_in_a_scenario_file_still_work(files):
    """Names (with subfolders, inside symlinks) and a scenario file's relative trajectory path in the folders load."""
    assert files.trajectory("pick_place").joint_names[0] == "joint1"
    assert files.trajectory("pick_place.toml").duration == files.trajectory("cell2/pick").duration
    assert files.trajectory("inside").duration > 0
    scenario = files.load_scenario("payload")
    assert len(scenario.variants) == 6 and scenario.command.trajectory.duration > 10
    scenario = files.scenario_from_mapping({"command": {"trajectory": "cell2/pick.toml"}, "samples": 2})
    assert scenario.samples == 2
    assert files.trajectory_names() == ["bad", "binary", "huge", "pick_place"]
    assert files.scenario_names() == ["absolute", "escape", "payload"]


@pytest.mark.parametrize(
    "name",
    ["/etc/passwd", "/dev/zero", "../../etc/passwd", "cell2/../../x", "~/.bashrc", "~root", "C:\\x", "a\\..\\b",
     ".hidden", "", "x" * 300, "a/b/c/d/e/f", "fifo", "dir", "out", "zero", "missing", 42, None, ["pick_place"]],
)  # fmt: skip
def test_anything_but_a_regular_file_in_the_folder_gets_the_same_answer(files, name):
    """Paths, .., ~, odd names, FIFOs, folders, symlinks out and missing files all get one answer, at once."""
    t0 = time.perf_counter()
    with pytest.raises(FileNotAllowed) as info:
        files.trajectory(name)
    assert time.perf_counter() - t0 < 0.1
    message = str(info.value)
    assert "is not among the allowed trajectories: ['bad', 'binary', 'huge', 'pick_place']" in message
    assert "root:" not in message and "No such file" not in message and "Permission" not in message


def test_errors_never_echo_file_contents_or_parser_details(files):
    """Invalid, huge or escaping files are refused without their content, line/column or key names."""
    with pytest.raises(WhatIfError) as info:
        files.trajectory("bad")
    assert "not a valid trajectory file" in str(info.value)
    assert "hunter2" not in str(info.value) and "line" not in str(info.value) and "password" not in str(info.value)
    with pytest.raises(WhatIfError, match="not a valid trajectory file"):
        files.trajectory("binary")
    t0 = time.perf_counter()
    with pytest.raises(FileNotAllowed, match=r"larger than \[remote_whatif\] max_file_bytes = 65536"):
        files.trajectory("huge")
    assert time.perf_counter() - t0 < 0.1
    with pytest.raises(FileNotAllowed, match="not among the allowed trajectories"):
        files.load_scenario("escape")
    with pytest.raises(FileNotAllowed, match="absolute path"):
        files.load_scenario("absolute")
    for name in ("pick_place", "../trajectories/pick_place", "/etc/passwd", "payload/x"):
        with pytest.raises(
            FileNotAllowed, match=r"not among the allowed scenarios: \['absolute', 'escape', 'payload'\]"
        ):
            files.load_scenario(name)


def test_a_read_slower_than_the_timeout_is_abandoned(files, monkeypatch):
    """A file that trickles in (os.read 16 bytes per 20 ms) is abandoned after file_timeout_s, naming it."""
    real_read = os.read

    def trickle(fd, n):
        time.sleep(0.02)
        return real_read(fd, min(n, 16))

    monkeypatch.setattr(os, "read", trickle)
    t0 = time.perf_counter()
    with pytest.raises(FileNotAllowed, match=r"took longer than \[remote_whatif\] file_timeout_s = 0.5 s"):
        files.trajectory("pick_place")
    assert time.perf_counter() - t0 < 1.0
