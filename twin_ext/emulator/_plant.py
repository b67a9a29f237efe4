# SPDX-License-Identifier: Apache-2.0
"""`MujocoPlant`: the physical arm of the emulated robot -- a MuJoCo model driven by its own PD servos.

The plant is independent of the twin's Warp engine on purpose: it is the "real robot" the twin is
checked against (ground truth per step: q, qd and the joint drive torque).

Model. Any MJCF whose actuators are MuJoCo position servos in the affine ``general`` form
(``force = g*ctrl - kp*L - kd*dL/dt`` on a joint or a fixed tendon of length ``L``, as in the Menagerie
Panda: ``kp = 4500 .. 2000 N·m/rad``, ``kd = kp/10``, clamped to ``forcerange``) works; the default is
``data/robots/franka_emika_panda/panda_nomesh.xml`` (the Menagerie Panda without meshes; every
inertial is explicit, so its dynamics equal the mesh model's). The finger tendon actuator's
``ctrl 0..255`` maps to a finger opening of 0..0.04 m.

Controller (what a joint-impedance robot controller does, and what the twin can model):

    tau = clamp( kp (q_d - q) + kd (qd_d - qd) ) + g(q)      per actuator

* ``ctrl = (kp L_d + kd dL_d/dt) / g``: the servo's own spring-damper, with the target's velocity fed
  forward through ``ctrl`` (``velocity_feedforward``). Without it the servo's damper (``-kd qd``) drags
  every moving joint ``kd/kp * qd = 0.1 s * qd`` behind its target (0.13 rad at 1.3 rad/s).
* ``g(q)``: gravity compensation (``gravity_compensation``), as the Panda's firmware does. It goes
  through the actuators (MuJoCo ``actuatorgravcomp``), so the reported torque includes it and the
  total per joint is clamped to the joint's torque limit (the servo's forcerange: 87 / 12 N·m).

Timestep 1 ms (``timestep``): the Panda's own control loop runs at 1 kHz; the finger coupling (an
equality constraint with a 5 ms time constant) is only honoured by MuJoCo for steps <= 2.5 ms; the stiffest
servo (joint 7: 2000 N·m/rad on ~0.1 kg·m²) has a period of ~45 ms, resolved with margin; and the
default 200 Hz telemetry lands exactly on every 5th step. The physics of 1 s of motion costs ~12 ms of
CPU (the whole offline emulator ~65 ms).

Faults (used by the emulator's fault runner; docs/emulator.md, "Faults"): the joints' friction
(``dof_damping``, ``dof_frictionloss``), external loads (``qfrc_applied``, ``xfrc_applied``) and a payload
body can be changed while the plant runs; `reset` puts all of them back as built. The payload is a
child body of the hand (`add_payload_body`) with gravity compensation 0 -- the robot's controller does
not know it -- built with zero mass and given its mass, centre of mass and inertia by `set_payload`.
MuJoCo reads ``body_mass`` / ``body_ipos`` / ``body_inertia`` at run time, but derived constants
(``body_subtreemass``, the inverse weights) only change with ``mj_setConst``: without it the arm's
accelerations are off by half the payload's effect; with it they equal a model compiled with the payload
welded on, bit for bit (tests/test_emulator_faults.py).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .. import TwinExtError
from .._paths import default_robot_mjcf

__all__ = ["PANDA_VELOCITY_LIMITS", "MujocoPlant", "PlantError"]


PANDA_VELOCITY_LIMITS: dict[str, float] = {
    # Franka Emika Panda datasheet joint speed limits [rad/s]; fingers 0.2 m/s as in franka_description.
    "joint1": 2.175,
    "joint2": 2.175,
    "joint3": 2.175,
    "joint4": 2.175,
    "joint5": 2.61,
    "joint6": 2.61,
    "joint7": 2.61,
    "finger_joint1": 0.2,
    "finger_joint2": 0.2,
}


class PlantError(TwinExtError, RuntimeError):
    """The MJCF cannot be used as an emulator plant; the message says why and what to change."""


class MujocoPlant:
    """A MuJoCo arm tracking joint targets with its PD servos, stepped at a fixed ``timestep``.

    Args:
        mjcf_path: MJCF file (default: the Menagerie Panda without meshes).
        timestep: s, integration step (default 1 ms; see the module docstring).
        gravity_compensation: add ``g(q)`` through the actuators (default on).
        velocity_feedforward: feed the target velocity forward through ``ctrl`` (default on).

    Joints are the model's hinge and slide joints in model order (``ndof`` of them); all arrays below
    are ``[ndof]`` in that order, rad|m, rad/s|m/s, N·m|N.
    """

    def __init__(
        self,
        mjcf_path: str | Path | None = None,
        *,
        timestep: float = 1e-3,
        gravity_compensation: bool = True,
        velocity_feedforward: bool = True,
    ) -> None:
        import mujoco  # heavy: imported only when a plant is built

        self._mj = mujoco
        path = Path(mjcf_path) if mjcf_path is not None else default_robot_mjcf()
        if not path.is_file():
            raise PlantError(f"robot MJCF {str(path)!r} not found; the default is {default_robot_mjcf()}")
        if not (isinstance(timestep, (int, float)) and math.isfinite(timestep) and 1e-5 <= timestep <= 1e-2):
            raise PlantError(f"timestep must be in [1e-5, 1e-2] s, got {timestep!r} (1e-3 is the Panda's loop)")
        try:
            spec = mujoco.MjSpec.from_file(str(path))
            model = spec.compile()
        except Exception as exc:  # mujoco raises ValueError with the parser's message
            raise PlantError(f"cannot load MJCF {str(path)!r}: {exc}") from None
        self.mjcf_path = path
        self.timestep = float(timestep)
        self.gravity_compensation = bool(gravity_compensation)
        self.velocity_feedforward = bool(velocity_feedforward)

        hinge, slide = int(mujoco.mjtJoint.mjJNT_HINGE), int(mujoco.mjtJoint.mjJNT_SLIDE)
        joints = [j for j in range(model.njnt) if int(model.jnt_type[j]) in (hinge, slide)]
        if not joints:
            raise PlantError(f"{path}: no hinge or slide joints to emulate")
        if len(joints) != model.njnt:
            raise PlantError(
                f"{path}: only fixed-base arms (hinge/slide joints) are supported, found a free or ball joint"
            )
        self.joint_names: tuple[str, ...] = tuple(model.joint(j).name for j in joints)
        self._joints = joints
        self.ndof = len(joints)
        self.model = model
        self._a, self._kp, self._kd, self._gain = self._servo_map()

        # Edit the specification (not the compiled model: MuJoCo sizes gravity compensation at compile time).
        spec.option.timestep = self.timestep
        for act in spec.actuators:
            # We clamp targets to the joint range ourselves; the velocity lead may take ctrl past it.
            act.ctrllimited = mujoco.mjtLimited.mjLIMITED_FALSE
        if self.gravity_compensation:
            for body in spec.bodies[1:]:
                body.gravcomp = 1.0
            for u, act in enumerate(spec.actuators):  # same order as the compiled model's actuators
                if int(model.actuator_trntype[u]) != int(mujoco.mjtTrn.mjTRN_JOINT):
                    continue
                joint = spec.joint(act.target)
                joint.actgravcomp = True  # g(q) is the controller's, so it counts as actuator torque
                if model.actuator_forcelimited[u]:  # and the joint's total torque keeps the servo's limit
                    joint.actfrclimited = mujoco.mjtLimited.mjLIMITED_TRUE
                    joint.actfrcrange = model.actuator_forcerange[u].copy()
        self._spec = spec
        self.payload_body: int | None = None  # body id of the payload (None: not built)
        self._compile()
        model = self.model
        self._qadr = np.array([model.jnt_qposadr[j] for j in joints])
        self._vadr = np.array([model.jnt_dofadr[j] for j in joints])
        limited = model.jnt_limited[joints].astype(bool)
        rng = model.jnt_range[joints]
        self.lower = np.where(limited, rng[:, 0], -np.inf)
        self.upper = np.where(limited, rng[:, 1], np.inf)
        self.is_prismatic = np.array([int(model.jnt_type[j]) == slide for j in joints])
        self.nominal_damping = model.dof_damping[self._vadr].copy()
        """``[ndof]`` N·m·s/rad | N·s/m, the model's viscous joint damping (`reset` restores it)."""
        self.nominal_frictionloss = model.dof_frictionloss[self._vadr].copy()
        """``[ndof]`` N·m | N, the model's dry joint friction (`reset` restores it)."""
        self._friction_dof = np.full(model.nv, -1, dtype=np.int64)  # model dof -> joint index
        self._friction_dof[self._vadr] = np.arange(self.ndof)
        self._dof_of = [int(v) for v in self._vadr]
        self._loaded = False  # friction, loads or payload changed since the last reset
        self.reset()

    def _compile(self) -> None:
        try:
            model = self._spec.compile()
        except Exception as exc:
            raise PlantError(f"cannot compile the emulator's version of {str(self.mjcf_path)!r}: {exc}") from None
        self.model = model
        self.data = self._mj.MjData(model)

    def _servo_map(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Per actuator: joint-space coefficients A [nu, ndof] (L = A q), kp, kd, gain g."""
        mj, m = self._mj, self.model
        index_of = {int(m.jnt_dofadr[m.joint(n).id]): i for i, n in enumerate(self.joint_names)}
        a = np.zeros((m.nu, self.ndof))
        for u in range(m.nu):
            name = m.actuator(u).name or f"actuator {u}"
            if (
                int(m.actuator_dyntype[u]) != int(mj.mjtDyn.mjDYN_NONE)
                or int(m.actuator_gaintype[u]) != int(mj.mjtGain.mjGAIN_FIXED)
                or int(m.actuator_biastype[u]) != int(mj.mjtBias.mjBIAS_AFFINE)
            ):
                raise PlantError(
                    f"{name}: the emulator needs position servos (general, dyntype none, gain fixed, bias affine)"
                )
            g, b0, b1, b2 = (
                m.actuator_gainprm[u, 0],
                m.actuator_biasprm[u, 0],
                m.actuator_biasprm[u, 1],
                m.actuator_biasprm[u, 2],
            )
            if not (g > 0 and b0 == 0 and b1 < 0 and b2 <= 0):
                raise PlantError(f"{name}: not a PD position servo (need gain > 0, bias = [0, -kp, -kd])")
            trn = int(m.actuator_trntype[u])
            if trn == int(mj.mjtTrn.mjTRN_JOINT):
                a[u, index_of[int(m.jnt_dofadr[m.actuator_trnid[u, 0]])]] = m.actuator_gear[u, 0]
            elif trn == int(mj.mjtTrn.mjTRN_TENDON):
                t = m.actuator_trnid[u, 0]
                for w in range(m.tendon_adr[t], m.tendon_adr[t] + m.tendon_num[t]):
                    if int(m.wrap_type[w]) != int(mj.mjtWrap.mjWRAP_JOINT):
                        raise PlantError(f"{name}: only fixed (joint) tendons are supported")
                    a[u, index_of[int(m.jnt_dofadr[m.wrap_objid[w]])]] += m.wrap_prm[w] * m.actuator_gear[u, 0]
            else:
                raise PlantError(f"{name}: transmission must be a joint or a fixed tendon")
        return a, -m.actuator_biasprm[:, 1].copy(), -m.actuator_biasprm[:, 2].copy(), m.actuator_gainprm[:, 0].copy()

    # ---- state --------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """s, simulated time since the last `reset`."""
        return float(self.data.time)

    @property
    def q(self) -> np.ndarray:
        """``[ndof]`` rad|m, joint positions (a copy)."""
        return self.data.qpos[self._qadr].copy()

    @property
    def qd(self) -> np.ndarray:
        """``[ndof]`` rad/s|m/s, joint velocities (a copy)."""
        return self.data.qvel[self._vadr].copy()

    def reset(self, q: np.ndarray | None = None) -> None:
        """Put the arm at rest at ``q`` (``[ndof]``; default: the model's reference pose), time 0; joint
        friction as built, no external loads, no payload."""
        mj, d = self._mj, self.data
        if self._loaded:
            self.model.dof_damping[self._vadr] = self.nominal_damping
            self.model.dof_frictionloss[self._vadr] = self.nominal_frictionloss
            if self.payload_body is not None and self.model.body_mass[self.payload_body] != 0.0:
                self.set_payload(0.0, np.zeros(3), np.zeros(3))
            self._loaded = False
        mj.mj_resetData(self.model, d)  # also clears qfrc_applied and xfrc_applied
        if q is not None:
            q = np.asarray(q, dtype=np.float64)
            if q.shape != (self.ndof,) or not np.all(np.isfinite(q)):
                raise PlantError(f"reset pose must be [ndof={self.ndof}] finite values, got shape {q.shape}")
            d.qpos[self._qadr] = np.clip(q, self.lower, self.upper)
        self.set_targets(self.q, np.zeros(self.ndof))
        mj.mj_forward(self.model, d)

    def set_targets(self, q_target: np.ndarray, qd_target: np.ndarray) -> None:
        """Command joint targets ``q_target [ndof]`` rad|m and ``qd_target [ndof]`` rad/s|m/s."""
        q_d = np.minimum(np.maximum(q_target, self.lower), self.upper)
        length = self._a @ q_d
        ctrl = self._kp * length
        if self.velocity_feedforward:
            ctrl = ctrl + self._kd * (self._a @ qd_target)
        self.data.ctrl[:] = ctrl / self._gain

    def step(self, q_target: np.ndarray, qd_target: np.ndarray) -> np.ndarray:
        """Advance one ``timestep`` tracking the targets.

        Returns:
            ``[ndof]`` N·m|N, the drive torque that acts during this step (servo + gravity compensation): what a
            joint torque sensor would read. MuJoCo's implicit integrator evaluates the servo's damping at the
            step's *end* velocity, ``(M + h kd) qacc = f(x_n)``, so the torque that moves the arm is
            ``qfrc_actuator(x_n) - h kd qacc`` (servos clamped at their force range have no damping there). Reporting
            ``qfrc_actuator(x_n)`` instead would be off by ``h kd qacc``: ~0.8 N·m RMS on the Panda's shoulder in the
            pick-and-place program, which a model-based health monitor would take for a fault.
        """
        self.set_targets(q_target, qd_target)
        d = self.data
        qd_before = d.qvel[self._vadr].copy()
        self._mj.mj_step(self.model, d)
        tau = d.qfrc_actuator[self._vadr].copy()
        kd = self._kd.copy()
        limited = self.model.actuator_forcelimited.astype(bool)
        if np.any(limited):
            lo, hi = self.model.actuator_forcerange[:, 0], self.model.actuator_forcerange[:, 1]
            force = d.actuator_force
            kd[limited & ((force <= lo) | (force >= hi))] = 0.0
        h = self.model.opt.timestep
        qacc = (d.qvel[self._vadr] - qd_before) / h  # the implicit step's acceleration (d.qacc is the explicit one)
        return tau - h * (self._a.T @ (kd * (self._a @ qacc)))

    # ---- faults ---------------------------------------------------------------------------------
    def joint_index(self, name: str) -> int:
        """Index of joint ``name`` in `joint_names`; a `PlantError` lists the joints."""
        try:
            return self.joint_names.index(name)
        except ValueError:
            raise PlantError(
                f"{name!r} is not a joint of {self.mjcf_path.name}; joints: {list(self.joint_names)}"
            ) from None

    def body_id(self, name: str) -> int:
        """MuJoCo id of body ``name``; a `PlantError` lists the bodies."""
        bodies = [self.model.body(b).name for b in range(1, self.model.nbody)]
        if name not in bodies or name == _PAYLOAD_BODY:
            raise PlantError(
                f"{name!r} is not a body of {self.mjcf_path.name}; bodies: {[b for b in bodies if b != _PAYLOAD_BODY]}"
            )
        return int(self.model.body(name).id)

    def add_payload_body(self, parent: str = "hand") -> int:
        """Give the arm a payload body on ``parent`` (massless until `set_payload`); returns its body id.

        The model is recompiled once (the state is reset); the body has no joints and gravity
        compensation 0, so the robot's controller does not compensate what it will carry.
        """
        if self.payload_body is not None:
            existing = self.model.body(self.model.body_parentid[self.payload_body]).name
            if existing != parent:
                raise PlantError(f"this plant carries its payload on {existing!r}, not {parent!r}; build a new plant")
            return self.payload_body
        self.body_id(parent)
        body = self._spec.body(parent).add_body(name=_PAYLOAD_BODY)
        body.mass = 0.0
        body.ipos = [0.0, 0.0, 0.0]
        body.inertia = [0.0, 0.0, 0.0]
        body.explicitinertial = True
        body.gravcomp = 0.0
        self._compile()
        self.payload_body = int(self.model.body(_PAYLOAD_BODY).id)
        self._scratch = self._mj.MjData(self.model)
        self.reset()
        return self.payload_body

    def set_payload(self, mass: float, com: np.ndarray, inertia: np.ndarray) -> None:
        """Set the payload: ``mass`` kg at ``com`` ``[3]`` m (parent frame), principal moments ``inertia``
        ``[3]`` kg·m² about the com along the parent's axes (all 0: no payload). Needs `add_payload_body`."""
        if self.payload_body is None:
            raise PlantError("this plant has no payload body; call add_payload_body first")
        m, b = self.model, self.payload_body
        m.body_mass[b] = float(mass)
        m.body_ipos[b] = np.asarray(com, dtype=np.float64)
        m.body_iquat[b] = (1.0, 0.0, 0.0, 0.0)
        m.body_inertia[b] = np.asarray(inertia, dtype=np.float64)
        self._mj.mj_setConst(m, self._scratch)  # derived constants (subtree masses, inverse weights)
        self._loaded = True

    def set_joint_friction(self, index: np.ndarray, damping: np.ndarray, frictionloss: np.ndarray) -> None:
        """Set viscous damping (N·m·s/rad) and dry friction (N·m) of the joints ``index`` (takes effect next step)."""
        v = self._vadr[index]
        self.model.dof_damping[v] = damping
        self.model.dof_frictionloss[v] = frictionloss
        self._loaded = True

    def set_friction_of(self, joint: int, damping: float, frictionloss: float) -> None:
        """`set_joint_friction` of one joint (index ``joint``), without array overhead (the per-step path)."""
        m, v = self.model, self._dof_of[joint]
        m.dof_damping[v] = damping
        m.dof_frictionloss[v] = frictionloss
        self._loaded = True

    @property
    def dof_address(self) -> np.ndarray:
        """``[ndof]`` the joints' MuJoCo dof addresses (``model.dof_*`` / ``data.qvel`` indices)."""
        return self._vadr.copy()

    @property
    def damping(self) -> np.ndarray:
        """``[ndof]`` N·m·s/rad | N·s/m, the joints' viscous damping now."""
        return self.model.dof_damping[self._vadr].copy()

    @property
    def frictionloss(self) -> np.ndarray:
        """``[ndof]`` N·m | N, the joints' dry friction now."""
        return self.model.dof_frictionloss[self._vadr].copy()

    def set_joint_loads(self, tau: np.ndarray) -> None:
        """External torques ``[ndof]`` N·m | N on the joints (``qfrc_applied``) from the next step on."""
        self.data.qfrc_applied[self._vadr] = tau
        self._loaded = True

    def body_wrench(self, body: int, force: np.ndarray, point: np.ndarray) -> np.ndarray:
        """The wrench ``[6]`` (force; torque about the body's centre of mass; world frame) of a ``force``
        ``[3]`` N (world frame) on ``body`` at ``point`` ``[3]`` m (body frame). The point is placed with the
        body's pose at the start of the last step (1 ms old: < 1 mm at 1 m/s)."""
        d = self.data
        force = np.asarray(force, dtype=np.float64)
        p = d.xpos[body] + d.xmat[body].reshape(3, 3) @ np.asarray(point, dtype=np.float64)
        return np.concatenate([force, np.cross(p - d.xipos[body], force)])

    def set_body_wrench(self, body: int, wrench: np.ndarray) -> None:
        """Apply ``wrench`` ``[6]`` (see `body_wrench`) to ``body`` from the next step on (``xfrc_applied``)."""
        self.data.xfrc_applied[body] = wrench
        self._loaded = True

    def body_load_torque(self, body: int) -> np.ndarray:
        """``[ndof]`` N·m | N, the joint torques of the wrench on ``body`` during the last step (``J^T w``)."""
        m, d = self.model, self.data
        jacp, jacr = np.zeros((3, m.nv)), np.zeros((3, m.nv))
        self._mj.mj_jacBodyCom(m, d, jacp, jacr, body)  # kinematics of the step's start, as applied
        w = d.xfrc_applied[body]
        return (jacp.T @ w[:3] + jacr.T @ w[3:])[self._vadr]

    def joint_loads(self) -> np.ndarray:
        """``[ndof]`` N·m | N, the torques set by `set_joint_loads`."""
        return self.data.qfrc_applied[self._vadr].copy()

    def friction_torque(self) -> np.ndarray:
        """``[ndof]`` N·m | N, the friction torque on each joint during the last step: viscous damping
        (``qfrc_damper``) plus the dry-friction constraint forces; it opposes the motion."""
        d = self.data
        out = d.qfrc_damper[self._vadr]
        rows = slice(d.ne, d.ne + d.nf)  # MuJoCo orders rows: equality, friction (dofs, then tendons), ...
        keep = d.efc_type[rows] == int(self._mj.mjtConstraint.mjCNSTR_FRICTION_DOF)
        joint = self._friction_dof[d.efc_id[rows][keep]]
        np.add.at(out, joint[joint >= 0], d.efc_force[rows][keep][joint >= 0])
        return out

    def dry_friction_forces(self, count: int) -> np.ndarray | None:
        """The dry-friction forces (N·m | N) of the last step's first ``count`` friction rows -- one per
        joint with dry friction, in dof order -- or None if the step had another number of them (the
        cheap per-step read of `friction_torque`'s dry part)."""
        d = self.data
        if d.nf != count:
            return None
        ne = d.ne
        return d.efc_force[ne : ne + count].copy()


_PAYLOAD_BODY = "twin_ext_payload"
