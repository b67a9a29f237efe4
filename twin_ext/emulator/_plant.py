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
        try:
            model = spec.compile()
        except Exception as exc:
            raise PlantError(f"cannot compile the emulator's version of {str(path)!r}: {exc}") from None
        self.model = model
        self.data = mujoco.MjData(model)
        self._qadr = np.array([model.jnt_qposadr[j] for j in joints])
        self._vadr = np.array([model.jnt_dofadr[j] for j in joints])
        limited = model.jnt_limited[joints].astype(bool)
        rng = model.jnt_range[joints]
        self.lower = np.where(limited, rng[:, 0], -np.inf)
        self.upper = np.where(limited, rng[:, 1], np.inf)
        self.is_prismatic = np.array([int(model.jnt_type[j]) == slide for j in joints])
        self.reset()

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
        """Put the arm at rest at ``q`` (``[ndof]``; default: the model's reference pose), time 0."""
        mj, d = self._mj, self.data
        mj.mj_resetData(self.model, d)
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
            ``[ndof]`` N·m|N, the drive torque applied during this step (servo + gravity compensation),
            evaluated at the state the step started from.
        """
        self.set_targets(q_target, qd_target)
        self._mj.mj_step(self.model, self.data)
        return self.data.qfrc_actuator[self._vadr].copy()
