# SPDX-License-Identifier: Apache-2.0
"""Broken robot USD files give a RobotModelError that names the prim and the fix (never a crash or a
silently wrong model); legitimate variants (reversed joints, loop closures excluded from the
articulation, scaled stages) load correctly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pxr import Gf, Sdf, Usd, UsdGeom, UsdPhysics

from twin_ext.robot import JointType, RobotModelError, load_robot


def _chain(path, *, n_links=3, joint_type="revolute", root_api=True, mass=1.0, extra=None, mpu=1.0):
    """A small serial robot: /robot/base welded to the world, links l1..l{n} on Z-axis joints 0.1 m apart."""
    stage = Usd.Stage.CreateNew(str(path))
    UsdGeom.SetStageUpAxis(stage, UsdGeom.Tokens.z)
    UsdGeom.SetStageMetersPerUnit(stage, mpu)
    root = UsdGeom.Xform.Define(stage, "/robot")
    stage.SetDefaultPrim(root.GetPrim())
    if root_api:
        UsdPhysics.ArticulationRootAPI.Apply(root.GetPrim())
    names = ["base"] + [f"l{i}" for i in range(1, n_links + 1)]
    parent = "/robot"
    for i, name in enumerate(names):
        body = UsdGeom.Xform.Define(stage, f"{parent}/{name}")
        body.AddTranslateOp().Set(Gf.Vec3d(0, 0, 0.1 if i else 0.0))
        UsdPhysics.RigidBodyAPI.Apply(body.GetPrim())
        m = UsdPhysics.MassAPI.Apply(body.GetPrim())
        m.CreateMassAttr(mass)
        m.CreateDiagonalInertiaAttr(Gf.Vec3f(0.01, 0.01, 0.01))
        if i == 0:
            j = UsdPhysics.FixedJoint.Define(stage, f"{parent}/{name}/weld")
            j.CreateBody1Rel().SetTargets([body.GetPath()])
        else:
            kind = {
                "revolute": UsdPhysics.RevoluteJoint,
                "prismatic": UsdPhysics.PrismaticJoint,
                "spherical": UsdPhysics.SphericalJoint,
            }[joint_type if i == n_links else "revolute"]
            j = kind.Define(stage, f"{parent}/{name}/j{i}")
            j.CreateBody0Rel().SetTargets([Sdf.Path(parent)])
            j.CreateBody1Rel().SetTargets([body.GetPath()])
            j.CreateLocalPos0Attr(Gf.Vec3f(0, 0, 0.1))
            if hasattr(j, "CreateAxisAttr"):
                j.CreateAxisAttr("Z")
        parent = f"{parent}/{name}"
    if extra:
        extra(stage)
    stage.Save()
    return path


def _error(path, **kw) -> RobotModelError:
    with pytest.raises(RobotModelError) as info:
        load_robot(path, **kw)
    return info.value


def test_a_valid_small_chain_loads(tmp_path):
    """The fixture robot itself loads: 4 links, 3 revolute dofs, poses stacked 0.1 m apart."""
    robot = load_robot(_chain(tmp_path / "ok.usda"))
    assert robot.ndof == 3 and robot.nlink == 4
    assert robot.link_poses(np.zeros(3))[-1][2, 3] == pytest.approx(0.3)


def test_missing_file_names_the_path_and_the_fix(tmp_path):
    """A path that does not exist is reported with the path and how to fix it."""
    err = _error(tmp_path / "nope.usda")
    assert "nope.usda" in str(err) and "fix" in str(err)


def test_unparsable_file_is_reported_not_raised_raw(tmp_path):
    """A corrupt USD file becomes a RobotModelError (not a pxr exception)."""
    bad = tmp_path / "bad.usda"
    bad.write_text('#usda 1.0\ndef Xform "robot" {\n  this is not usd\n')
    err = _error(bad)
    assert "bad.usda" in str(err) and "fix" in str(err)


def test_no_articulation_root_says_how_to_add_one(tmp_path):
    """Without ArticulationRootAPI the error says to apply it."""
    err = _error(_chain(tmp_path / "noroot.usda", root_api=False))
    assert "ArticulationRootAPI" in str(err)


def test_several_roots_require_prim_path_and_prim_path_selects_one(tmp_path):
    """Two robots in one file: an error listing both without prim_path; with it, the chosen one loads."""

    def second_robot(stage):
        other = UsdGeom.Xform.Define(stage, "/other")
        UsdPhysics.ArticulationRootAPI.Apply(other.GetPrim())
        b = UsdGeom.Xform.Define(stage, "/other/b")
        UsdPhysics.RigidBodyAPI.Apply(b.GetPrim())
        UsdPhysics.MassAPI.Apply(b.GetPrim()).CreateMassAttr(2.0)

    path = _chain(tmp_path / "two.usda", extra=second_robot)
    err = _error(path)
    assert "/robot" in str(err) and "/other" in str(err) and "prim_path" in str(err)
    assert load_robot(path, prim_path="/robot").ndof == 3
    assert load_robot(path, prim_path="/other").nlink == 1


def test_kinematic_loop_names_the_joint_and_suggests_exclusion(tmp_path):
    """A joint closing a loop is named, with the fix (excludeFromArticulation)."""

    def loop(stage):
        j = UsdPhysics.RevoluteJoint.Define(stage, "/robot/loop")
        j.CreateBody0Rel().SetTargets([Sdf.Path("/robot/base")])
        j.CreateBody1Rel().SetTargets([Sdf.Path("/robot/base/l1/l2")])

    path = _chain(tmp_path / "loop.usda", extra=loop)
    err = _error(path)
    assert "loop" in str(err) and "excludeFromArticulation" in str(err)


def test_a_loop_closure_excluded_from_the_articulation_is_ignored_with_a_note(tmp_path):
    """The same loop joint with excludeFromArticulation = true loads, and the model says it was ignored."""

    def loop(stage):
        j = UsdPhysics.RevoluteJoint.Define(stage, "/robot/loop")
        j.CreateBody0Rel().SetTargets([Sdf.Path("/robot/base")])
        j.CreateBody1Rel().SetTargets([Sdf.Path("/robot/base/l1/l2")])
        j.CreateExcludeFromArticulationAttr(True)

    robot = load_robot(_chain(tmp_path / "loop_ok.usda", extra=loop))
    assert robot.ndof == 3 and any("/robot/loop" in n for n in robot.notes)


def test_unsupported_joint_type_is_named(tmp_path):
    """A spherical joint is rejected with its path, its type and the supported types."""
    err = _error(_chain(tmp_path / "sph.usda", joint_type="spherical"))
    assert "PhysicsSphericalJoint" in str(err) and "revolute" in str(err) and err.prim_path.endswith("/j3")


@pytest.mark.parametrize("mass, word", [(-1.0, "mass"), (float("nan"), "mass"), (float("inf"), "mass")])
def test_negative_or_non_finite_mass_is_rejected(tmp_path, mass, word):
    """Negative, NaN or infinite link mass is an error naming the link."""
    err = _error(_chain(tmp_path / "m.usda", mass=mass))
    assert word in str(err) and err.prim_path.startswith("/robot/base")


def test_impossible_inertia_is_rejected(tmp_path):
    """Principal moments that no rigid body has (triangle inequality) or negative ones are errors."""

    def bad_inertia(stage):
        UsdPhysics.MassAPI(stage.GetPrimAtPath("/robot/base/l1")).GetDiagonalInertiaAttr().Set(
            Gf.Vec3f(0.01, 0.01, 0.5)
        )

    err = _error(_chain(tmp_path / "tri.usda", extra=bad_inertia))
    assert "triangle" in str(err) and err.prim_path == "/robot/base/l1"

    def negative(stage):
        UsdPhysics.MassAPI(stage.GetPrimAtPath("/robot/base/l1")).GetDiagonalInertiaAttr().Set(
            Gf.Vec3f(-0.01, 0.01, 0.01)
        )

    assert "negative" in str(_error(_chain(tmp_path / "neg.usda", extra=negative)))


def test_joint_whose_body_is_missing_is_named(tmp_path):
    """A joint targeting a prim that does not exist is an error naming the joint and the target."""

    def dangling(stage):
        UsdPhysics.RevoluteJoint.Get(stage, "/robot/base/l1/l2/j2").GetBody1Rel().SetTargets([Sdf.Path("/robot/ghost")])

    err = _error(_chain(tmp_path / "dangle.usda", extra=dangling))
    assert "/robot/ghost" in str(err) and "j2" in str(err)


def test_duplicate_joint_names_are_rejected_because_telemetry_uses_names(tmp_path):
    """Two moving joints with the same prim name cannot be addressed by telemetry: error with both paths."""

    def dup(stage):
        stage.GetPrimAtPath("/robot/base/l1/j1")  # exists
        stage.GetPrimAtPath("/robot/base/l1/l2/j2").GetParent()
        # Rename by re-authoring: define a second "j1" joint for l3 instead of j3.
        stage.RemovePrim("/robot/base/l1/l2/l3/j3")
        j = UsdPhysics.RevoluteJoint.Define(stage, "/robot/base/l1/l2/l3/j1")
        j.CreateBody0Rel().SetTargets([Sdf.Path("/robot/base/l1/l2")])
        j.CreateBody1Rel().SetTargets([Sdf.Path("/robot/base/l1/l2/l3")])
        j.CreateAxisAttr("Z")

    err = _error(_chain(tmp_path / "dup.usda", extra=dup))
    assert "unique" in str(err) and "j1" in str(err)


def test_a_link_not_connected_by_any_joint_is_named(tmp_path):
    """A rigid body under the articulation root with no joint to the robot is an error naming it."""

    def stray(stage):
        b = UsdGeom.Xform.Define(stage, "/robot/floating_box")
        UsdPhysics.RigidBodyAPI.Apply(b.GetPrim())

    err = _error(_chain(tmp_path / "stray.usda", extra=stray))
    assert "/robot/floating_box" in str(err)


def test_a_reversed_joint_gives_the_same_kinematics(tmp_path):
    """A joint authored child->parent (body0 = child) moves the link exactly like the forward joint."""
    forward = load_robot(_chain(tmp_path / "fwd.usda"))

    def reverse(stage):
        j = UsdPhysics.RevoluteJoint.Get(stage, "/robot/base/l1/l2/j2")
        j.GetBody0Rel().SetTargets([Sdf.Path("/robot/base/l1/l2")])
        j.GetBody1Rel().SetTargets([Sdf.Path("/robot/base/l1")])
        j.CreateLocalPos0Attr(Gf.Vec3f(0, 0, 0))
        j.CreateLocalPos1Attr(Gf.Vec3f(0, 0, 0.1))

    backward = load_robot(_chain(tmp_path / "rev.usda", extra=reverse))
    q = np.array([0.3, -0.7, 1.1])
    # Reversing the joint flips the sign of its coordinate; positions of links must agree with that flip.
    q_back = q * np.array([1, -1, 1])
    np.testing.assert_allclose(backward.link_poses(q_back), forward.link_poses(q), atol=1e-9)


def test_prismatic_joints_and_stage_units_are_converted_to_si(tmp_path):
    """A centimetre stage: lengths, prismatic limits and prismatic drives come out in metres."""

    def drive(stage):
        j = stage.GetPrimAtPath("/robot/base/l1/l2/l3/j3")
        UsdPhysics.PrismaticJoint(j).CreateLowerLimitAttr(-5.0)
        UsdPhysics.PrismaticJoint(j).CreateUpperLimitAttr(5.0)
        d = UsdPhysics.DriveAPI.Apply(j, "linear")
        d.CreateStiffnessAttr(100.0)

    robot = load_robot(_chain(tmp_path / "cm.usda", joint_type="prismatic", mpu=0.01, extra=drive))
    assert robot.dof_type[-1] == JointType.PRISMATIC
    assert (robot.lower[-1], robot.upper[-1]) == pytest.approx((-0.05, 0.05))
    # 100 N per cm of stage -> kp per metre: force unit kg*cm/s^2 = 0.01 N, length 0.01 m -> 100 N/m.
    assert robot.kp[-1] == pytest.approx(100.0)
    assert robot.link_poses(np.zeros(3))[-1][2, 3] == pytest.approx(0.003)
    assert math.isinf(robot.velocity_limit[0])
