# SPDX-License-Identifier: Apache-2.0
"""Clearance in the what-if rollouts, against MuJoCo's mj_geomDistance as the oracle: the kernel's sphere-to-
primitive and sphere-to-mesh distances, each link's distance within its stated sphere-set excess of the true
distance of its collision hull, and verdicts on trajectories that pass through a box or 5 cm above one."""

from __future__ import annotations

import dataclasses

import mujoco
import numpy as np
import pytest

from twin_ext.collision import Collider, SceneColliders, robot_spheres
from twin_ext.robot import JointTrajectory, default_robot_path, load_robot
from twin_ext.whatif import (
    ClearanceChecker,
    Payload,
    Scenario,
    TrajectoryCommand,
    Variant,
    WhatIfEngine,
    WhatIfSettings,
)

PICK_PLACE = "data/scenarios/pick_place.toml"
# Float32 kernel (sub-micrometre round-off at arm scale) against MuJoCo's float64 distances: 0.1 mm.
TOL = 1e-4
END_EFFECTOR = ("link7", "hand", "left_finger", "right_finger")


@pytest.fixture(scope="module")
def panda():
    return load_robot(default_robot_path())


@pytest.fixture(scope="module")
def spheres(panda):
    return robot_spheres(panda, spheres_per_link=12, home_clearance=0.01)


def _mj_min_distance(spheres_world, radii, add_obstacle) -> float:
    """Smallest mj_geomDistance between sphere geoms (world centres, radii) and one obstacle geom."""
    spec = mujoco.MjSpec()
    for c, r in zip(spheres_world, radii, strict=True):
        spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_SPHERE, size=[r, 0, 0], pos=c.tolist())
    add_obstacle(spec)
    m = spec.compile()
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    ob = m.ngeom - 1
    return min(mujoco.mj_geomDistance(m, d, g, ob, 10.0, None) for g in range(m.ngeom - 1))


def _quat_wxyz(rot: np.ndarray) -> list[float]:
    q = np.zeros(4)
    mujoco.mju_mat2Quat(q, np.ascontiguousarray(rot).ravel())
    return q.tolist()


def _collider(kind: str, rng, near=(0.45, 0.0, 0.35)) -> tuple[Collider, callable]:
    """A random primitive or convex mesh within 12 cm of ``near`` (m), and how to add the same shape to MuJoCo."""
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    rot *= np.sign(np.linalg.det(rot))
    pos = np.asarray(near, dtype=np.float64) + rng.uniform(-0.12, 0.12, 3)
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = rot, pos
    if kind == "mesh":  # a convex octahedron, rotated: MuJoCo uses a mesh's convex hull, here the same solid
        half = rng.uniform(0.03, 0.08, 3)
        local = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]]) * half
        pts = local @ rot.T + pos
        faces = np.array([[0, 2, 4], [2, 1, 4], [1, 3, 4], [3, 0, 4], [2, 0, 5], [1, 2, 5], [3, 1, 5], [0, 3, 5]])

        def add_mesh(spec):
            spec.add_mesh(name="hull", uservert=pts.ravel().tolist())
            spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname="hull")

        return Collider("/World/mesh", "mesh", np.eye(4), np.zeros(3), pts, faces), add_mesh
    size = {
        "box": rng.uniform(0.02, 0.08, 3),
        "sphere": np.array([rng.uniform(0.02, 0.06), 0.0, 0.0]),
        "capsule": np.array([rng.uniform(0.01, 0.04), rng.uniform(0.02, 0.08), 0.0]),
        "cylinder": np.array([rng.uniform(0.02, 0.06), rng.uniform(0.02, 0.08), 0.0]),
    }[kind]
    mj_type = {
        "box": mujoco.mjtGeom.mjGEOM_BOX,
        "sphere": mujoco.mjtGeom.mjGEOM_SPHERE,
        "capsule": mujoco.mjtGeom.mjGEOM_CAPSULE,
        "cylinder": mujoco.mjtGeom.mjGEOM_CYLINDER,
    }[kind]

    def add(spec):
        spec.worldbody.add_geom(type=mj_type, size=size.tolist(), pos=pos.tolist(), quat=_quat_wxyz(rot))

    return Collider(f"/World/{kind}", kind, pose, size), add


@pytest.mark.parametrize("kind", ["box", "sphere", "capsule", "cylinder", "mesh"])
def test_link_distances_match_mujoco_geom_distance_between_the_spheres_and_the_shape(panda, spheres, kind):
    """Per link, the kernel's distance (forward kinematics, then signed distance of each sphere to a box, sphere,
    capsule, cylinder or wp.Mesh) equals min over that link's spheres of mj_geomDistance to the same shape, within
    0.1 mm, for random arm poses and shape poses; beyond the exact horizon it is a lower bound."""
    rng = np.random.default_rng({"box": 1, "sphere": 2, "capsule": 3, "cylinder": 4, "mesh": 5}[kind])
    no_self = dataclasses.replace(spheres, self_pairs=np.zeros((0, 2), dtype=np.int32))
    compared = 0
    for _ in range(4):
        q = panda.clip_to_limits(panda.drive_target + rng.normal(0.0, 0.5, (4, panda.ndof)))
        near = panda.link_poses(q[0])[rng.integers(3, panda.nlink), :3, 3]
        collider, add = _collider(kind, rng, near)
        checker = ClearanceChecker(panda, no_self, SceneColliders((collider,)), min_clearance=0.01)
        result = checker.evaluate(q[:, None, :])
        poses = panda.link_poses(q)
        for w in range(len(q)):
            world = no_self.world_spheres(poses[w])
            for i in np.flatnonzero(no_self.scene_links):
                mine = no_self.sphere_link == i
                oracle = _mj_min_distance(world[mine], no_self.radii[mine], add)
                ours = float(result.distance[w, 0, i])
                if oracle < checker.horizon:
                    assert ours == pytest.approx(oracle, abs=TOL), (kind, panda.link_names[i])
                    assert result.obstacle[w, 0, i] == 0
                    compared += 1
                else:
                    assert ours <= oracle + TOL
    assert compared >= 5  # the random shapes came near enough to test exact distances


def _link_hulls(panda):
    """Per link (but link0), its collision solids in the link frame, read from the USD with pxr directly
    (independent of the code under test): ``[("mesh", vertices [n, 3]) | ("box", (half [3], X [4, 4]))]``."""
    from pxr import Usd, UsdGeom, UsdPhysics

    stage = Usd.Stage.Open(str(panda.source))
    cache = UsdGeom.XformCache()
    out: dict[int, list] = {}
    for i, path in enumerate(panda.link_paths):
        link = stage.GetPrimAtPath(path)
        if panda.link_names[i] == "link0":
            continue
        for prim in link.GetChildren():
            kids = [prim, *prim.GetChildren()] if not prim.HasAPI(UsdPhysics.RigidBodyAPI) else []
            for g in kids:
                if not g.HasAPI(UsdPhysics.CollisionAPI):
                    continue
                rel = np.array(cache.ComputeRelativeTransform(g, link)[0]).T
                if g.GetTypeName() == "Mesh":
                    pts = np.asarray(UsdGeom.Mesh(g).GetPointsAttr().Get(), dtype=np.float64)
                    out.setdefault(i, []).append(("mesh", pts @ rel[:3, :3].T + rel[:3, 3]))
                elif g.GetTypeName() == "Cube":
                    scale = np.linalg.norm(rel[:3, :3], axis=0)
                    x = rel.copy()
                    x[:3, :3] /= scale
                    half = 0.5 * float(UsdGeom.Cube(g).GetSizeAttr().Get()) * scale
                    out.setdefault(i, []).append(("box", (half, x)))
    return out


def _add_link(spec, solids, x: np.ndarray, tag: str) -> int:
    """Add one link's solids at link pose ``x`` to a MuJoCo spec; returns how many geoms were added."""
    for k, (kind, data) in enumerate(solids):
        if kind == "mesh":
            spec.add_mesh(name=f"{tag}_{k}", uservert=(data @ x[:3, :3].T + x[:3, 3]).ravel().tolist())
            spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_MESH, meshname=f"{tag}_{k}")
        else:
            half, local = data
            world = x @ local
            spec.worldbody.add_geom(
                type=mujoco.mjtGeom.mjGEOM_BOX,
                size=half.tolist(),
                pos=world[:3, 3].tolist(),
                quat=_quat_wxyz(world[:3, :3]),
            )
    return len(solids)


def test_each_link_distance_is_within_its_stated_excess_below_the_true_hull_distance(panda, spheres):
    """Against the true distance of each link's collision hull (a MuJoCo mesh geom) to a box: when apart, ours is
    never larger (conservative) and at most the link's stated excess smaller (plus 0.1 mm); when they overlap,
    ours is negative too."""
    rng = np.random.default_rng(7)
    hulls = _link_hulls(panda)
    no_self = dataclasses.replace(spheres, self_pairs=np.zeros((0, 2), dtype=np.int32))
    checked = 0
    for _ in range(4):
        q = panda.clip_to_limits(panda.drive_target + rng.normal(0.0, 0.5, (3, panda.ndof)))
        collider, add = _collider("box", rng, panda.link_poses(q[0])[rng.integers(3, panda.nlink), :3, 3])
        checker = ClearanceChecker(panda, no_self, SceneColliders((collider,)), min_clearance=0.01)
        result = checker.evaluate(q[:, None, :])
        poses = panda.link_poses(q)
        for w in range(len(q)):
            for i, solids in hulls.items():
                spec = mujoco.MjSpec()
                n = _add_link(spec, solids, poses[w, i], "link")
                add(spec)
                m = spec.compile()
                d = mujoco.MjData(m)
                mujoco.mj_forward(m, d)
                true = min(mujoco.mj_geomDistance(m, d, g, n, 10.0, None) for g in range(n))
                if true > checker.horizon:
                    continue
                ours = float(result.distance[w, 0, i])
                if true < 0.0:  # penetrating: the spheres say so too (depths of different solids differ)
                    assert ours < 0.0, (panda.link_names[i], ours, true)
                    continue
                assert ours <= true + TOL, (panda.link_names[i], ours, true)
                assert ours >= true - spheres.excess[i] - TOL, (panda.link_names[i], ours, true, spheres.excess[i])
                checked += 1
    assert checked >= 5


def test_self_distances_are_those_of_the_paired_sphere_sets(panda, spheres):
    """Link-to-link distances below the self cut-off equal the NumPy distance of the two links' sphere sets, and
    name the other link's prim; links no pair can bring that close are left at their scene distance."""
    rng = np.random.default_rng(11)
    checker = ClearanceChecker(panda, spheres, None, min_clearance=0.01)
    q = panda.clip_to_limits(panda.drive_target + rng.normal(0.0, 0.6, (64, panda.ndof)))
    result = checker.evaluate(q[:, None, :])
    poses = panda.link_poses(q)
    found = 0
    for w in range(len(q)):
        for i in range(panda.nlink):
            partners = [b if a == i else a for a, b in spheres.self_pairs if i in (a, b)]
            if not partners:
                continue
            ref = {b: spheres.link_distance(poses[w], i, b) for b in partners}
            best = min(ref, key=ref.get)
            if ref[best] < checker.self_cutoff - 1e-4:
                assert result.distance[w, 0, i] == pytest.approx(ref[best], abs=TOL)
                assert result.obstacles[result.obstacle[w, 0, i]] == panda.link_paths[best]
                found += 1
    assert found >= 10


def _hand_path(panda, t0: float, t1: float):
    """Times and the true (hull) lowest z and y-extent of hand + fingers over the transfer of the program."""
    traj = JointTrajectory.from_toml(PICK_PLACE)
    ts = np.arange(t0, t1, 0.002)
    q = traj.sample(ts)
    q = q[0] if isinstance(q, tuple) else q
    return ts, q


def _engine(panda, scene, **settings):
    s = WhatIfSettings(use_process_pool=False, min_clearance_m=0.01, **settings)
    return WhatIfEngine(panda, settings=s, scene=scene)


def _box(path: str, centre, half) -> Collider:
    pose = np.eye(4)
    pose[:3, 3] = centre
    return Collider(path, "box", pose, np.asarray(half, dtype=np.float64))


def _true_hand_distance(panda, hulls, q, box: Collider) -> float:
    """True distance of the given links' collision solids to ``box`` at one state (MuJoCo)."""
    poses = panda.link_poses(q)
    spec = mujoco.MjSpec()
    for i, solids in hulls.items():
        _add_link(spec, solids, poses[i], f"l{i}")
    spec.worldbody.add_geom(type=mujoco.mjtGeom.mjGEOM_BOX, size=box.size.tolist(), pos=box.pose[:3, 3].tolist())
    m = spec.compile()
    d = mujoco.MjData(m)
    mujoco.mj_forward(m, d)
    return min(mujoco.mj_geomDistance(m, d, g, m.ngeom - 1, 10.0, None) for g in range(m.ngeom - 1))


def _transfer_scenario() -> Scenario:
    traj = JointTrajectory.from_toml(PICK_PLACE)
    return Scenario(
        "transfer", TrajectoryCommand(traj, start=4.2), variants=(Variant("as programmed"),), samples=1, duration=2.0
    )


def test_a_trajectory_through_a_box_is_flagged_at_its_first_contact(panda, spheres):
    """A wall across the transfer move (y = 0, reaching up to the fingers): verdict fail, kind collision, an
    end-effector link and the wall's prim path; flagged no later than the true first contact of the hulls and when the true
    distance is at most the hand's stated excess (the conservative bound)."""
    wall = _box("/World/Wall", [0.56, 0.0, 0.12], [0.15, 0.01, 0.05])
    engine = _engine(panda, SceneColliders((wall,)), clearance_interval_s=0.002)
    report = engine.run(_transfer_scenario())
    v = report.variants[0]
    assert v.status == "fail" and v.by_kind["collision"].samples == 1
    hit = next(x for x in v.nominal if x.kind == "collision")
    assert hit.obstacle == "/World/Wall" and hit.joint in END_EFFECTOR
    hulls = {i: p for i, p in _link_hulls(panda).items() if panda.link_names[i] in END_EFFECTOR}
    rollout = report.rollout
    true = np.array([_true_hand_distance(panda, hulls, rollout.q[0, r], wall) for r in range(len(rollout.t))])
    t_true = rollout.t[np.argmax(true <= 0.0)]
    assert (true <= 0.0).any() and hit.time <= t_true + 1e-9
    r_ours = int(np.argmin(np.abs(rollout.t - hit.time)))
    excess = max(spheres.excess[panda.link_index(n)] for n in END_EFFECTOR)
    assert true[r_ours] <= excess + TOL, (true[r_ours], excess)


def test_a_trajectory_5_cm_above_a_box_passes(panda):
    """A block whose top is 5 cm below the lowest true point of link7, hand and fingers during the transfer: no
    collision, no clearance violation (the spheres overstate by < 2.5 cm), verdict pass; the closest approach is
    named (link and the block) and lies between 5 cm minus the excess and 5 cm (self collision off: only the
    block is asked about)."""
    hulls = {i: p for i, p in _link_hulls(panda).items() if panda.link_names[i] in END_EFFECTOR}
    probe = _box("/World/Probe", [0.56, 0.0, -1.0], [0.15, 0.15, 0.01])  # far below: find the lowest point
    ts, q = _hand_path(panda, 4.2, 6.2)
    lowest = min(_true_hand_distance(panda, hulls, q[k], probe) for k in range(0, len(ts), 25)) + (-1.0 + 0.01)
    top = lowest - 0.05
    block = _box("/World/Block", [0.56, 0.0, top - 0.05], [0.15, 0.15, 0.05])
    report = _engine(panda, SceneColliders((block,)), self_collision=False).run(_transfer_scenario())
    v = report.variants[0]
    assert v.status == "pass", v.reason
    assert v.by_kind["collision"].samples == 0 and v.by_kind["clearance"].samples == 0
    c = v.clearance
    assert c["obstacle"] == "/World/Block" and c["link"] in END_EFFECTOR
    assert 0.05 - c["excess_m"] - 2e-3 <= c["distance_m"] <= 0.05 + 2e-3


def test_the_demo_cell_flags_a_long_part_at_the_fixture(panda):
    """The shipped demo cell (usd/scenes/pick_place_cell.usda): the program as written passes; carrying a 0.3 m
    bar (a payload with a size) makes the hand collide with /Cell/Fixture during the transfer."""
    engine = WhatIfEngine(
        panda, settings=WhatIfSettings(use_process_pool=False, scene="usd/scenes/pick_place_cell.usda")
    )
    bar = Variant("long part", payloads=(Payload("hand", 1.0, com=(0.0, 0.0, 0.095), size=(0.30, 0.03, 0.02)),))
    traj = JointTrajectory.from_toml(PICK_PLACE)
    scenario = Scenario(
        "cell", TrajectoryCommand(traj), variants=(Variant("as programmed"), bar), samples=2, duration=traj.duration
    )
    report = engine.run(scenario)
    ok, long = report.variants
    assert ok.status == "pass", ok.reason
    assert long.status == "fail" and long.by_kind["collision"].samples == long.samples
    hit = next(x for x in long.nominal if x.kind == "collision")
    assert hit.joint == "hand" and hit.obstacle == "/Cell/Fixture" and 4.5 < hit.time < 5.6
    doc = long.to_dict()
    assert doc["nominal"][0]["obstacle"] in ("/Cell/Fixture", "/Cell/Table") and doc["clearance"]["link"] == "hand"


def test_the_contact_marker_scene_reference_and_panel_row_show_a_collision(panda, tmp_path):
    """A colliding variant's first contact becomes a red marker sphere (with its label) beside the referenced
    scene on a stage and on the Kit ghost, and the panel's row lists the closest approach and the obstacle."""
    from pxr import Usd, UsdGeom

    from twin_ext.kit.viewmodels import WhatIfPanelViewModel
    from twin_ext.stage import GhostRobot, mark_contact, reference_scene

    engine = _engine(panda, "usd/scenes/pick_place_cell.usda")
    bar = Variant("long part", payloads=(Payload("hand", 1.0, com=(0.0, 0.0, 0.095), size=(0.30, 0.03, 0.02)),))
    report = engine.run(
        Scenario(
            "cell", TrajectoryCommand(JointTrajectory.from_toml(PICK_PLACE), start=4.2), variants=(bar,), duration=1.5
        )
    )
    contact = report.variants[0].clearance["first_contact"]
    assert contact["link"] == "hand" and contact["obstacle"] == "/Cell/Fixture"
    # the marker lies at the post's face (x = 0.69 m), within the sphere excess, at transfer height
    assert abs(contact["point"][0] - 0.69) < 0.03 and 0.1 < contact["point"][2] < 0.2
    stage = Usd.Stage.CreateInMemory()
    reference_scene(stage, report.clearance.scene)
    prim = mark_contact(stage, contact["point"], label="hand vs /Cell/Fixture")
    assert stage.GetPrimAtPath("/World/Scene/Table") and prim.GetDocumentation() == "hand vs /Cell/Fixture"
    mpu = UsdGeom.GetStageMetersPerUnit(stage)  # an in-memory stage is in cm: the marker is 1.5 cm either way
    assert UsdGeom.Sphere(prim).GetRadiusAttr().Get() * mpu == pytest.approx(0.015)
    ghost = GhostRobot(panda, stage, prim_path="/World/ghost")
    ghost.mark_contact(contact["point"], label="x")
    assert stage.GetPrimAtPath("/World/ghost_contact")
    ghost.mark_contact(None)
    assert not stage.GetPrimAtPath("/World/ghost_contact")
    row = WhatIfPanelViewModel._row(report.variants[0])
    assert "mm hand to /Cell/Fixture" in row.clearance and "vs /Cell" in row.first_violation


def test_a_missing_scene_or_a_bad_part_size_is_refused_naming_the_setting(panda):
    """A [whatif] scene that does not exist fails the engine's start with the setting and the fix; a negative
    payload size and a malformed allowed pair are refused where they are written."""
    from twin_ext.whatif import WhatIfError

    engine = WhatIfEngine(panda, settings=WhatIfSettings(use_process_pool=False, warmup=False, scene="no/such.usda"))
    with pytest.raises(WhatIfError, match=r"\[whatif\] scene.*does not exist.*fix"):
        engine.wait_ready()
    with pytest.raises(WhatIfError, match="size must be >= 0"):
        Payload("hand", 1.0, size=(0.1, -0.1, 0.1))
    with pytest.raises(ValueError, match="allowed_collisions"):
        WhatIfSettings(allowed_collisions=(("link5",),))


def test_clearance_checked_in_the_worker_pool_equals_the_in_process_check(panda):
    """With the worker pool each worker checks the worlds it rolled out (chunks of worlds over two processes); the
    distances, nearest obstacles and verdicts equal exactly those of the in-process check of the same request (a
    scene with boxes and a mesh, 18 variants, a sized part on half of them, one colliding)."""
    from twin_ext.collision import load_scene

    cell = load_scene("usd/scenes/pick_place_cell.usda", exclude=("/panda",))
    mesh, _ = _collider("mesh", np.random.default_rng(5), near=(0.5, 0.25, 0.3))
    scene = SceneColliders((*cell.colliders, mesh), source=cell.source)
    bar = Payload("hand", 1.0, com=(0.0, 0.0, 0.095), size=(0.30, 0.03, 0.02))
    variants = tuple(  # 18 worlds: 8 chunks of 2-3 worlds over the two workers
        Variant(f"speed {s:g} kp {k:g} part {p}", speed_scale=s, kp_scale=k, payloads=(bar,) if p else ())
        for p in (True, False)
        for s in (1.0, 1.25, 0.8)
        for k in (1.0, 0.8, 1.2)
    )
    scenario = Scenario(
        "split", TrajectoryCommand(JointTrajectory.from_toml(PICK_PLACE), start=4.2), variants=variants, duration=1.5
    )
    reports = [
        WhatIfEngine(panda, settings=WhatIfSettings(use_process_pool=pool, workers=2), scene=scene).run(scenario)
        for pool in (True, False)
    ]
    pooled, local = (r.clearance for r in reports)
    assert pooled.distance.shape == (18, 150, panda.nlink)
    np.testing.assert_array_equal(pooled.distance, local.distance)
    np.testing.assert_array_equal(pooled.obstacle, local.obstacle)
    assert [v.to_dict() for v in reports[0].variants] == [v.to_dict() for v in reports[1].variants]
    assert reports[0].variants[0].by_kind["collision"].samples == 1  # the long part hits the fixture
    assert reports[0].variants[-1].by_kind["collision"].samples == 0
