# SPDX-License-Identifier: Apache-2.0
"""Collision geometry from USD: sphere sets that contain each link, scene colliders with their transforms, the
self-collision filter. Reaches into `twin_ext.collision._robot_spheres.link_geometry` (hence ``_internals``)."""

from __future__ import annotations

import numpy as np
import pytest

from twin_ext.collision import CollisionGeometryError, SceneError, load_scene, robot_spheres, sphere_excess
from twin_ext.collision._robot_spheres import link_geometry
from twin_ext.robot import default_robot_path, load_robot

SCENE = """#usda 1.0
(
    metersPerUnit = 0.01
    upAxis = "Z"
)
def Xform "World"
{
    def Xform "Rig"
    {
        double3 xformOp:translate = (100, 0, 0)
        double3 xformOp:rotateXYZ = (0, 0, 90)
        uniform token[] xformOpOrder = ["xformOp:translate", "xformOp:rotateXYZ"]
        def Cube "Box" (prepend apiSchemas = ["PhysicsCollisionAPI"])
        {
            double size = 2
            double3 xformOp:translate = (10, 0, 5)
            float3 xformOp:scale = (1, 2, 3)
            uniform token[] xformOpOrder = ["xformOp:translate", "xformOp:scale"]
        }
    }
    def Sphere "Ball" (prepend apiSchemas = ["PhysicsCollisionAPI"])
    {
        double radius = 5
        double3 xformOp:translate = (0, 50, 50)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
    def Capsule "Rod" (prepend apiSchemas = ["PhysicsCollisionAPI"])
    {
        uniform token axis = "X"
        double radius = 2
        double height = 20
    }
    def Cylinder "Drum" (prepend apiSchemas = ["PhysicsCollisionAPI"])
    {
        uniform token axis = "Y"
        double radius = 10
        double height = 30
        double3 xformOp:translate = (0, -50, 0)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
    def Mesh "Ramp" (prepend apiSchemas = ["PhysicsCollisionAPI"])
    {
        int[] faceVertexCounts = [4, 3]
        int[] faceVertexIndices = [0, 1, 2, 3, 0, 1, 4]
        point3f[] points = [(0, 0, 0), (10, 0, 0), (10, 10, 0), (0, 10, 0), (0, 0, 10)]
        double3 xformOp:translate = (0, 0, 100)
        uniform token[] xformOpOrder = ["xformOp:translate"]
    }
    def Cube "Decoration"
    {
    }
    def Cube "Disabled" (prepend apiSchemas = ["PhysicsCollisionAPI"])
    {
        bool physics:collisionEnabled = false
    }
    def Cone "Cone" (prepend apiSchemas = ["PhysicsCollisionAPI"])
    {
    }
    def Xform "panda"
    {
        def Sphere "RobotPart" (prepend apiSchemas = ["PhysicsCollisionAPI"])
        {
        }
    }
}
"""


@pytest.fixture(scope="module")
def panda():
    return load_robot(default_robot_path())


@pytest.fixture(scope="module")
def spheres(panda):
    return robot_spheres(panda, spheres_per_link=12, home_clearance=0.01)


def _surface_points(tri: np.ndarray, per_triangle: int, rng) -> np.ndarray:
    """Corners, edge midpoints and random barycentric points of every triangle, m."""
    u = rng.random((len(tri), per_triangle, 2))
    flip = u.sum(axis=2) > 1
    u[flip] = 1 - u[flip]
    inner = (
        tri[:, None, 0]
        + u[..., :1] * (tri[:, None, 1] - tri[:, None, 0])
        + u[..., 1:] * (tri[:, None, 2] - tri[:, None, 0])
    )
    mids = (tri + np.roll(tri, -1, axis=1)) / 2
    return np.concatenate([tri.reshape(-1, 3), mids.reshape(-1, 3), inner.reshape(-1, 3)])


def test_every_link_surface_lies_inside_its_spheres(panda, spheres):
    """Conservative: every sampled point of every link's collision surface lies inside one of its spheres."""
    tris, balls, _ = link_geometry(panda)
    rng = np.random.default_rng(0)
    for i, tri in enumerate(tris):
        if not len(tri):
            continue
        pts = _surface_points(tri, 8, rng)
        mine = spheres.sphere_link == i
        c, r = spheres.centres[mine], spheres.radii[mine]
        inside = (np.linalg.norm(pts[:, None] - c[None], axis=2) - r[None]).min(axis=1)
        assert inside.max() <= 1e-9, (panda.link_names[i], inside.max())


def test_the_stated_excess_bounds_how_far_the_spheres_reach(panda, spheres):
    """The excess per link (what docs/whatif.md states: <= 33 mm, most links ~16-25 mm) holds on a 4x denser
    resample of the spheres' outer boundary, within 1 mm (the sampling of the bound itself)."""
    tris, _, _ = link_geometry(panda)
    for i, tri in enumerate(tris):
        if not len(tri):
            assert spheres.excess[i] == 0.0
            continue
        mine = spheres.sphere_link == i
        dense = sphere_excess(spheres.centres[mine], spheres.radii[mine], tri, samples=1024)
        assert dense <= spheres.excess[i] + 1e-3, (panda.link_names[i], dense, spheres.excess[i])
        assert spheres.excess[i] < 0.035, (panda.link_names[i], spheres.excess[i])


def test_self_pairs_leave_out_adjacent_links_fingers_home_contacts_and_allowed_pairs(panda):
    """Adjacent bodies (welded links merged), the gripper's fingers and an allowed pair are filtered; far pairs
    such as link1-hand stay; an allowed pair naming an unknown link is refused with the robot's links."""
    s = robot_spheres(panda, allowed=[["link1", "link4"]], home_clearance=0.01)
    checked = {frozenset((panda.link_names[a], panda.link_names[b])) for a, b in s.self_pairs}
    why = {frozenset((a, b)): reason for a, b, reason in s.filtered_pairs}
    assert why[frozenset(("link7", "hand"))] == "adjacent"  # hand is welded to link8, welded to link7
    assert why[frozenset(("link6", "hand"))] == "adjacent"
    assert why[frozenset(("left_finger", "right_finger"))] == "gripper fingers"
    assert why[frozenset(("link1", "link4"))] == "allowed"
    assert frozenset(("link1", "hand")) in checked and frozenset(("link2", "left_finger")) in checked
    assert not s.scene_links[panda.link_index("link0")] and s.scene_links[panda.link_index("hand")]
    with pytest.raises(CollisionGeometryError, match="unknown link 'link9'.*link0"):
        robot_spheres(panda, allowed=[["link9", "hand"]])


def test_scene_colliders_come_with_world_transforms_in_metres(tmp_path):
    """Cube (scaled, under a rotated parent), Sphere, Capsule (axis X), Cylinder (axis Y) and Mesh (faces
    triangulated) with CollisionAPI become colliders in metres (stage in cm); prims without the API, disabled or
    unsupported ones (noted), and the excluded robot subtree are left out."""
    path = tmp_path / "scene.usda"
    path.write_text(SCENE)
    scene = load_scene(path, exclude=("/World/panda",))
    by = {c.path.rsplit("/", 1)[1]: c for c in scene.colliders}
    assert sorted(by) == ["Ball", "Box", "Drum", "Ramp", "Rod"]
    box = by["Box"]
    assert box.kind == "box"
    np.testing.assert_allclose(box.size, [0.01, 0.02, 0.03], atol=1e-12)  # size 2 cm x scale / 2
    np.testing.assert_allclose(box.pose[:3, 3], [1.0, 0.1, 0.05], atol=1e-9)  # (10, 0, 5) cm turned 90 deg about z
    np.testing.assert_allclose(box.pose[:3, 0], [0, 1, 0], atol=1e-9)
    assert by["Ball"].size[0] == pytest.approx(0.05)
    rod = by["Rod"]
    assert rod.kind == "capsule" and rod.size[:2] == pytest.approx([0.02, 0.10])
    np.testing.assert_allclose(rod.pose[:3, 2], [1, 0, 0], atol=1e-12)  # the shape's axis is the frame's z
    drum = by["Drum"]
    assert drum.kind == "cylinder" and drum.size[:2] == pytest.approx([0.10, 0.15])
    np.testing.assert_allclose(drum.pose[:3, 2], [0, 1, 0], atol=1e-12)
    ramp = by["Ramp"]
    assert ramp.triangles.shape == (3, 3)
    np.testing.assert_allclose(ramp.points[4], [0, 0, 1.1], atol=1e-9)
    notes = " ".join(scene.notes)
    assert "Disabled" in notes and "Cone" in notes
    with pytest.raises(SceneError, match="scene_root"):
        load_scene(path, root="/World/Nowhere")
    with pytest.raises(SceneError, match="does not exist"):
        load_scene(tmp_path / "missing.usda")
