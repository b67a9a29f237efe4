# SPDX-License-Identifier: Apache-2.0
"""Drive gains from settings, for robots whose USD has none (URDF conversions, MuJoCo torque motors).

A URDF has no servo gains, and urdf-usd-converter authors no ``PhysicsDriveAPI``; an MJCF with ``motor``
actuators has torque motors, not servos. Such robots load undriven (``kp = kd = 0``), and a what-if on them
cannot track a command. Two ways to give them gains, both from the ``[robot]`` settings:

* **per joint**, ``[robot.drives]``: ``joint1 = { kp = 400.0, kd = 40.0 }`` (N·m/rad and N·m·s/rad, or N/m
  and N·s/m for a prismatic joint), optionally ``max_force`` (N·m | N, caps the effort limit). A joint listed
  here takes these gains even when its USD has a drive (the user said so);
* **a default rule** for every other undriven joint, ``drive_rule = "bandwidth"``: each joint becomes a
  second-order system of natural frequency ``drive_bandwidth_hz`` and damping ratio ``drive_damping_ratio``
  about the home pose, ``kp = m (2 pi f)²``, ``kd = 2 zeta m (2 pi f)``, with ``m`` the joint-space inertia
  (mass-matrix diagonal with armature, kg·m² | kg) at the drive targets. Joints of similar bandwidth, whatever
  the link masses: a sensible start, not a tuned controller.

`RobotModel.drive_source` records which applied to each joint (``python -m twin_ext info`` shows it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ._model import RobotModel, RobotModelError

__all__ = ["DRIVE_RULES", "JointDriveGains", "apply_drive_settings", "drive_gains_from_mapping"]

DRIVE_RULES = ("none", "bandwidth")
"""Values of ``[robot] drive_rule``: ``none`` leaves undriven joints undriven."""


@dataclasses.dataclass(frozen=True)
class JointDriveGains:
    """Gains of one joint's position servo ``tau = kp (q_target - q) - kd qd``, clamped to ``max_force``."""

    joint: str
    """Joint prim name (as `RobotModel.dof_names`)."""
    kp: float
    """Stiffness, N·m/rad | N/m (>= 0)."""
    kd: float
    """Damping, N·m·s/rad | N·s/m (>= 0)."""
    max_force: float = math.inf
    """Effort limit, N·m | N (> 0; inf = keep the USD's)."""


def drive_gains_from_mapping(mapping: Any, *, key: str = "[robot.drives]") -> tuple[JointDriveGains, ...]:
    """Parse ``{joint: {kp, kd[, max_force]}}`` (a TOML table or a Kit settings tree) into `JointDriveGains`.

    A tuple of `JointDriveGains` (already parsed) and an empty list/dict are accepted as they are.

    Raises:
        ValueError: not a table, an entry that is not a table, unknown or missing keys, non-numbers, negative
            gains or a non-positive ``max_force``; the message names ``key`` and the joint.
    """
    if isinstance(mapping, tuple) and all(isinstance(g, JointDriveGains) for g in mapping):
        return mapping
    if isinstance(mapping, (list, tuple, dict)) and not mapping:
        return ()
    if not isinstance(mapping, Mapping):
        raise ValueError(
            f"{key} must be a table of joints, e.g. joint1 = {{ kp = 400.0, kd = 40.0 }}; got {type(mapping).__name__}"
        )
    out = []
    for joint, entry in mapping.items():
        where = f"{key} {joint}"
        if not isinstance(entry, Mapping):
            raise ValueError(f"{where} must be a table {{ kp = ..., kd = ... }}, got {entry!r}")
        unknown = sorted(set(entry) - {"kp", "kd", "max_force"})
        if unknown:
            raise ValueError(f"{where}: unknown key(s) {unknown}; the keys are kp, kd and max_force")
        values = {}
        for name in ("kp", "kd", "max_force"):
            if name not in entry:
                if name == "max_force":
                    continue
                raise ValueError(f"{where}: {name} is missing; fix: give both kp and kd (SI, per rad or per m)")
            v = entry[name]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise ValueError(f"{where}: {name} must be a finite number, got {v!r}")
            values[name] = float(v)
        if values["kp"] < 0 or values["kd"] < 0:
            raise ValueError(f"{where}: kp and kd must be >= 0, got kp={values['kp']}, kd={values['kd']}")
        if values.get("max_force", 1.0) <= 0:
            raise ValueError(f"{where}: max_force must be > 0 (N·m | N), got {values['max_force']}")
        out.append(JointDriveGains(str(joint), **values))
    return tuple(out)


def apply_drive_settings(
    robot: RobotModel,
    *,
    drives: Sequence[JointDriveGains] = (),
    rule: str = "none",
    bandwidth_hz: float = 5.0,
    damping_ratio: float = 1.0,
) -> RobotModel:
    """``robot`` with drive gains from settings: ``drives`` per joint, then ``rule`` for the remaining undriven.

    Args:
        robot: as loaded by `load_robot`.
        drives: per-joint gains (`drive_gains_from_mapping`); they override the USD's drive of that joint.
        rule: `DRIVE_RULES`: ``"bandwidth"`` gives every still-undriven joint ``kp = m w²``, ``kd = 2 zeta m w``
            (``w = 2 pi bandwidth_hz``, ``m`` its mass-matrix diagonal at the drive targets, kg·m² | kg).
        bandwidth_hz: natural frequency of the rule's servos, Hz (> 0).
        damping_ratio: damping ratio of the rule's servos (>= 0; 1 = critically damped).

    Returns:
        A new `RobotModel` (the same one when nothing applies), with ``kp``, ``kd``, ``has_drive``,
        ``effort_limit`` and ``drive_source`` / ``effort_source`` updated and a note per change.

    Raises:
        RobotModelError: a joint in ``drives`` the robot does not have (the message lists its joints), an
            unknown rule, or a non-positive bandwidth.
    """
    if rule not in DRIVE_RULES:
        raise RobotModelError(f"[robot] drive_rule = {rule!r}; fix: use one of {list(DRIVE_RULES)}")
    if not drives and (rule == "none" or bool(np.all(robot.has_drive))):
        return robot
    if not (math.isfinite(bandwidth_hz) and bandwidth_hz > 0) or not (
        math.isfinite(damping_ratio) and damping_ratio >= 0
    ):
        raise RobotModelError(
            f"[robot] drive_bandwidth_hz = {bandwidth_hz}, drive_damping_ratio = {damping_ratio}; fix: a bandwidth "
            f"> 0 Hz and a damping ratio >= 0"
        )
    kp, kd = robot.kp.copy(), robot.kd.copy()
    has_drive, effort = robot.has_drive.copy(), robot.effort_limit.copy()
    n = robot.ndof
    drive_source = list(robot.drive_source or ["PhysicsDriveAPI" if h else "none" for h in robot.has_drive])
    effort_source = list(robot.effort_source or ["none"] * n)
    notes = list(robot.notes)
    for g in drives:
        if g.joint not in robot.dof_names:
            raise RobotModelError(
                f"[robot.drives] names joint {g.joint!r}, which {robot.name} does not have; its joints are "
                f"{list(robot.dof_names)}; fix: use one of those names"
            )
        d = robot.dof_names.index(g.joint)
        kp[d], kd[d], has_drive[d] = g.kp, g.kd, True
        drive_source[d] = "config [robot.drives]"
        if math.isfinite(g.max_force):
            effort[d], effort_source[d] = g.max_force, "config [robot.drives] max_force"
        notes.append(f"{g.joint}: drive gains kp={g.kp:g} kd={g.kd:g} from [robot.drives]")
    todo = [d for d in range(n) if not has_drive[d]] if rule == "bandwidth" else []
    if todo:
        from ._dynamics import RigidBodyDynamics

        m = np.diag(RigidBodyDynamics(robot).mass_matrix(robot.drive_target))
        w = 2.0 * math.pi * bandwidth_hz
        for d in todo:
            kp[d], kd[d], has_drive[d] = m[d] * w * w, 2.0 * damping_ratio * m[d] * w, True
            drive_source[d] = f"config drive_rule bandwidth {bandwidth_hz:g} Hz, zeta {damping_ratio:g}"
        notes.append(
            f"{len(todo)} undriven joint(s) given servos of {bandwidth_hz:g} Hz, damping ratio {damping_ratio:g} "
            f"([robot] drive_rule = 'bandwidth'): {[robot.dof_names[d] for d in todo]}"
        )
    return dataclasses.replace(
        robot,
        kp=kp,
        kd=kd,
        has_drive=has_drive,
        effort_limit=effort,
        drive_source=tuple(drive_source),
        effort_source=tuple(effort_source),
        notes=tuple(notes),
    )
