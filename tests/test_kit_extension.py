# SPDX-License-Identifier: Apache-2.0
"""The extension in the real Kit kernel (omniverse-kit 110.4, headless): enable, load, report, disable."""

from __future__ import annotations

from pathlib import Path

import pytest
from kit_harness import REPO, run_in_kit

pytestmark = pytest.mark.kit


def test_enabling_in_kit_loads_the_shipped_robot_and_disabling_leaves_nothing_behind(tmp_path):
    """Kit enables twin_ext from a linked exts folder, startup loads the Panda, shutdown frees everything."""
    r = run_in_kit(tmp_path, "lifecycle")
    assert r["enabled"] and r["instance"], r
    assert r["error"] is None, r["error"]
    assert Path(r["module_file"]).parent.parent == tmp_path / "exts" / "twin_ext"  # loaded via the link
    assert Path(r["linked_root"]) == REPO
    assert r["robot"]["name"] == "panda" and r["robot"]["ndof"] == 9
    assert r["robot"]["dof_names"][:2] == ["joint1", "joint2"]
    assert "robot 'panda' loaded" in r["_stdout"]
    # Clean shutdown: disabled, no instance, the model collected, no thread or file handle left behind.
    assert r["disabled"] and not r["instance_after"] and r["robot_released"]
    assert r["threads_after"] == r["threads_before"]
    assert r["fds_after"] <= r["fds_before"]


def test_settings_on_the_kit_command_line_choose_the_robot(tmp_path):
    """--/exts/twin_ext/robot/usd=... makes startup load that robot (here the UR5e)."""
    r = run_in_kit(tmp_path, "lifecycle", settings={"exts/twin_ext/robot/usd": str(REPO / "usd/ur5e/ur5e.usda")})
    assert r["error"] is None and r["robot"]["name"] == "ur5e" and r["robot"]["ndof"] == 6


def test_a_bad_robot_path_is_reported_and_kit_keeps_running(tmp_path):
    """A missing robot file leaves the extension enabled with a clear error; disabling still works."""
    r = run_in_kit(tmp_path, "lifecycle", settings={"exts/twin_ext/robot/usd": "/nonexistent/robot.usda"})
    assert r["enabled"] and r["robot"] is None
    assert "/nonexistent/robot.usda" in r["error"] and "fix" in r["error"]
    assert r["disabled"] and r["robot_released"]
