# SPDX-License-Identifier: Apache-2.0
"""`ArticulatedTree`: a `RobotModel` reduced to what forward dynamics needs, as flat NumPy arrays.

The reduction (done once per robot, in float64):

* **One body per dof.** Links welded to their parent by fixed joints (Panda ``link8`` and ``hand``) are
  merged into the nearest moving ancestor: their masses, centres of mass and inertias are added to it
  (exact for rigid welds). Links welded to the world (``link0``) carry no dynamics and are dropped.
  Body ``b`` is moved by dof ``b``, so bodies share the dof order of the model.
* **Joint axis along z.** Body ``b``'s frame is the joint's child-side frame rotated so the joint axis is
  its z axis. Then the world pose of body ``b`` is ``X_w,b = X_w,parent @ X_parent,b0 @ Z(q_b)`` with
  a constant ``X_parent,b0`` (`parent_rotation`, `parent_translation`) and ``Z(q)`` a rotation about z
  (revolute) or a translation along z (prismatic): the kernels never need a general axis-angle rotation.
* **Inertia about the body origin.** Each body stores ``mass``, first moment ``h = mass * com`` and the
  rotational inertia about its own origin ``I_o`` (all in its frame), which is what the world-frame
  recursive algorithms consume; a payload is added with `add_payload` by the same parallel-axis rule.

Attachment points given in a link's frame (payload COMs, perturbation points) are mapped into the body
frame with `link_to_body`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ._model import JointType, RobotModel

__all__ = ["ArticulatedTree", "tree_from_robot", "inertia_about_origin"]


def _axis_to_z_rotation(axis: np.ndarray) -> np.ndarray:
    """A rotation ``A`` whose third column is the unit ``axis`` (so ``A @ e_z = axis``)."""
    z = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(z[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    x = np.cross(helper, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    if np.allclose(z, [0.0, 0.0, 1.0]):  # keep the identity when the axis already is z (readable frames)
        return np.eye(3)
    return np.stack([x, y, z], axis=1)


def inertia_about_origin(mass: float, com: np.ndarray, inertia_com: np.ndarray) -> np.ndarray:
    """Rotational inertia about the frame origin from the one about the COM (parallel-axis rule).

    Args:
        mass: kg. com: ``[3]`` m, in the frame. inertia_com: ``[3, 3]`` kg·m² about the COM, in the frame.

    Returns:
        ``[3, 3]`` kg·m².
    """
    c = np.asarray(com, dtype=np.float64)
    return inertia_com + mass * (np.dot(c, c) * np.eye(3) - np.outer(c, c))


@dataclass(frozen=True, eq=False)
class ArticulatedTree:
    """Moving bodies of a fixed-base tree, one per dof, in dof order (float64, SI).

    Attributes:
        ndof: number of dofs = number of bodies ``nb``.
        parent: ``[nb]`` int32, parent body (``-1``: attached to the world); ``parent[b] < b``.
        joint_type: ``[nb]`` int32, 1 revolute (about body z), 2 prismatic (along body z).
        parent_rotation: ``[nb, 3, 3]`` rotation of body ``b`` at ``q_b = 0`` in its parent's frame.
        parent_translation: ``[nb, 3]`` m, origin of body ``b`` in its parent's frame.
        mass: ``[nb]`` kg. first_moment: ``[nb, 3]`` kg·m (mass * COM in the body frame).
        inertia_origin: ``[nb, 3, 3]`` kg·m² about the body origin, body frame.
        gravity: ``[3]`` m/s² in the world.
        link_body: ``[nlink]`` int32, the body each model link moved with (``-1``: welded to the world).
        link_in_body: ``[nlink, 4, 4]`` pose of each link frame in its body's frame.
        depth: longest ancestor chain (for cost estimates).
    """

    ndof: int
    parent: np.ndarray
    joint_type: np.ndarray
    parent_rotation: np.ndarray
    parent_translation: np.ndarray
    mass: np.ndarray
    first_moment: np.ndarray
    inertia_origin: np.ndarray
    gravity: np.ndarray
    link_body: np.ndarray
    link_in_body: np.ndarray
    depth: int

    def link_to_body(self, link: int, point: np.ndarray) -> tuple[int, np.ndarray]:
        """Map ``point [3]`` m in link ``link``'s frame to ``(body, point in body frame)``."""
        b = int(self.link_body[link])
        x = self.link_in_body[link]
        return b, x[:3, :3] @ np.asarray(point, dtype=np.float64) + x[:3, 3]

    def link_rotation_in_body(self, link: int) -> np.ndarray:
        """``[3, 3]`` orientation of link ``link``'s frame in its body's frame."""
        return self.link_in_body[link][:3, :3]

    def add_payload(
        self,
        mass: np.ndarray,
        first_moment: np.ndarray,
        inertia_origin: np.ndarray,
        *,
        body: int,
        payload_mass: float,
        payload_com: np.ndarray,
        payload_inertia: np.ndarray,
    ) -> None:
        """Add a rigid payload to ``body`` in the given (writable) inertia arrays, in place.

        Args:
            mass, first_moment, inertia_origin: ``[nb]``, ``[nb, 3]``, ``[nb, 3, 3]`` arrays to update.
            body: body index. payload_mass: kg (>= 0). payload_com: ``[3]`` m in the body frame.
            payload_inertia: ``[3, 3]`` kg·m² about the payload's COM, in the body frame.
        """
        com = np.asarray(payload_com, dtype=np.float64)
        mass[body] += payload_mass
        first_moment[body] += payload_mass * com
        inertia_origin[body] += inertia_about_origin(payload_mass, com, np.asarray(payload_inertia, dtype=np.float64))


def tree_from_robot(robot: RobotModel) -> ArticulatedTree:
    """Reduce ``robot`` to an `ArticulatedTree` (see the module docstring).

    Raises:
        ValueError: the dof order is not topological, or a dof's subtree has no inertia at all.
    """
    n = robot.ndof
    q0 = np.zeros(n)
    poses = robot.link_poses(q0)  # [nlink, 4, 4] world poses at q = 0
    nlink = robot.nlink

    # The body frame of each moving link, in the world at q = 0: joint child frame with the axis on z.
    body_world = np.zeros((n, 4, 4))
    align = np.zeros((n, 3, 3))
    for d in range(n):
        link = int(robot.dof_link[d])
        align[d] = _axis_to_z_rotation(robot.joint_axis[link])
        frame = poses[link] @ robot.joint_child_frame[link]
        frame[:3, :3] = frame[:3, :3] @ align[d]
        body_world[d] = frame

    # Which body each link rides on: its own dof, or (welded) its nearest moving ancestor's.
    link_body = np.full(nlink, -1, dtype=np.int32)
    for i in range(nlink):
        d = int(robot.link_dof[i])
        if d >= 0:
            link_body[i] = d
        else:
            p = int(robot.link_parent[i])
            link_body[i] = link_body[p] if p >= 0 else -1

    parent = np.full(n, -1, dtype=np.int32)
    for d in range(n):
        link = int(robot.dof_link[d])
        p = int(robot.link_parent[link])
        parent[d] = link_body[p] if p >= 0 else -1
        if parent[d] >= d:
            raise ValueError(
                f"dof {robot.dof_names[d]!r} comes before its parent dof in {robot.name}'s dof order; "
                "the loader must list dofs parent-first (topological order)"
            )

    parent_rotation = np.zeros((n, 3, 3))
    parent_translation = np.zeros((n, 3))
    for d in range(n):
        link = int(robot.dof_link[d])
        p_link = int(robot.link_parent[link])
        # Joint frame on the parent side, axis on z: the body frame at q_d = 0.
        parent_world = poses[p_link] if p_link >= 0 else np.eye(4)
        b0 = parent_world @ robot.joint_parent_frame[link]
        b0[:3, :3] = b0[:3, :3] @ align[d]
        ref = body_world[parent[d]] if parent[d] >= 0 else np.eye(4)
        rel = np.linalg.inv(ref) @ b0
        parent_rotation[d] = rel[:3, :3]
        parent_translation[d] = rel[:3, 3]

    link_in_body = np.zeros((nlink, 4, 4))
    for i in range(nlink):
        b = link_body[i]
        ref = body_world[b] if b >= 0 else np.eye(4)
        link_in_body[i] = np.linalg.inv(ref) @ poses[i]

    mass = np.zeros(n)
    first_moment = np.zeros((n, 3))
    inertia_origin = np.zeros((n, 3, 3))
    inertia = robot.inertia
    for i in range(nlink):
        b = link_body[i]
        if b < 0 or robot.mass[i] <= 0.0:
            continue
        rot = link_in_body[i][:3, :3]
        com = rot @ robot.com[i] + link_in_body[i][:3, 3]
        i_com = rot @ inertia[i] @ rot.T
        mass[b] += robot.mass[i]
        first_moment[b] += robot.mass[i] * com
        inertia_origin[b] += inertia_about_origin(robot.mass[i], com, i_com)

    depth = 0
    for d in range(n):
        k, j = 0, d
        while j >= 0:
            k, j = k + 1, int(parent[j])
        depth = max(depth, k)

    joint_type = np.array([1 if robot.dof_type[d] == JointType.REVOLUTE else 2 for d in range(n)], dtype=np.int32)
    tree = ArticulatedTree(
        ndof=n,
        parent=parent,
        joint_type=joint_type,
        parent_rotation=parent_rotation,
        parent_translation=parent_translation,
        mass=mass,
        first_moment=first_moment,
        inertia_origin=inertia_origin,
        gravity=np.asarray(robot.gravity, dtype=np.float64).copy(),
        link_body=link_body,
        link_in_body=link_in_body,
        depth=depth,
    )
    for arr in (
        parent,
        joint_type,
        parent_rotation,
        parent_translation,
        mass,
        first_moment,
        inertia_origin,
        tree.gravity,
        link_body,
        link_in_body,
    ):
        arr.setflags(write=False)
    return tree
