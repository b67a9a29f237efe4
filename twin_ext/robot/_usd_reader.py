# SPDX-License-Identifier: Apache-2.0
"""Read a UsdPhysics articulation from a USD file into a `RobotModel`.

What is read, and from where (first authored source wins, in the order listed):

=====================  =====================================================================================
quantity               attributes
=====================  =====================================================================================
articulation root      ``PhysicsArticulationRootAPI`` (on the robot's root prim or on its base link)
links                  prims with ``PhysicsRigidBodyAPI`` connected to the root through joints
joints                 ``PhysicsRevoluteJoint``, ``PhysicsPrismaticJoint``, ``PhysicsFixedJoint``;
                       ``physics:body0/body1``, ``physics:localPos0/1``, ``physics:localRot0/1``,
                       ``physics:axis``; skipped when ``physics:jointEnabled = false`` or
                       ``physics:excludeFromArticulation = true`` (loop closures)
position limits        ``physics:lowerLimit/upperLimit`` (degrees for revolute, stage units for prismatic)
drive                  ``PhysicsDriveAPI:angular|linear``: ``stiffness`` (per degree), ``damping``
                       (per degree), ``maxForce``, ``targetPosition`` (degrees); otherwise a MuJoCo
                       ``MjcActuator`` prim whose ``mjc:target`` is the joint and whose affine bias makes it a
                       position servo (``gainPrm[0] = -biasPrm[1] = kp``, ``kd = -biasPrm[2]``,
                       ``mjc:forceRange``, ``mjc:gear``)
effort limit           the smallest of: drive ``maxForce``; MuJoCo actuator ``mjc:forceRange`` (times
                       ``|mjc:gear|``; also of a torque motor, which gives no gains); joint
                       ``mjc:actuatorfrcrange``; Newton ``newton:maxEffort``; URDF ``urdf:limit:effort``
                       (urdf-usd-converter keeps the URDF ``<limit effort>`` there, in N·m | N; 0 = not set)
velocity limit         PhysX ``physxJoint:maxJointVelocity`` (deg/s), Newton ``newton:velocityLimit`` (deg/s),
                       URDF ``urdf:limit:velocity`` (rad/s | m/s, as in the URDF)
armature               PhysX ``physxJoint:armature``, Newton ``newton:armature``, MuJoCo ``mjc:armature``
passive damping        Newton ``newton:damping`` (per degree), MuJoCo ``mjc:damping`` (per radian), URDF
                       ``urdf:dynamics:damping`` (N·m·s/rad | N·s/m; written by older urdf-usd-converter versions)
Coulomb friction       Newton ``newton:friction``, MuJoCo ``mjc:frictionloss``, URDF ``urdf:dynamics:friction``
                       (N·m | N) (PhysX's ``physxJoint:jointFriction`` is a unitless coefficient of a
                       different model: not read)
mimic (coupled) joints Newton ``NewtonMimicAPI`` (``newton:mimicJoint``, ``newton:mimicCoef0/1``), PhysX
                       ``PhysxMimicJointAPI:<axis>`` (``physxMimicJoint:<axis>:referenceJoint``, ``gearing``,
                       ``offset``)
mass properties        ``PhysicsMassAPI``: ``physics:mass``, ``physics:centerOfMass``,
                       ``physics:diagonalInertia``, ``physics:principalAxes``; Newton's full tensor
                       ``newton:inertia`` (Ixx, Iyy, Izz, Ixy, Ixz, Iyz) overrides the last two when authored
gravity                ``PhysicsScene``: ``physics:gravityDirection``, ``physics:gravityMagnitude``;
                       otherwise 9.81 m/s² against the stage's up axis
units                  ``metersPerUnit``, ``kilogramsPerUnit`` stage metadata; everything is returned in SI
=====================  =====================================================================================

Mass is not computed from collision geometry and density (UsdPhysics' fallback when no mass is authored):
such links are loaded as massless and listed in `RobotModel.notes`.

``urdf:*`` attributes are the URDF's own values (SI whatever the stage units). Where each dof's drive gains
and effort limit came from is kept in `RobotModel.drive_source` / `RobotModel.effort_source` (shown by
``python -m twin_ext info``). A robot with no drives (a URDF conversion, MuJoCo torque motors) gets its gains
from the ``[robot]`` settings (`twin_ext.robot.apply_drive_settings`).
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from ._model import JointType, RobotModel, RobotModelError
from ._transforms import invert_transform, make_transform, matrix_to_quat

__all__ = ["load_robot"]

_DEG = math.pi / 180.0
_AXES = {"X": (1.0, 0.0, 0.0), "Y": (0.0, 1.0, 0.0), "Z": (0.0, 0.0, 1.0)}
_SUPPORTED = {
    "PhysicsRevoluteJoint": JointType.REVOLUTE,
    "PhysicsPrismaticJoint": JointType.PRISMATIC,
    "PhysicsFixedJoint": JointType.FIXED,
}
# UsdPhysics uses FLT_MAX-like sentinels for "no limit".
_HUGE = 1e29


@dataclass
class _Joint:
    path: str
    name: str
    kind: JointType
    body0: str | None  # None = the world
    body1: str | None
    frame0: np.ndarray  # [4,4] joint frame in body0 (or in the world if body0 is None)
    frame1: np.ndarray
    axis: np.ndarray  # [3]
    prim: object = field(repr=False, default=None)


def _applied_schemas(prim) -> list[str]:
    """Every API schema applied to ``prim``, registered or not (``GetAppliedSchemas`` hides schemas whose
    plugin is not loaded, e.g. PhysxSchema outside Kit)."""
    return list(prim.GetPrimTypeInfo().GetAppliedAPISchemas())


def load_robot(path: str | os.PathLike, *, prim_path: str | None = None, balance_inertia: bool = False) -> RobotModel:
    """Read the UsdPhysics articulation in ``path`` into a `RobotModel` (SI units).

    Args:
        path: a USD file (``.usd``, ``.usda``, ``.usdc``, ``.usdz``); payloads are loaded.
        prim_path: the articulation root to read (or an ancestor holding exactly one root) when the
            file holds several robots.
        balance_inertia: repair links whose principal moments violate the triangle inequality
            (``A + B >= C``) as MuJoCo's ``balanceinertia`` does -- all three moments become their mean --
            and list each repair in `RobotModel.notes`; by default such links are an error that lists them all.

    Raises:
        RobotModelError: the file is missing or unreadable; no articulation root, or several without
            ``prim_path``; a kinematic loop; an unsupported joint type; a joint whose bodies are missing;
            non-finite or non-positive mass or inertia; principal moments that violate the triangle
            inequality (every such link, with the violation in kg·m² and %); duplicate joint names. The
            message names the prim and the fix.
    """
    from pxr import Usd, UsdGeom, UsdPhysics  # noqa: F401  (UsdPhysics registers the schemas)

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise RobotModelError(
            f"robot USD not found: {path!r}; fix: check the path (robot.usd setting) or build the shipped "
            f"assets with `make usd`"
        )
    try:
        stage = Usd.Stage.Open(path, Usd.Stage.LoadAll)
    except Exception as exc:  # pxr raises Tf.ErrorException with the parser's message
        raise RobotModelError(
            f"cannot open {path!r} as USD: {str(exc).strip()}; fix: repair or re-export the file"
        ) from None
    if stage is None:
        raise RobotModelError(f"cannot open {path!r} as USD; fix: repair or re-export the file")
    return _Reader(stage, path, balance_inertia=balance_inertia).read(prim_path)


class _Reader:
    def __init__(self, stage, source: str, *, balance_inertia: bool = False) -> None:
        from pxr import UsdGeom, UsdPhysics

        self.stage = stage
        self.source = source
        self.balance_inertia = balance_inertia
        self._motor_effort: dict[str, float] = {}  # joint path -> effort limit of a non-servo MuJoCo actuator
        self.mpu = float(UsdGeom.GetStageMetersPerUnit(stage)) or 1.0
        self.kpu = float(UsdPhysics.GetStageKilogramsPerUnit(stage)) or 1.0
        self.notes: list[str] = []
        self._xform_cache = UsdGeom.XformCache()

    # ---------------------------------------------------------------------------------------------
    def read(self, prim_path: str | None) -> RobotModel:
        root = self._find_root(prim_path)
        scope, bodies = self._candidate_bodies(root)
        joints = self._joints(scope, bodies)
        links, parent_joint, parent_of = self._build_tree(root, bodies, joints)
        return self._assemble(root, links, parent_joint, parent_of, joints)

    # ---- articulation root ----------------------------------------------------------------------
    def _find_root(self, prim_path: str | None):
        from pxr import Usd

        roots = [
            p
            for p in self.stage.Traverse(Usd.TraverseInstanceProxies())
            if "PhysicsArticulationRootAPI" in _applied_schemas(p)
        ]
        if prim_path is not None:
            prim = self.stage.GetPrimAtPath(prim_path)
            if not prim or not prim.IsValid():
                raise RobotModelError(
                    f"prim {prim_path!r} does not exist in {self.source}; articulation roots in the file: "
                    f"{[str(r.GetPath()) for r in roots] or 'none'}",
                    prim_path=prim_path,
                )
            inside = [r for r in roots if r.GetPath().HasPrefix(prim.GetPath())]
            if not inside:
                raise RobotModelError(
                    f"{prim_path} is not and does not contain an articulation root; fix: apply "
                    f"UsdPhysics.ArticulationRootAPI to the robot's root prim or base link",
                    prim_path=prim_path,
                )
            if len(inside) > 1:
                raise RobotModelError(
                    f"{prim_path} contains several articulation roots {[str(r.GetPath()) for r in inside]}; "
                    f"fix: pass prim_path= one of them",
                    prim_path=prim_path,
                )
            return inside[0]
        if not roots:
            raise RobotModelError(
                f"no articulation root in {self.source}: no prim has PhysicsArticulationRootAPI; fix: apply "
                f"UsdPhysics.ArticulationRootAPI to the robot's root prim (or its base link), e.g. in Isaac Sim "
                f"Add > Physics > Articulation Root"
            )
        if len(roots) > 1:
            raise RobotModelError(
                f"{self.source} holds several articulation roots {[str(r.GetPath()) for r in roots]}; fix: pass "
                f"prim_path= the one to load (robot.prim_path setting)"
            )
        return roots[0]

    def _is_body(self, prim) -> bool:
        return bool(prim) and prim.IsValid() and "PhysicsRigidBodyAPI" in _applied_schemas(prim)

    def _candidate_bodies(self, root) -> tuple[str, dict[str, object]]:
        """(scope path, bodies): rigid bodies that may belong to the articulation — under the root prim, or,
        when the root API sits on a body, under that body's parent (its siblings are reached by joints)."""
        from pxr import Usd

        scope = root
        if self._is_body(root) and not root.GetParent().IsPseudoRoot():
            scope = root.GetParent()
        bodies = {}
        for prim in Usd.PrimRange(scope, Usd.TraverseInstanceProxies()):
            if self._is_body(prim):
                kinematic = prim.GetAttribute("physics:kinematicEnabled")
                if kinematic and kinematic.Get():
                    self.notes.append(f"{prim.GetPath()} is a kinematic body; treated as an ordinary link")
                bodies[str(prim.GetPath())] = prim
        if not bodies:
            raise RobotModelError(
                f"articulation root {root.GetPath()} has no rigid bodies under it; fix: apply "
                f"UsdPhysics.RigidBodyAPI to each link",
                prim_path=str(root.GetPath()),
            )
        return str(scope.GetPath()), bodies

    # ---- joints ---------------------------------------------------------------------------------
    def _joints(self, scope: str, bodies: dict[str, object]) -> list[_Joint]:
        from pxr import Usd, UsdPhysics

        joints = []
        for prim in self.stage.Traverse(Usd.TraverseInstanceProxies()):
            type_name = str(prim.GetTypeName())
            if not (prim.IsA(UsdPhysics.Joint) or (type_name.startswith("Physics") and type_name.endswith("Joint"))):
                continue
            path = str(prim.GetPath())
            b0, b1 = self._body_target(prim, "physics:body0"), self._body_target(prim, "physics:body1")
            touches = any(t is not None and t[0] in bodies for t in (b0, b1))
            if not touches and not (path + "/").startswith(scope.rstrip("/") + "/"):
                continue  # a joint of something else on the stage
            enabled = prim.GetAttribute("physics:jointEnabled")
            if enabled and enabled.HasAuthoredValue() and not enabled.Get():
                self.notes.append(f"joint {path} is disabled (physics:jointEnabled = false): ignored")
                continue
            exclude = prim.GetAttribute("physics:excludeFromArticulation")
            if exclude and exclude.Get():
                self.notes.append(f"joint {path} is excluded from the articulation (a loop closure): ignored")
                continue
            for rel, t in (("physics:body0", b0), ("physics:body1", b1)):
                if t is not None and t[1] == "missing":
                    raise RobotModelError(
                        f"joint {path} {rel} targets {t[0]}, which does not exist; fix: point it at a link "
                        f"(a prim with RigidBodyAPI) or leave it empty for the world",
                        prim_path=path,
                    )
            kind = _SUPPORTED.get(type_name)
            if kind is None:
                raise RobotModelError(
                    f"joint {path} is a {type_name or 'typeless joint'}; twin_ext supports revolute, prismatic and "
                    f"fixed joints; fix: model it as a chain of revolute/prismatic joints or lock it as a "
                    f"PhysicsFixedJoint",
                    prim_path=path,
                )
            body0 = b0[0] if b0 is not None and b0[1] == "body" else None
            body1 = b1[0] if b1 is not None and b1[1] == "body" else None
            if body0 is None and body1 is None:
                raise RobotModelError(
                    f"joint {path} connects no rigid bodies (physics:body0 and body1 are empty or not links); "
                    f"fix: point physics:body1 at the child link",
                    prim_path=path,
                )
            frame0 = self._joint_frame(prim, 0, b0)
            frame1 = self._joint_frame(prim, 1, b1)
            axis_attr = prim.GetAttribute("physics:axis")
            axis_token = str(axis_attr.Get()) if axis_attr and axis_attr.Get() is not None else "X"
            if kind != JointType.FIXED and axis_token not in _AXES:
                raise RobotModelError(
                    f"joint {path} has physics:axis {axis_token!r}; fix: use X, Y or Z", prim_path=path
                )
            axis = np.array(_AXES.get(axis_token, (0.0, 0.0, 0.0))) if kind != JointType.FIXED else np.zeros(3)
            joints.append(_Joint(path, prim.GetName(), kind, body0, body1, frame0, frame1, axis, prim))
        return joints

    def _body_target(self, prim, rel_name: str):
        """(path, kind) of a joint's body relationship: kind is 'body', 'anchor' (a non-body prim: the
        world at that prim's pose) or 'missing'; None when the relationship is empty (the world)."""
        rel = prim.GetRelationship(rel_name)
        targets = rel.GetTargets() if rel else []
        if not targets:
            return None
        target = self.stage.GetPrimAtPath(targets[0])
        path = str(targets[0])
        if not target or not target.IsValid():
            return (path, "missing")
        return (path, "body" if self._is_body(target) else "anchor")

    def _world_matrix(self, prim_path: str) -> np.ndarray:
        """World transform (column-vector convention, m) of a prim."""
        prim = self.stage.GetPrimAtPath(prim_path)
        gf = self._xform_cache.GetLocalToWorldTransform(prim)
        m = np.array(gf, dtype=np.float64).T
        m[:3, 3] *= self.mpu
        return m

    def _rigid_and_scale(self, prim_path: str) -> tuple[np.ndarray, np.ndarray]:
        """(rigid world transform [4,4], per-axis scale [3]) of a prim."""
        m = self._world_matrix(prim_path)
        scale = np.linalg.norm(m[:3, :3], axis=0)
        rigid = m.copy()
        rigid[:3, :3] = m[:3, :3] / scale
        return rigid, scale

    def _joint_frame(self, prim, side: int, target) -> np.ndarray:
        pos_attr = prim.GetAttribute(f"physics:localPos{side}")
        rot_attr = prim.GetAttribute(f"physics:localRot{side}")
        pos = np.array(pos_attr.Get() if pos_attr and pos_attr.Get() is not None else (0, 0, 0), dtype=np.float64)
        rot = rot_attr.Get() if rot_attr and rot_attr.Get() is not None else None
        quat = (
            np.array([rot.GetReal(), *rot.GetImaginary()], dtype=np.float64)
            if rot is not None
            else np.array([1.0, 0, 0, 0])
        )
        if not (np.all(np.isfinite(pos)) and np.all(np.isfinite(quat)) and np.linalg.norm(quat) > 1e-9):
            raise RobotModelError(
                f"joint {prim.GetPath()} has a non-finite physics:localPos{side}/localRot{side}; fix: author a "
                f"finite position and a non-zero quaternion",
                prim_path=str(prim.GetPath()),
            )
        pos = pos * self.mpu
        if target is None:
            return make_transform(pos, quat)
        rigid, scale = self._rigid_and_scale(target[0])
        # localPos is expressed in the body's local space, which includes the body's scale.
        frame = make_transform(pos * scale, quat)
        return frame if target[1] == "body" else rigid @ frame

    # ---- tree -----------------------------------------------------------------------------------
    def _build_tree(self, root, bodies, joints):
        """Breadth-first from the world: returns link paths in topological order, the joint (and its
        orientation) attaching each link, and each link's parent path."""
        incident: dict[str | None, list[int]] = {}
        for j, joint in enumerate(joints):
            incident.setdefault(joint.body0, []).append(j)
            incident.setdefault(joint.body1, []).append(j)
        order: list[str] = []
        parent_joint: dict[str, tuple[int, bool]] = {}  # link -> (joint index, reversed)
        parent_of: dict[str, str | None] = {}
        used: set[int] = set()
        queue: deque[str | None] = deque([None])
        if not incident.get(None):
            # No joint to the world: the base link is welded at its authored pose (a floating base is held).
            base = str(root.GetPath()) if self._is_body(root) else self._topmost_body(bodies)
            self.notes.append(f"no joint attaches {base} to the world: it is held fixed at its authored pose")
            order.append(base)
            parent_of[base] = None
            queue = deque([base])
        while queue:
            node = queue.popleft()
            for j in incident.get(node, []):
                if j in used:
                    continue
                joint = joints[j]
                used.add(j)
                reversed_ = joint.body0 != node
                child = joint.body0 if reversed_ else joint.body1
                if child is None:
                    continue
                if child in parent_of:
                    first = joints[parent_joint[child][0]].path if child in parent_joint else "its placement"
                    raise RobotModelError(
                        f"kinematic loop: link {child} is reached by joint {joint.path} and by {first}; fix: set "
                        f"physics:excludeFromArticulation = true on the joint that closes the loop",
                        prim_path=joint.path,
                    )
                parent_joint[child] = (j, reversed_)
                parent_of[child] = node
                order.append(child)
                queue.append(child)
        for j, joint in enumerate(joints):
            if j not in used and (joint.body0 in parent_of or joint.body1 in parent_of):
                raise RobotModelError(
                    f"kinematic loop through joint {joint.path}; fix: set physics:excludeFromArticulation = true "
                    f"on the joint that closes the loop",
                    prim_path=joint.path,
                )
        stray = [b for b in bodies if b not in parent_of]
        if stray:
            raise RobotModelError(
                f"link(s) {stray} are under articulation root {root.GetPath()} but no joint connects them to the "
                f"robot; fix: add the missing joint(s) or move the bodies out of the articulation",
                prim_path=stray[0],
            )
        return order, parent_joint, parent_of

    def _topmost_body(self, bodies) -> str:
        return min(bodies, key=lambda p: (p.count("/"), p))

    # ---- assembly --------------------------------------------------------------------------------
    def _assemble(self, root, order, parent_joint, parent_of, joints) -> RobotModel:
        nlink = len(order)
        index = {p: i for i, p in enumerate(order)}
        link_parent = np.full(nlink, -1, dtype=np.int32)
        joint_type = np.zeros(nlink, dtype=np.int32)
        joint_axis = np.zeros((nlink, 3))
        parent_frame = np.tile(np.eye(4), (nlink, 1, 1))
        child_frame = np.tile(np.eye(4), (nlink, 1, 1))
        joint_names = [""] * nlink
        link_dof = np.full(nlink, -1, dtype=np.int32)
        dof_joints: list[_Joint] = []
        for i, link in enumerate(order):
            parent = parent_of[link]
            link_parent[i] = index[parent] if parent is not None else -1
            if link not in parent_joint:  # welded root
                rigid, _ = self._rigid_and_scale(link)
                parent_frame[i] = rigid
                continue
            j, reversed_ = parent_joint[link]
            joint = joints[j]
            parent_frame[i], child_frame[i] = (
                (joint.frame1, joint.frame0) if reversed_ else (joint.frame0, joint.frame1)
            )
            joint_type[i] = joint.kind
            joint_axis[i] = -joint.axis if reversed_ else joint.axis
            joint_names[i] = joint.name
            if joint.kind != JointType.FIXED:
                link_dof[i] = len(dof_joints)
                dof_joints.append(joint)

        dof_names = tuple(j.name for j in dof_joints)
        dupes = sorted({n for n in dof_names if dof_names.count(n) > 1})
        if dupes:
            paths = [j.path for j in dof_joints if j.name in dupes]
            raise RobotModelError(
                f"joint names must be unique (telemetry addresses joints by name); duplicated: {dupes} at {paths}; "
                f"fix: rename the joint prims",
                prim_path=paths[0],
            )

        dofs = self._dof_properties(dof_joints)
        inertial = self._inertials(order)
        self._check_pose_consistency(order, parent_frame, child_frame, link_parent)

        name_prim = root
        while not name_prim.GetParent().IsPseudoRoot():
            name_prim = name_prim.GetParent()
        return RobotModel(
            name=name_prim.GetName(),
            source=os.path.abspath(self.source),
            root_path=str(root.GetPath()),
            link_names=tuple(p.rsplit("/", 1)[-1] for p in order),
            link_paths=tuple(order),
            link_parent=link_parent,
            link_dof=link_dof,
            joint_names=tuple(joint_names),
            joint_type=joint_type,
            joint_axis=joint_axis,
            joint_parent_frame=parent_frame,
            joint_child_frame=child_frame,
            dof_names=dof_names,
            dof_paths=tuple(j.path for j in dof_joints),
            dof_link=np.flatnonzero(link_dof >= 0).astype(np.int32),
            dof_type=np.array([j.kind for j in dof_joints], dtype=np.int32),
            gravity=self._gravity(),
            notes=tuple(self.notes),
            **dofs,
            **inertial,
        )

    def _attr(self, prim, name: str):
        attr = prim.GetAttribute(name)
        if attr and attr.HasAuthoredValue():
            return attr.Get()
        return None

    def _first(self, prim, names):
        for n in names:
            v = self._attr(prim, n)
            if v is not None:
                return v, n
        return None, None

    def _dof_properties(self, dof_joints: list[_Joint]) -> dict[str, np.ndarray]:
        n = len(dof_joints)
        out = {
            k: np.zeros(n)
            for k in (
                "lower",
                "upper",
                "velocity_limit",
                "effort_limit",
                "kp",
                "kd",
                "drive_target",
                "armature",
                "damping",
                "friction",
                "mimic_offset",
            )
        }
        out["has_drive"] = np.zeros(n, dtype=bool)
        out["mimic_leader"] = np.full(n, -1, dtype=np.int32)
        out["mimic_gear"] = np.ones(n)
        actuators = self._mjc_actuators()
        path_index = {j.path: d for d, j in enumerate(dof_joints)}
        drive_source = ["none"] * n
        effort_source = ["none"] * n
        for d, joint in enumerate(dof_joints):
            prim = joint.prim
            angular = joint.kind == JointType.REVOLUTE
            # Position units: rad for revolute (USD stores degrees), m for prismatic (USD stores stage units).
            pos_scale = _DEG if angular else self.mpu
            # Per-position-unit gains: N·m/deg -> N·m/rad; N/unit -> N/m.
            gain_scale = 1.0 / pos_scale
            force_scale = self.kpu * self.mpu * (self.mpu if angular else 1.0)  # N·m or N in SI
            lo = self._attr(prim, "physics:lowerLimit")
            hi = self._attr(prim, "physics:upperLimit")
            lo = -math.inf if lo is None or not math.isfinite(lo) or lo <= -_HUGE else lo * pos_scale
            hi = math.inf if hi is None or not math.isfinite(hi) or hi >= _HUGE else hi * pos_scale
            if lo > hi:
                raise RobotModelError(
                    f"joint {joint.path} has lowerLimit > upperLimit; fix: swap them (or remove both for an "
                    f"unlimited joint)",
                    prim_path=joint.path,
                )
            out["lower"][d], out["upper"][d] = lo, hi

            vel, _ = self._first(prim, ("physxJoint:maxJointVelocity", "newton:velocityLimit"))
            if vel is not None:
                vel = vel * pos_scale
            else:
                vel = self._attr(prim, "urdf:limit:velocity") or None  # SI already (rad/s | m/s); 0 = not set
            out["velocity_limit"][d] = math.inf if vel is None or vel >= _HUGE or not math.isfinite(vel) else vel

            drive = "angular" if angular else "linear"
            if f"PhysicsDriveAPI:{drive}" in _applied_schemas(prim):
                kp = self._attr(prim, f"drive:{drive}:physics:stiffness") or 0.0
                kd = self._attr(prim, f"drive:{drive}:physics:damping") or 0.0
                fmax = self._attr(prim, f"drive:{drive}:physics:maxForce")
                target = self._attr(prim, f"drive:{drive}:physics:targetPosition") or 0.0
                dtype = self._attr(prim, f"drive:{drive}:physics:type")
                if dtype is not None and str(dtype) == "acceleration":
                    self.notes.append(
                        f"{joint.path}: acceleration drive read as a force drive (gains not scaled by inertia)"
                    )
                out["kp"][d] = kp * gain_scale * force_scale
                out["kd"][d] = kd * gain_scale * force_scale
                out["drive_target"][d] = target * pos_scale
                out["effort_limit"][d] = (
                    math.inf if fmax is None or fmax >= _HUGE or not math.isfinite(fmax) else fmax * force_scale
                )
                out["has_drive"][d] = True
                drive_source[d] = f"PhysicsDriveAPI:{drive}"
                if fmax is not None and math.isfinite(fmax) and fmax < _HUGE:
                    effort_source[d] = f"drive:{drive}:physics:maxForce"
            elif isinstance(actuators.get(joint.path), tuple):
                out["kp"][d], out["kd"][d], out["effort_limit"][d] = actuators[joint.path]
                out["has_drive"][d] = True
                drive_source[d] = "MjcActuator (position servo)"
                if math.isfinite(out["effort_limit"][d]):
                    effort_source[d] = "mjc:forceRange"
                self.notes.append(f"{joint.name}: drive read from its MuJoCo position actuator (no PhysicsDriveAPI)")
            else:
                out["effort_limit"][d] = self._motor_effort.get(joint.path, math.inf)
                if math.isfinite(out["effort_limit"][d]):
                    effort_source[d] = "mjc:forceRange (MuJoCo actuator, not a servo)"
                reason = actuators.get(joint.path, "no PhysicsDriveAPI and no MuJoCo position actuator")
                self.notes.append(f"{joint.name}: undriven ({reason})")
            # The URDF's effort is SI whatever the stage units; the others are in stage units.
            for name, scale in (
                ("mjc:actuatorfrcrange:max", force_scale),
                ("newton:maxEffort", force_scale),
                ("urdf:limit:effort", 1.0),
            ):
                v = self._attr(prim, name)
                if v is not None and math.isfinite(v) and 0 < v < _HUGE and v * scale < out["effort_limit"][d]:
                    out["effort_limit"][d] = v * scale
                    effort_source[d] = name

            arm, _ = self._first(prim, ("physxJoint:armature", "newton:armature", "mjc:armature"))
            # kg·m² (angular) or kg (linear), from stage units.
            out["armature"][d] = (arm or 0.0) * self.kpu * (self.mpu * self.mpu if angular else 1.0)
            damp, src = self._first(prim, ("newton:damping", "mjc:damping", "urdf:dynamics:damping"))
            if src == "urdf:dynamics:damping":
                out["damping"][d] = damp  # SI already
            elif damp is not None:
                per_position = gain_scale if src == "newton:damping" else (1.0 if angular else 1.0 / self.mpu)
                out["damping"][d] = damp * per_position * force_scale
            fric, src = self._first(prim, ("newton:friction", "mjc:frictionloss", "urdf:dynamics:friction"))
            out["friction"][d] = (fric or 0.0) * (1.0 if src == "urdf:dynamics:friction" else force_scale)
            for key in ("armature", "damping", "friction"):
                if not math.isfinite(out[key][d]) or out[key][d] < 0:
                    raise RobotModelError(
                        f"joint {joint.path} has a negative or non-finite {key}; fix: author a value >= 0",
                        prim_path=joint.path,
                    )

        for d, joint in enumerate(dof_joints):
            self._read_mimic(joint, d, path_index, out)
        out["drive_source"] = tuple(drive_source)
        out["effort_source"] = tuple(effort_source)
        return out

    def _read_mimic(self, joint: _Joint, d: int, path_index: dict[str, int], out) -> None:
        prim = joint.prim
        schemas = _applied_schemas(prim)
        if "NewtonMimicAPI" in schemas:
            enabled = self._attr(prim, "newton:mimicEnabled")
            rel = prim.GetRelationship("newton:mimicJoint")
            targets = rel.GetTargets() if rel else []
            if (enabled is None or enabled) and targets and str(targets[0]) in path_index:
                out["mimic_leader"][d] = path_index[str(targets[0])]
                out["mimic_offset"][d] = float(self._attr(prim, "newton:mimicCoef0") or 0.0)
                gear = self._attr(prim, "newton:mimicCoef1")
                out["mimic_gear"][d] = 1.0 if gear is None else float(gear)
            return
        for schema in schemas:
            if schema.startswith("PhysxMimicJointAPI:"):
                axis = schema.split(":", 1)[1]
                rel = prim.GetRelationship(f"physxMimicJoint:{axis}:referenceJoint")
                targets = rel.GetTargets() if rel else []
                if targets and str(targets[0]) in path_index:
                    # PhysX: q + gearing * q_ref + offset = 0.
                    out["mimic_leader"][d] = path_index[str(targets[0])]
                    out["mimic_gear"][d] = -float(self._attr(prim, f"physxMimicJoint:{axis}:gearing") or 0.0)
                    out["mimic_offset"][d] = -float(self._attr(prim, f"physxMimicJoint:{axis}:offset") or 0.0)

    def _mjc_actuators(self) -> dict[str, tuple[float, float, float] | str]:
        """Joint path -> (kp, kd, effort limit) of the MuJoCo position servo acting on it, or the reason
        the actuator there cannot be read as one.

        A servo is an ``MjcActuator`` with fixed gain and affine bias ``gain*ctrl - kp*length - kv*velocity``.
        On a joint with gear g, the joint torque is ``g*(kp*(ctrl - g*q) - kv*g*qd)``: gains scale with g².
        On a fixed tendon ``L = sum(c_i q_i)`` whose joints move together (the MJCF couples them with an
        equality constraint, as the Panda's fingers), joint i feels ``c_i * F``, i.e. a servo with
        ``kp_i = c_i*kp*sum(c)``, ``kd_i = c_i*kv*sum(c)`` and effort limit ``c_i*Fmax``.
        """
        from pxr import Usd

        found: dict[str, tuple[float, float, float] | str] = {}
        for prim in self.stage.Traverse(Usd.TraverseInstanceProxies()):
            if str(prim.GetTypeName()) != "MjcActuator":
                continue
            rel = prim.GetRelationship("mjc:target")
            targets = rel.GetTargets() if rel else []
            if not targets:
                continue
            gain = list(self._attr(prim, "mjc:gainPrm") or [1.0])
            bias = list(self._attr(prim, "mjc:biasPrm") or []) + [0.0, 0.0, 0.0]
            kp, kv = -bias[1] or 0.0, -bias[2] or 0.0
            fmax = math.inf
            fr_max, fr_min = self._attr(prim, "mjc:forceRange:max"), self._attr(prim, "mjc:forceRange:min")
            if str(self._attr(prim, "mjc:forceLimited") or "auto") != "false" and (fr_max or fr_min):
                fmax = max(abs(fr_max or 0.0), abs(fr_min or 0.0))
            target = self.stage.GetPrimAtPath(targets[0])
            if (
                str(self._attr(prim, "mjc:biasType") or "none") != "affine"
                or str(self._attr(prim, "mjc:gainType") or "fixed") != "fixed"
                or kp <= 0
                or gain[0] <= 0
            ):
                found[str(targets[0])] = f"MuJoCo actuator {prim.GetPath()} is not a position servo"
                if math.isfinite(fmax) and not (target and str(target.GetTypeName()) == "MjcTendon"):
                    # a torque motor's force range still bounds the joint's effort: |tau| <= |gear| * Fmax
                    gear = list(self._attr(prim, "mjc:gear") or [1.0])[0]
                    self._motor_effort[str(targets[0])] = fmax * abs(gear)
            elif target and str(target.GetTypeName()) == "MjcTendon":
                trel = target.GetRelationship("mjc:path")
                joints = [str(t) for t in (trel.GetTargets() if trel else [])]
                coefs = list(self._attr(target, "mjc:path:coef") or [])
                if str(self._attr(target, "mjc:type") or "fixed") != "fixed" or len(coefs) != len(joints):
                    for j in joints:
                        found[j] = f"MuJoCo actuator {prim.GetPath()} drives a spatial tendon"
                    continue
                total = sum(coefs)
                for j, c in zip(joints, coefs, strict=False):
                    found[j] = (c * kp * total, c * kv * total, abs(c) * fmax)
            else:
                gear = list(self._attr(prim, "mjc:gear") or [1.0])[0]
                found[str(targets[0])] = (kp * gear * gear, kv * gear * gear, fmax * abs(gear))
        return found

    def _inertials(self, order: list[str]) -> dict[str, np.ndarray]:
        n = len(order)
        unbalanced: list[tuple[int, str, tuple[float, float]]] = []
        mass = np.zeros(n)
        com = np.zeros((n, 3))
        diag = np.zeros((n, 3))
        axes = np.tile(np.array([1.0, 0.0, 0.0, 0.0]), (n, 1))
        inertia_scale = self.kpu * self.mpu * self.mpu
        for i, path in enumerate(order):
            prim = self.stage.GetPrimAtPath(path)
            _, scale = self._rigid_and_scale(path)
            m = self._attr(prim, "physics:mass")
            if m is not None and (not math.isfinite(m) or m < 0):
                raise RobotModelError(
                    f"link {path} has physics:mass = {m}; fix: author a finite mass > 0 kg", prim_path=path
                )
            if m is None or m == 0:
                self.notes.append(
                    f"link {path} has no authored mass: treated as massless "
                    f"(mass from collision geometry and density is not computed)"
                )
                continue
            mass[i] = m * self.kpu
            c = self._attr(prim, "physics:centerOfMass")
            if c is not None:
                c = np.array(c, dtype=np.float64)
                if not np.all(np.isfinite(c)):
                    raise RobotModelError(
                        f"link {path} has a non-finite physics:centerOfMass; fix: author finite values", prim_path=path
                    )
                # UsdPhysics' "not authored" sentinel is a huge negative vector.
                if np.all(np.abs(c) < _HUGE):
                    com[i] = c * scale * self.mpu
            full = self._attr(prim, "newton:inertia")
            if full is not None and len(full) > 0:
                if len(full) != 6 or not np.all(np.isfinite(np.array(full, dtype=np.float64))):
                    raise RobotModelError(
                        f"link {path} has newton:inertia {list(full)}; fix: author 6 finite values "
                        f"[Ixx, Iyy, Izz, Ixy, Ixz, Iyz]",
                        prim_path=path,
                    )
                ixx, iyy, izz, ixy, ixz, iyz = (float(v) for v in full)
                tensor = np.array([[ixx, ixy, ixz], [ixy, iyy, iyz], [ixz, iyz, izz]])
                evals, evecs = np.linalg.eigh(tensor)
                if np.linalg.det(evecs) < 0:
                    evecs[:, 0] *= -1
                diag[i] = evals * inertia_scale
                axes[i] = matrix_to_quat(evecs)
            else:
                d = self._attr(prim, "physics:diagonalInertia")
                if d is not None:
                    d = np.array(d, dtype=np.float64)
                    if not np.all(np.isfinite(d)):
                        raise RobotModelError(
                            f"link {path} has a non-finite physics:diagonalInertia; fix: author "
                            f"finite principal moments",
                            prim_path=path,
                        )
                    diag[i] = d * inertia_scale
                q = self._attr(prim, "physics:principalAxes")
                if q is not None:
                    quat = np.array([q.GetReal(), *q.GetImaginary()], dtype=np.float64)
                    norm = np.linalg.norm(quat)
                    if not np.isfinite(norm) or norm < 1e-9:
                        raise RobotModelError(
                            f"link {path} has a zero or non-finite physics:principalAxes; fix: "
                            f"author a unit quaternion",
                            prim_path=path,
                        )
                    axes[i] = quat / norm
            violation = self._check_inertia(path, diag[i])
            if violation is not None:
                unbalanced.append((i, path, violation))
            if not np.any(diag[i]):
                self.notes.append(f"link {path} has mass but no inertia: treated as a point mass")
        if unbalanced:
            self._balance(unbalanced, diag)
        return dict(mass=mass, com=com, inertia_diag=diag, inertia_axes=axes)

    def _balance(self, unbalanced: list[tuple[int, str, tuple[float, float]]], diag: np.ndarray) -> None:
        """Repair (``balance_inertia``) or refuse the links whose moments violate ``A + B >= C``."""
        lines = [
            f"{path} {np.round(diag[i], 9).tolist()} kg·m²: the largest exceeds the sum of the other two by "
            f"{excess:.3g} kg·m² ({pct:.1f} % of it)"
            for i, path, (excess, pct) in unbalanced
        ]
        if not self.balance_inertia:
            raise RobotModelError(
                f"{len(unbalanced)} link(s) have principal moments of inertia that violate the triangle inequality "
                f"A + B >= C (no rigid body has them): " + "; ".join(lines) + ". Fix: recompute these links' "
                "inertia, or set [robot] balance_inertia = true (load_robot(..., balance_inertia=True)) to replace "
                "each one's three moments by their mean, as MuJoCo's compiler balanceinertia does",
                prim_path=unbalanced[0][1],
            )
        for (i, _, _), line in zip(unbalanced, lines, strict=True):
            before = diag[i].copy()
            diag[i] = before.mean()
            self.notes.append(
                f"balance_inertia: link {line}; moments set to their mean {diag[i][0]:.6g} kg·m² "
                f"(were {np.round(before, 9).tolist()})"
            )

    def _check_inertia(self, path: str, d: np.ndarray) -> tuple[float, float] | None:
        """Raise on a negative moment; return (excess kg·m², excess in % of the largest moment) when the
        moments violate the triangle inequality, else None."""
        scale = max(float(np.max(np.abs(d))), 1e-300)
        if np.any(d < -1e-12 * scale):
            raise RobotModelError(
                f"link {path} has a negative principal moment of inertia {d.tolist()} kg·m²; fix: author moments >= 0",
                prim_path=path,
            )
        a, b, c = np.sort(d)
        if a + b < c * (1 - 1e-6) - 1e-12 * scale:
            excess = float(c - a - b)
            return excess, 100.0 * excess / float(c)
        return None

    def _gravity(self) -> np.ndarray:
        from pxr import Usd

        for prim in self.stage.Traverse(Usd.TraverseInstanceProxies()):
            if str(prim.GetTypeName()) == "PhysicsScene":
                direction = self._attr(prim, "physics:gravityDirection")
                magnitude = self._attr(prim, "physics:gravityMagnitude")
                g = 9.81 if magnitude is None or not math.isfinite(magnitude) or magnitude < 0 else magnitude * self.mpu
                if direction is not None and np.linalg.norm(np.array(direction)) > 0:
                    v = np.array(direction, dtype=np.float64)
                    return v / np.linalg.norm(v) * g
                return self._down() * g
        return self._down() * 9.81

    def _down(self) -> np.ndarray:
        from pxr import UsdGeom

        up = str(UsdGeom.GetStageUpAxis(self.stage))
        return -np.array(_AXES.get(up, (0.0, 0.0, 1.0)))

    def _check_pose_consistency(self, order, parent_frame, child_frame, link_parent) -> None:
        """Note (do not fail) links whose authored pose differs from the joint chain at q = 0."""
        world = np.empty((len(order), 4, 4))
        for i in range(len(order)):
            local = parent_frame[i] @ invert_transform(child_frame[i])
            world[i] = local if link_parent[i] < 0 else world[link_parent[i]] @ local
        for i, path in enumerate(order):
            authored, _ = self._rigid_and_scale(path)
            dp = float(np.linalg.norm(authored[:3, 3] - world[i][:3, 3]))
            dr = float(np.linalg.norm(authored[:3, :3] - world[i][:3, :3]))
            if dp > 1e-4 or dr > 1e-3:
                self.notes.append(
                    f"link {path}: authored pose differs from the joint frames at q = 0 by "
                    f"{dp:.2e} m / {dr:.2e} (the joint frames are used, as in PhysX)"
                )
                break
