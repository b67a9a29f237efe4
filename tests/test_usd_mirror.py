# SPDX-License-Identifier: Apache-2.0
"""The USD kinematic mirror poses the robot's own prims exactly where the model says, live and animated."""

from __future__ import annotations

import numpy as np
import pytest
from pxr import Usd, UsdGeom

from twin_ext.stage import UsdKinematicMirror


def _world_poses(stage, paths, time=None):
    time = Usd.TimeCode.Default() if time is None else time
    cache = UsdGeom.XformCache(time)
    return np.array([np.array(cache.GetLocalToWorldTransform(stage.GetPrimAtPath(p))).T for p in paths])


def test_written_link_prims_match_link_poses_for_random_configurations(panda):
    """After write(q), every link prim's world transform equals link_poses(q) (1e-9: double precision)."""
    mirror = UsdKinematicMirror.new_stage(panda, robot_prim_path="/World/panda")
    rng = np.random.default_rng(0)
    for _ in range(10):
        q = rng.uniform(panda.lower, panda.upper)
        mirror.write(q)
        np.testing.assert_allclose(_world_poses(mirror.stage, mirror._paths), panda.link_poses(q), atol=1e-9)
    assert mirror.frames_written == 10


def test_saved_animation_reopens_with_time_samples_at_the_right_poses(panda, tmp_path):
    """write_animation + save gives a .usda whose time samples reproduce the poses when reopened."""
    mirror = UsdKinematicMirror.new_stage(panda)
    t = np.linspace(0.0, 1.0, 11)
    q = np.outer(np.sin(t), np.ones(panda.ndof)) * 0.3 + panda.clip_to_limits(np.zeros(panda.ndof))
    q = panda.clip_to_limits(q)
    mirror.write_animation(t, q, fps=10)
    out = mirror.save(tmp_path / "nested" / "motion.usda")
    stage = Usd.Stage.Open(str(out))
    assert stage.GetEndTimeCode() == pytest.approx(10.0) and stage.GetTimeCodesPerSecond() == 10
    paths = [str(p) for p in mirror._paths]
    for k in (0, 5, 10):
        np.testing.assert_allclose(_world_poses(stage, paths, Usd.TimeCode(k)), panda.link_poses(q[k]), atol=1e-9)
    assert "../" in out.read_text()  # the asset is referenced relative to the file


def test_a_stage_without_the_robot_prims_is_a_clear_error(panda):
    """Pointing the mirror at a stage that does not hold the robot names the missing prims and the fix."""
    stage = Usd.Stage.CreateInMemory()
    with pytest.raises(ValueError, match="place the robot asset"):
        UsdKinematicMirror(panda, stage, robot_prim_path="/Nothing")
