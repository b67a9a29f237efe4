"""Bad input to the what-if engine gets a clear `WhatIfError` naming the problem and the fix -- before any launch.

Every test runs with the kernel launchers replaced by a function that fails the test, so "before any launch"
is checked, not assumed.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import pytest

from twin_ext.config import ConfigError
from twin_ext.robot import JointTrajectory, load_robot
from twin_ext.whatif import (
    Payload,
    Perturbation,
    Scenario,
    TargetStream,
    TrajectoryCommand,
    Variant,
    WhatIfEngine,
    WhatIfError,
    WhatIfSettings,
)
from twin_ext.whatif._compute import Executor
from twin_ext.whatif._pool import WorkerPool

REPO = Path(__file__).resolve().parents[1]
HOME = np.array([0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854, 0.02, 0.02])


@cache
def _engine() -> WhatIfEngine:
    return WhatIfEngine(load_robot(REPO / "usd/franka_panda/panda.usda"),
                        settings=WhatIfSettings(use_process_pool=False, memory_budget_mb=64.0))  # fmt: skip


@pytest.fixture(scope="module")
def ready_engine():
    """The engine with its kernels loaded (its warm-up launch happens before launches are forbidden)."""
    _engine().wait_ready()
    return _engine()


@pytest.fixture(autouse=True)
def no_launch(ready_engine, monkeypatch):
    """Fail the test if anything reaches a kernel launch."""

    def refuse(*args, **kwargs):
        raise AssertionError("a kernel was launched for bad input")

    monkeypatch.setattr(Executor, "run", refuse)
    monkeypatch.setattr(WorkerPool, "run", refuse)


def _targets(n=10):
    return np.tile(HOME, (n, 1))


@pytest.mark.parametrize(
    "q0, targets, match",
    [
        (np.zeros(8), _targets(), r"q0 must have shape \[1, 9\].*joint1"),
        (np.zeros((2, 3, 9)), _targets(), r"q0 must have shape \[nworld, 9\]"),
        (HOME, np.zeros((10, 8)), r"targets must have shape \[10, 9\]"),
        (HOME, np.zeros((3, 10, 9)), r"per-world targets must have shape \[nworld=1, nstep, 9\]"),
        (HOME, np.zeros(9), r"targets must be \[nstep, 9\] \(shared\) or \[nworld, nstep, 9\]"),
        (HOME, np.zeros((0, 9)), r"no rows"),
        (np.where(np.arange(9) == 3, np.nan, HOME), _targets(), r"q0 must be finite; q0\[0, 3\] is nan"),
        (HOME, np.where(np.arange(9) == 2, np.inf, _targets()), r"targets must be finite; targets\[0, 2\] is inf"),
    ],
    ids=[
        "q0-short",
        "q0-3d",
        "targets-width",
        "targets-worlds",
        "targets-1d",
        "targets-empty",
        "q0-nan",
        "targets-inf",
    ],
)
def test_wrong_shapes_and_non_finite_values_are_rejected(q0, targets, match):
    """Wrong shapes and NaN/inf in states or targets name the array, the expected shape and the joints."""
    with pytest.raises(WhatIfError, match=match):
        _engine().rollout(q0, None, targets, dt=1e-3)


@pytest.mark.parametrize("dt", [0.0, -1e-3, math.nan, math.inf, 0.2, "1ms", True])
def test_a_step_that_is_not_a_small_positive_number_is_rejected(dt):
    """dt <= 0, non-finite, non-numeric or absurdly coarse steps are refused with the accepted range."""
    with pytest.raises(WhatIfError, match="dt"):
        _engine().rollout(HOME, None, _targets(), dt=dt)


def test_steps_record_every_and_world_variants_are_checked():
    """Asking for more steps than target rows, a negative decimation or a bad world->variant map is an error."""
    e = _engine()
    with pytest.raises(WhatIfError, match="targets have 10 steps but 20 were asked for"):
        e.rollout(HOME, None, _targets(), dt=1e-3, steps=20)
    with pytest.raises(WhatIfError, match="record_every must be >= 0"):
        e.rollout(HOME, None, _targets(), dt=1e-3, record_every=-1)
    with pytest.raises(WhatIfError, match="give world_variant"):
        e.rollout(np.tile(HOME, (3, 1)), None, _targets(), dt=1e-3, variants=[Variant("a"), Variant("b")])
    with pytest.raises(WhatIfError, match=r"world_variant values must be in \[0, 1\]"):
        e.rollout(np.tile(HOME, (2, 1)), None, _targets(), dt=1e-3, variants=[Variant("a"), Variant("b")],
                  world_variant=np.array([0, 2]))  # fmt: skip
    with pytest.raises(WhatIfError, match="speed_scale.*run a Scenario"):
        e.rollout(HOME, None, _targets(), dt=1e-3, variants=[Variant("fast", speed_scale=2.0)])


def test_a_batch_beyond_the_memory_budget_is_refused_with_its_size_and_the_fixes():
    """A request bigger than memory_budget_mb is refused before anything is allocated for it, naming its size."""
    with pytest.raises(WhatIfError, match=r"needs \d+ MiB .*budget is 64 MiB.*memory_budget_mb.*record_every"):
        _engine().rollout(np.tile(HOME, (2048, 1)), None, _targets(2000), dt=1e-3, record_every=1)


def test_targets_outside_the_limits_are_allowed():
    """Targets beyond the joint limits are not an input error (they are flagged in the result instead)."""
    targets = _targets()
    targets[:, 3] = 1.0  # joint4's upper limit is -0.07 rad
    with pytest.raises(AssertionError, match="a kernel was launched"):  # got as far as launching: accepted
        _engine().rollout(HOME, None, targets, dt=1e-3)


@pytest.mark.parametrize(
    "variant, match",
    [
        (lambda: Variant("v", kp_scale={"joint9": 0.5}), r"unknown joint\(s\) \['joint9'\].*joint1"),
        (lambda: Variant("v", friction={"joint1": -1.0}), r"friction\['joint1'\] must be >= 0"),
        (lambda: Variant("v", payloads=(Payload("gripper", 1.0),)), r"unknown link 'gripper'.*'hand'"),
        (lambda: Variant("v", payloads=(Payload("link0", 1.0),)), r"welded to the world"),
        (lambda: Variant("v", perturbation=Perturbation("nowhere")), r"unknown link 'nowhere'"),
    ],
    ids=["unknown-joint", "negative-friction", "unknown-link", "payload-on-base", "wrench-unknown-link"],
)
def test_variants_with_unknown_names_or_impossible_values_are_rejected(variant, match):
    """Variants naming joints or links the robot does not have, or impossible values, are errors listing valid names."""
    with pytest.raises(WhatIfError, match=match):
        _engine().rollout(HOME, None, _targets(), dt=1e-3, variants=[variant()])


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Payload("hand", -1.0), r"mass \(kg\) must be >= 0"),
        (lambda: Payload("hand", 1.0, com=(0.0, 0.1)), r"com .* must be 3 numbers"),
        (lambda: Payload("hand", 1.0, inertia=(1.0, 0.1, 0.1)), "not a physical inertia"),
        (lambda: Payload("hand", 1.0, inertia=(1.0, 2.0)), "3 principal moments or 6 values"),
        (lambda: Perturbation("hand", duration=0.0), r"duration \(s\) must be > 0"),
        (lambda: Perturbation("hand", force=(1.0, math.nan, 0.0)), "must be finite"),
        (lambda: Variant("v", speed_scale=0.0), "speed_scale must be > 0"),
        (lambda: Variant("v", latency=-0.01), r"latency \(s\) must be >= 0"),
        (lambda: Variant(""), "variant name must be a non-empty string"),
    ],
    ids=[
        "neg-mass",
        "short-com",
        "inertia-triangle",
        "inertia-len",
        "zero-window",
        "nan-force",
        "zero-speed",
        "neg-latency",
        "no-name",
    ],
)
def test_impossible_payloads_perturbations_and_variants_fail_on_construction(make, match):
    """Physically impossible values are caught where they are written, with the quantity and unit in the message."""
    with pytest.raises(WhatIfError, match=match):
        make()


def _scenario_doc(**changes):
    doc = {
        "name": "t",
        "command": {"joint_names": ["joint1", "joint2"], "waypoint": [{"t": 0.0, "q": [0.0, -0.7854]}, {"t": 0.5, "q": [0.2, -0.5]}]},
        "variant": [{"name": "a"}],
    }  # fmt: skip
    doc.update(changes)
    return doc


@pytest.mark.parametrize(
    "doc, match",
    [
        (_scenario_doc(speed=2.0), r"unknown key 'speed'.*; valid keys"),
        (_scenario_doc(variant=[{"name": "a", "kp": 2.0}]), r"\[\[variant\]\] 0: unknown key 'kp'"),
        (_scenario_doc(variant=[{"name": "a"}, {"name": "a"}]), r"variant names must be unique; repeated: \['a'\]"),
        (_scenario_doc(variant=[{"name": "a", "payload": {"link": "hand"}}]), r"needs link and mass"),
        (_scenario_doc(command={"trajectory": "missing.toml"}), r"cannot read trajectory file"),
        (_scenario_doc(command={}), r"give exactly one of trajectory"),
        (_scenario_doc(command={"joint_names": ["joint1"], "targets": [[0.0], [0.1]]}), r"needs target_dt"),
        (_scenario_doc(samples=0), r"samples must be an integer >= 1"),
        (_scenario_doc(dt="fast"), r"dt must be a number"),
        (_scenario_doc(base={"q": [0.0], "health": "fine"}), r"health must be ok, stale or lost"),
        (_scenario_doc(base={"qd": [0.0]}), r"needs q = \[\.\.\.\]"),
    ],
    ids=[
        "top-key",
        "variant-key",
        "dup-variant",
        "payload-mass",
        "missing-file",
        "no-command",
        "stream-dt",
        "samples",
        "dt-type",
        "health",
        "base-q",
    ],
)
def test_malformed_scenarios_are_rejected_naming_the_part(doc, match):
    """Scenario documents with unknown keys, missing parts or wrong types name the table and key at fault."""
    with pytest.raises(WhatIfError, match=match):
        Scenario.from_mapping(doc, source="t.toml", base_dir=REPO)


def test_a_scenario_naming_joints_the_robot_does_not_have_fails_before_launch():
    """A command or variant naming unknown joints, or a base state of the wrong size, fails at run time before launch."""
    e = _engine()
    traj = JointTrajectory(["joint1", "elbow"], [0.0, 1.0], [[0.0, 0.0], [0.1, 0.1]])
    with pytest.raises(WhatIfError, match=r"command trajectory names joint\(s\) \['elbow'\].*joint1"):
        e.run(Scenario("s", TrajectoryCommand(traj)))
    stream = TargetStream(("joint1", "wrist"), np.zeros((5, 2)), 0.01)
    with pytest.raises(WhatIfError, match=r"command stream names joint\(s\) \['wrist'\]"):
        e.run(Scenario("s", stream))
    good = TrajectoryCommand(JointTrajectory(["joint1"], [0.0, 1.0], [[0.0], [0.1]]))
    with pytest.raises(WhatIfError, match=r"unknown joint\(s\) \['joint8'\]"):
        e.run(Scenario("s", good, variants=(Variant("v", kd_scale={"joint8": 2.0}),)))
    from twin_ext.whatif import BaseState

    with pytest.raises(WhatIfError, match="base state must have 9 positions"):
        e.run(Scenario("s", good, base=BaseState(np.zeros(7), np.zeros(7))))
    with pytest.raises(WhatIfError, match="is for robot 'ur5e'"):
        e.run(Scenario("s", good, robot="ur5e"))


def test_settings_with_unknown_keys_or_bad_values_are_rejected():
    """[whatif] settings refuse unknown keys (listing the valid ones), wrong types and impossible values."""
    with pytest.raises(
        ConfigError, match=r"unknown key 'workerz' \(did you mean 'workers'\?\); valid keys: .*'workers'"
    ):
        WhatIfSettings.from_mapping({"workerz": 2})
    with pytest.raises(ConfigError, match="precision must be one of"):
        WhatIfSettings.from_mapping({"precision": "float16"})
    with pytest.raises(ConfigError, match="dt must be a finite number > 0"):
        WhatIfSettings.from_mapping({"dt": -1.0})
    with pytest.raises(ConfigError, match="memory_budget_mb must be float"):
        WhatIfSettings.from_mapping({"memory_budget_mb": "lots"})
    assert WhatIfSettings.from_mapping({"dt": 1, "samples": 8}).dt == 1.0


def test_the_shipped_config_whatif_section_is_valid():
    """config/twin.toml's [whatif] table parses into WhatIfSettings with the documented defaults."""
    import tomllib

    doc = tomllib.loads((REPO / "config/twin.toml").read_text())
    assert WhatIfSettings.from_mapping(doc.get("whatif", {})) == WhatIfSettings()


def test_every_whatif_setting_is_documented_and_in_the_shipped_config():
    """Each WhatIfSettings field has a row in docs/SETTINGS.md's whatif table and a line in config/twin.toml."""
    import dataclasses
    import tomllib

    text = (REPO / "docs/SETTINGS.md").read_text()
    section = text.split("## whatif", 1)[1].split("\n## ", 1)[0]
    toml = tomllib.loads((REPO / "config/twin.toml").read_text())["whatif"]
    for field in dataclasses.fields(WhatIfSettings):
        assert f"| `{field.name}` |" in section, f"{field.name} missing from docs/SETTINGS.md"
        assert field.name in toml, f"{field.name} missing from config/twin.toml [whatif]"


def test_a_full_shared_memory_folder_falls_back_to_the_temporary_folder(monkeypatch):
    """When /dev/shm cannot hold a request (a container's 64 MiB), the arena goes to the temp folder instead."""
    import os

    from twin_ext.whatif._shared import Arena

    real_fallocate = os.posix_fallocate

    def fallocate(fd, offset, size):
        if os.readlink(f"/proc/self/fd/{fd}").startswith("/dev/shm"):
            raise OSError(28, "No space left on device")
        return real_fallocate(fd, offset, size)

    monkeypatch.setattr(os, "posix_fallocate", fallocate)
    arena = Arena.create(1 << 20)
    try:
        assert not arena.path.startswith("/dev/shm")
        arena.views({"x": (0, (4,), "<f8")})["x"][:] = 1.0
    finally:
        arena.close()


def test_arenas_left_by_dead_processes_are_removed():
    """Shared-memory files of a process that died without cleaning up (os._exit, a kill) are deleted, others kept."""
    import os
    import subprocess
    import sys

    from twin_ext.whatif._shared import Arena, remove_stale_arenas

    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); from twin_ext.whatif._shared import Arena; "
            "print(Arena.create(4096).path, flush=True); os._exit(0)")  # fmt: skip
    orphan = subprocess.run([sys.executable, "-c", code, str(REPO)], capture_output=True, text=True, timeout=60,
                            check=True).stdout.strip()  # fmt: skip
    mine = Arena.create(4096)
    try:
        assert os.path.exists(orphan)
        assert remove_stale_arenas() >= 1
        assert not os.path.exists(orphan) and os.path.exists(mine.path)
    finally:
        mine.close()
