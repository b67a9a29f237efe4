# SPDX-License-Identifier: Apache-2.0
"""`RobotModel`: the articulation as plain NumPy arrays, and its forward kinematics.

A model is immutable (its arrays are read-only) so the live twin, the what-if engine and the views
can share one instance across threads without copying.

Kinematic convention (the one UsdPhysics and PhysX use for a joint between bodies 0 and 1):
every link ``i`` is attached to its parent ``p = link_parent[i]`` (``-1`` is the world) by one joint
with frame ``J``; ``joint_parent_frame[i]`` is ``X_pJ`` (localPos0/localRot0), ``joint_child_frame[i]``
is ``X_iJ`` (localPos1/localRot1), and the joint moves frame ``J1`` relative to ``J0`` by
``M(q) = Rot(joint_axis[i], q)`` (revolute) or ``Trans(joint_axis[i] * q)`` (prismatic), so

    X_world_i = X_world_p @ X_pJ @ M(q) @ inv(X_iJ)

Links are stored in topological order (a parent always precedes its children).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields

import numpy as np

from .. import TwinExtError
from ._transforms import axis_rotation, invert_transform, quat_to_matrix

__all__ = ["JointType", "RobotModel", "RobotModelError"]


class RobotModelError(TwinExtError, ValueError):
    """A robot description that cannot be used; the message names the prim and how to fix it.

    Attributes:
        prim_path: the USD prim at fault ("" when the problem is the file itself).
    """

    def __init__(self, message: str, *, prim_path: str = "") -> None:
        super().__init__(message)
        self.prim_path = prim_path


class JointType(enum.IntEnum):
    """Kind of the joint that attaches a link to its parent."""

    FIXED = 0
    REVOLUTE = 1
    PRISMATIC = 2


@dataclass(frozen=True, eq=False)
class RobotModel:
    """A fixed-base articulated robot: kinematic tree, joints, drives and inertias (SI units).

    Sizes: ``nlink`` rigid bodies (links), ``ndof`` revolute/prismatic joints. Angular quantities of
    revolute dofs are in rad, linear ones of prismatic dofs in m; "rad|m" below means "per dof type".
    """

    # ---- identity -------------------------------------------------------------------------------
    name: str
    """Name of the articulation root's top-level prim (e.g. ``"panda"``)."""
    source: str
    """Path of the USD file the model was read from."""
    root_path: str
    """Prim path of the articulation root."""

    # ---- links (topological order) --------------------------------------------------------------
    link_names: tuple[str, ...]
    """``[nlink]`` prim names of the rigid bodies."""
    link_paths: tuple[str, ...]
    """``[nlink]`` prim paths of the rigid bodies."""
    link_parent: np.ndarray
    """``[nlink]`` int, index of the parent link; ``-1`` for a link attached to the world."""
    link_dof: np.ndarray
    """``[nlink]`` int, index of the dof that moves the link relative to its parent; ``-1`` if fixed."""

    # ---- the joint attaching each link to its parent ---------------------------------------------
    joint_names: tuple[str, ...]
    """``[nlink]`` name of each link's inbound joint prim (``""`` if the link has none: welded at its
    authored pose)."""
    joint_type: np.ndarray
    """``[nlink]`` int `JointType` of each link's inbound joint."""
    joint_axis: np.ndarray
    """``[nlink, 3]`` unit joint axis in the joint frame (zeros for fixed joints)."""
    joint_parent_frame: np.ndarray
    """``[nlink, 4, 4]`` joint frame in the parent link's frame (in the world for root links), m."""
    joint_child_frame: np.ndarray
    """``[nlink, 4, 4]`` joint frame in the link's own frame, m."""

    # ---- degrees of freedom (tree order) ----------------------------------------------------------
    dof_names: tuple[str, ...]
    """``[ndof]`` joint prim names of the moving joints; telemetry names must match these."""
    dof_paths: tuple[str, ...]
    """``[ndof]`` joint prim paths."""
    dof_link: np.ndarray
    """``[ndof]`` int, the link each dof moves."""
    dof_type: np.ndarray
    """``[ndof]`` int `JointType` (REVOLUTE or PRISMATIC)."""
    lower: np.ndarray
    """``[ndof]`` lower position limit, rad|m (``-inf`` if unlimited)."""
    upper: np.ndarray
    """``[ndof]`` upper position limit, rad|m (``+inf`` if unlimited)."""
    velocity_limit: np.ndarray
    """``[ndof]`` max joint speed, rad/s | m/s (``inf`` if not authored)."""
    effort_limit: np.ndarray
    """``[ndof]`` max drive effort, N·m | N (``inf`` if not authored)."""
    kp: np.ndarray
    """``[ndof]`` drive stiffness, N·m/rad | N/m (0 where there is no drive)."""
    kd: np.ndarray
    """``[ndof]`` drive damping, N·m·s/rad | N·s/m (0 where there is no drive)."""
    drive_target: np.ndarray
    """``[ndof]`` drive's authored default target position, rad|m."""
    has_drive: np.ndarray
    """``[ndof]`` bool, whether a position drive was found for the dof."""
    armature: np.ndarray
    """``[ndof]`` reflected rotor inertia added to the mass matrix diagonal, kg·m² | kg."""
    damping: np.ndarray
    """``[ndof]`` passive viscous damping, N·m·s/rad | N·s/m."""
    friction: np.ndarray
    """``[ndof]`` Coulomb (dry) friction effort, N·m | N."""
    mimic_leader: np.ndarray
    """``[ndof]`` int, dof this dof follows (``q = mimic_offset + mimic_gear * q_leader``), ``-1`` if none."""
    mimic_gear: np.ndarray
    """``[ndof]`` mimic multiplier (1 where there is no mimic)."""
    mimic_offset: np.ndarray
    """``[ndof]`` mimic offset, rad|m."""

    # ---- inertia ---------------------------------------------------------------------------------
    mass: np.ndarray
    """``[nlink]`` link mass, kg (0 for a massless link)."""
    com: np.ndarray
    """``[nlink, 3]`` centre of mass in the link frame, m."""
    inertia_diag: np.ndarray
    """``[nlink, 3]`` principal moments of inertia about the COM, kg·m²."""
    inertia_axes: np.ndarray
    """``[nlink, 4]`` principal axes as a quaternion (w, x, y, z) in the link frame."""

    gravity: np.ndarray = field(default_factory=lambda: np.array([0.0, 0.0, -9.81]))
    """``[3]`` gravity in the world frame, m/s²."""
    notes: tuple[str, ...] = ()
    """Non-fatal findings from loading (e.g. a massless link, a drive mapped from a MuJoCo actuator)."""
    drive_source: tuple[str, ...] = ()
    """``[ndof]`` where each dof's ``kp``/``kd`` came from (``"PhysicsDriveAPI:angular"``, ``"MjcActuator ..."``,
    ``"config [robot.drives]"``, ``"config drive_rule ..."``, ``"none"``); empty when not recorded."""
    effort_source: tuple[str, ...] = ()
    """``[ndof]`` the attribute (or setting) each dof's ``effort_limit`` came from (``"none"``: unlimited)."""

    def __post_init__(self) -> None:
        # Freeze every array so a shared model can never be mutated behind a reader's back.
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, np.ndarray):
                value.setflags(write=False)

    # ---- sizes and look-ups ------------------------------------------------------------------------
    @property
    def nlink(self) -> int:
        """Number of links (rigid bodies)."""
        return len(self.link_names)

    @property
    def ndof(self) -> int:
        """Number of degrees of freedom."""
        return len(self.dof_names)

    @property
    def total_mass(self) -> float:
        """Sum of link masses, kg."""
        return float(self.mass.sum())

    @property
    def inertia(self) -> np.ndarray:
        """``[nlink, 3, 3]`` inertia tensors about each link's COM, in the link frame, kg·m²."""
        rot = quat_to_matrix(self.inertia_axes)
        return rot @ (self.inertia_diag[:, :, None] * np.swapaxes(rot, -1, -2))

    def dof_index(self, name: str) -> int:
        """Index of the dof named ``name``; `KeyError` listing the known names otherwise."""
        try:
            return self.dof_names.index(name)
        except ValueError:
            raise KeyError(f"unknown joint {name!r}; this robot's joints are {list(self.dof_names)}") from None

    def link_index(self, name: str) -> int:
        """Index of the link named ``name`` (prim name or path)."""
        for i, (n, p) in enumerate(zip(self.link_names, self.link_paths, strict=False)):
            if name in (n, p):
                return i
        raise KeyError(f"unknown link {name!r}; this robot's links are {list(self.link_names)}")

    # ---- kinematics ----------------------------------------------------------------------------------
    def joint_motion(self, q: np.ndarray) -> np.ndarray:
        """Joint transforms ``M(q)`` of every link's inbound joint.

        Args:
            q: ``[ndof]`` or ``[nbatch, ndof]`` joint positions, rad|m.

        Returns:
            ``[nlink, 4, 4]`` or ``[nbatch, nlink, 4, 4]`` (identity for fixed joints).
        """
        q = self._check_q(q)
        batch = q.shape[:-1]
        out = np.broadcast_to(np.eye(4), batch + (self.nlink, 4, 4)).copy()
        for i in range(self.nlink):
            d = self.link_dof[i]
            if d < 0:
                continue
            if self.joint_type[i] == JointType.REVOLUTE:
                out[..., i, :3, :3] = axis_rotation(self.joint_axis[i], q[..., d])
            else:
                out[..., i, :3, 3] = self.joint_axis[i] * q[..., d, None]
        return out

    def link_poses(self, q: np.ndarray) -> np.ndarray:
        """World transforms of all links at joint positions ``q``.

        Args:
            q: ``[ndof]`` or ``[nbatch, ndof]`` joint positions, rad|m.

        Returns:
            ``[nlink, 4, 4]`` or ``[nbatch, nlink, 4, 4]`` link-to-world transforms (m).
        """
        motion = self.joint_motion(q)
        child_inv = invert_transform(self.joint_child_frame)
        local = self.joint_parent_frame @ motion @ child_inv
        out = np.empty_like(local)
        for i in range(self.nlink):
            p = self.link_parent[i]
            out[..., i, :, :] = local[..., i, :, :] if p < 0 else out[..., p, :, :] @ local[..., i, :, :]
        return out

    def com_positions(self, q: np.ndarray) -> np.ndarray:
        """World positions of link centres of mass: ``[.., nlink, 3]`` m for ``q: [.., ndof]``."""
        poses = self.link_poses(q)
        return np.einsum("...ij,...j->...i", poses[..., :3, :3], self.com) + poses[..., :3, 3]

    def clip_to_limits(self, q: np.ndarray) -> np.ndarray:
        """``q`` clipped into ``[lower, upper]``; same shape as ``q`` (rad|m)."""
        return np.clip(q, self.lower, self.upper)

    def _check_q(self, q: np.ndarray) -> np.ndarray:
        arr = np.asarray(q, dtype=np.float64)
        if arr.ndim not in (1, 2) or arr.shape[-1] != self.ndof:
            raise ValueError(
                f"q must have shape [{self.ndof}] or [nbatch, {self.ndof}] for {self.name} "
                f"(joints {list(self.dof_names)}); got {arr.shape}"
            )
        return arr

    # ---- description ---------------------------------------------------------------------------------
    def describe(self) -> str:
        """A human-readable table of joints (limits, drives, where the gains came from) and links (masses).

        Name columns are as wide as the longest name, so long joint and link names never run together.
        """
        deg = np.degrees
        wj = max([len("name"), *map(len, self.dof_names)]) + 2
        wl = max([len("name"), len("<world>"), *map(len, self.link_names)]) + 2
        wk = max([len("joint"), len("<welded>"), *map(len, self.joint_names)]) + 2
        lines = [
            f"robot {self.name!r} from {self.source}",
            f"  articulation root {self.root_path}: {self.nlink} links, {self.ndof} dofs, "
            f"total mass {self.total_mass:.4f} kg, gravity {np.round(self.gravity, 4).tolist()} m/s^2",
            "  joints:",
            f"    {'name':<{wj}}{'type':<10}{'lower':>10}{'upper':>10}{'vmax':>9}{'effort':>9}"
            f"{'kp':>10}{'kd':>9}{'armat.':>8}{'damp.':>8}{'fric.':>7}",
        ]
        for d in range(self.ndof):
            revolute = self.dof_type[d] == JointType.REVOLUTE
            unit = "deg" if revolute else "m"
            lo, hi = (deg(self.lower[d]), deg(self.upper[d])) if revolute else (self.lower[d], self.upper[d])
            lines.append(
                f"    {self.dof_names[d]:<{wj}}{('revolute' if revolute else 'prismatic'):<10}"
                f"{lo:>10.3f}{hi:>10.3f}{self.velocity_limit[d]:>9.3f}{self.effort_limit[d]:>9.1f}"
                f"{self.kp[d]:>10.1f}{self.kd[d]:>9.2f}{self.armature[d]:>8.3f}{self.damping[d]:>8.3f}"
                f"{self.friction[d]:>7.3f}  ({unit}; vmax rad/s|m/s)"
            )
        if self.drive_source or self.effort_source:
            lines.append("  where the drive gains and effort limits came from:")
            lines.append(f"    {'name':<{wj}}{'gains (kp, kd)':<44}effort limit")
            for d in range(self.ndof):
                gains = self.drive_source[d] if d < len(self.drive_source) else "?"
                effort = self.effort_source[d] if d < len(self.effort_source) else "?"
                lines.append(f"    {self.dof_names[d]:<{wj}}{gains:<44}{effort}")
        lines.append("  links:")
        lines.append(f"    {'name':<{wl}}{'parent':<{wl}}{'joint':<{wk}}{'mass kg':>10}  com m (link frame)")
        for i in range(self.nlink):
            p = self.link_parent[i]
            lines.append(
                f"    {self.link_names[i]:<{wl}}{(self.link_names[p] if p >= 0 else '<world>'):<{wl}}"
                f"{(self.joint_names[i] or '<welded>'):<{wk}}{self.mass[i]:>10.4f}  "
                f"{np.round(self.com[i], 5).tolist()}"
            )
        for note in self.notes:
            lines.append(f"  note: {note}")
        return "\n".join(lines)
