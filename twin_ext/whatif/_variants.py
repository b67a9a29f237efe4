# SPDX-License-Identifier: Apache-2.0
"""What varies between worlds: `Payload`, `Perturbation` and `Variant`, and their kernel parameter sets.

A `Variant` is one "what if": a payload on a link, the command run faster or slower, scaled or
replaced drive gains, friction and damping, command latency, a push (external wrench) during a time
window. Per-joint values are given by joint name; a name the robot does not have is an error listing
the names it does have.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..robot import ArticulatedTree, RobotModel
from ._errors import WhatIfError

__all__ = ["Payload", "Perturbation", "Variant", "JointValues", "parameter_sets"]

JointValues = float | Mapping[str, float]
"""One value for every joint, or ``{joint name: value}`` for some joints (the others keep the default)."""


def _finite_vector(value, n: int, what: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise WhatIfError(f"{what} must be {n} numbers, got {value!r}") from None
    if arr.shape != (n,):
        raise WhatIfError(f"{what} must be {n} numbers, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise WhatIfError(f"{what} must be finite, got {arr.tolist()}")
    return arr


def _finite_number(value, what: str, *, minimum: float | None = None, strictly: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise WhatIfError(f"{what} must be a number, got {value!r}")
    x = float(value)
    if not math.isfinite(x):
        raise WhatIfError(f"{what} must be finite, got {x}")
    if minimum is not None and (x <= minimum if strictly else x < minimum):
        raise WhatIfError(f"{what} must be {'>' if strictly else '>='} {minimum:g}, got {x:g}")
    return x


@dataclass(frozen=True)
class Payload:
    """A rigid load fixed to a link (e.g. a gripped part).

    Attributes:
        link: link name (or prim path) it is fixed to, e.g. ``"hand"``.
        mass: kg, >= 0.
        com: ``[3]`` m, its centre of mass in the link's frame.
        inertia: kg·m² about its COM in the link's frame: ``[3]`` principal moments (Ixx, Iyy, Izz) or
            ``[6]`` (Ixx, Iyy, Izz, Ixy, Ixz, Iyz); default a point mass.
        known_to_controller: the robot's gravity compensation was told about it (default False: an
            unexpected load the controller does not compensate).
        size: ``[3]`` m, the part's extent as a box centred at ``com`` along the link's axes; with a scene the box
            is checked for clearance as part of its link (default ``(0, 0, 0)``: no geometry).
    """

    link: str
    mass: float
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)
    inertia: tuple[float, ...] = (0.0, 0.0, 0.0)
    known_to_controller: bool = False
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        _finite_number(self.mass, f"payload on {self.link!r}: mass (kg)", minimum=0.0)
        _finite_vector(self.com, 3, f"payload on {self.link!r}: com (m, link frame)")
        _finite_vector(self.size, 3, f"payload on {self.link!r}: size (m, box extents in the link frame)")
        if any(x < 0 for x in self.size):
            raise WhatIfError(f"payload on {self.link!r}: size must be >= 0 m on every axis, got {list(self.size)}")
        object.__setattr__(self, "_inertia", self._checked_inertia())

    def inertia_matrix(self) -> np.ndarray:
        """``[3, 3]`` kg·m² about the COM, in the link frame (a copy)."""
        return self._inertia.copy()  # type: ignore[attr-defined]

    def _checked_inertia(self) -> np.ndarray:
        values = np.asarray(self.inertia, dtype=np.float64)
        what = f"payload on {self.link!r}: inertia (kg·m² about its COM)"
        if values.shape == (3,):
            mat = np.diag(values)
        elif values.shape == (6,):
            xx, yy, zz, xy, xz, yz = values
            mat = np.array([[xx, xy, xz], [xy, yy, yz], [xz, yz, zz]])
        else:
            raise WhatIfError(
                f"{what} must be 3 principal moments or 6 values (xx, yy, zz, xy, xz, yz), got {values.shape}"
            )
        if not np.all(np.isfinite(mat)):
            raise WhatIfError(f"{what} must be finite")
        eig = np.linalg.eigvalsh(mat)
        scale = max(float(np.abs(eig).max()), 1e-12)
        if eig[0] < -1e-9 * scale or eig[2] > eig[0] + eig[1] + 1e-9 * scale:
            raise WhatIfError(
                f"{what} is not a physical inertia (principal moments {np.round(eig, 9).tolist()} must be >= 0 and "
                "satisfy the triangle inequality)"
            )
        return mat


@dataclass(frozen=True)
class Perturbation:
    """An external wrench on a link during a time window (a push, a collision stand-in).

    Attributes:
        link: link name (or prim path).
        force: ``[3]`` N, in the world frame, applied at ``point``.
        torque: ``[3]`` N·m, in the world frame.
        point: ``[3]`` m, application point in the link's frame.
        start: s after the rollout start. duration: s (> 0).
    """

    link: str
    force: tuple[float, float, float] = (0.0, 0.0, 0.0)
    torque: tuple[float, float, float] = (0.0, 0.0, 0.0)
    point: tuple[float, float, float] = (0.0, 0.0, 0.0)
    start: float = 0.0
    duration: float = 0.1

    def __post_init__(self) -> None:
        _finite_vector(self.force, 3, f"perturbation on {self.link!r}: force (N, world)")
        _finite_vector(self.torque, 3, f"perturbation on {self.link!r}: torque (N·m, world)")
        _finite_vector(self.point, 3, f"perturbation on {self.link!r}: point (m, link frame)")
        _finite_number(self.start, f"perturbation on {self.link!r}: start (s)", minimum=0.0)
        _finite_number(self.duration, f"perturbation on {self.link!r}: duration (s)", minimum=0.0, strictly=True)


@dataclass(frozen=True)
class Variant:
    """One what-if variation of the robot, its controller or its command.

    Attributes:
        name: label in reports.
        speed_scale: run the command this many times as fast (> 0; trajectory commands only).
        payloads: loads fixed to links.
        kp_scale, kd_scale: drive gain multipliers (>= 0), one value or per joint.
        damping_scale, friction_scale: multipliers (>= 0) of the model's viscous damping and Coulomb friction.
        damping: absolute viscous damping override, N·m·s/rad | N·s/m (applied before ``damping_scale``).
        friction: absolute Coulomb friction override, N·m | N (applied before ``friction_scale``).
        latency: s (>= 0), delay between the command and the drives receiving it.
        perturbation: external wrench during a window, or None.
        gravity_compensation: override the controller's gravity compensation (None = engine setting).
    """

    name: str = "nominal"
    speed_scale: float = 1.0
    payloads: tuple[Payload, ...] = ()
    kp_scale: JointValues = 1.0
    kd_scale: JointValues = 1.0
    damping_scale: JointValues = 1.0
    friction_scale: JointValues = 1.0
    damping: JointValues | None = None
    friction: JointValues | None = None
    latency: float = 0.0
    perturbation: Perturbation | None = None
    gravity_compensation: bool | None = None
    notes: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise WhatIfError(f"variant name must be a non-empty string, got {self.name!r}")
        _finite_number(self.speed_scale, f"variant {self.name!r}: speed_scale", minimum=0.0, strictly=True)
        _finite_number(self.latency, f"variant {self.name!r}: latency (s)", minimum=0.0)
        object.__setattr__(self, "payloads", tuple(self.payloads))
        for p in self.payloads:
            if not isinstance(p, Payload):
                raise WhatIfError(f"variant {self.name!r}: payloads must be Payload objects, got {type(p).__name__}")
        if self.perturbation is not None and not isinstance(self.perturbation, Perturbation):
            raise WhatIfError(
                f"variant {self.name!r}: perturbation must be a Perturbation, got {type(self.perturbation).__name__}"
            )

    def joint_values(self, robot: RobotModel, attr: str, default: np.ndarray) -> np.ndarray:
        """``[ndof]`` values of per-joint field ``attr`` (``default`` where not given); checked >= 0."""
        value = getattr(self, attr)
        out = np.array(default, dtype=np.float64, copy=True)
        what = f"variant {self.name!r}: {attr}"
        if value is None:
            return out
        if isinstance(value, Mapping):
            unknown = [k for k in value if k not in robot.dof_names]
            if unknown:
                raise WhatIfError(
                    f"{what} names unknown joint(s) {unknown}; {robot.name}'s joints are {list(robot.dof_names)}"
                )
            for k, v in value.items():
                out[robot.dof_names.index(k)] = _finite_number(v, f"{what}[{k!r}]", minimum=0.0)
            return out
        out[:] = _finite_number(value, what, minimum=0.0)
        return out


def _link_index(robot: RobotModel, name: str, what: str) -> int:
    try:
        return robot.link_index(name)
    except KeyError:
        raise WhatIfError(f"{what}: unknown link {name!r}; {robot.name}'s links are {list(robot.link_names)}") from None


def parameter_sets(
    robot: RobotModel,
    tree: ArticulatedTree,
    variants: Sequence[Variant],
    *,
    dt: float,
    gravity_compensation: bool,
) -> dict[str, np.ndarray]:
    """Kernel parameter-set arrays (``set_*``, float64/int32), one set per variant.

    Raises:
        WhatIfError: unknown link or joint names, a payload or wrench on a link welded to the world.
    """
    nset, nb = len(variants), tree.ndof
    mass = np.repeat(tree.mass[None], nset, axis=0)
    moment = np.repeat(tree.first_moment[None], nset, axis=0)
    gc_mass = mass.copy()  # what the controller's gravity compensation believes
    gc_moment = moment.copy()
    inertia = np.repeat(tree.inertia_origin[None], nset, axis=0)
    out = {
        "set_kp": np.zeros((nset, nb)),
        "set_kd": np.zeros((nset, nb)),
        "set_damping": np.zeros((nset, nb)),
        "set_friction": np.zeros((nset, nb)),
        "set_latency": np.zeros(nset, np.int32),
        "set_gravcomp": np.zeros(nset, np.int32),
        "set_wrench_body": np.full(nset, -1, np.int32),
        "set_wrench_point": np.zeros((nset, 3)),
        "set_wrench_force": np.zeros((nset, 3)),
        "set_wrench_torque": np.zeros((nset, 3)),
        "set_wrench_begin": np.zeros(nset, np.int32),
        "set_wrench_end": np.zeros(nset, np.int32),
    }
    ones = np.ones(nb)

    def scaled(v: Variant, base: np.ndarray, override: str | None, scale: str) -> np.ndarray:
        # the common case (nothing changed) costs nothing
        if override is not None and getattr(v, override) is not None:
            base = v.joint_values(robot, override, base)
        factor = getattr(v, scale)
        if isinstance(factor, (int, float)) and not isinstance(factor, bool) and factor == 1.0:
            return base
        return base * v.joint_values(robot, scale, ones)

    for s, v in enumerate(variants):
        out["set_kp"][s] = scaled(v, robot.kp, None, "kp_scale")
        out["set_kd"][s] = scaled(v, robot.kd, None, "kd_scale")
        out["set_damping"][s] = scaled(v, robot.damping, "damping", "damping_scale")
        out["set_friction"][s] = scaled(v, robot.friction, "friction", "friction_scale")
        out["set_latency"][s] = int(round(v.latency / dt))
        gc = gravity_compensation if v.gravity_compensation is None else bool(v.gravity_compensation)
        out["set_gravcomp"][s] = int(gc)
        for p in v.payloads:
            what = f"variant {v.name!r}: payload"
            link = _link_index(robot, p.link, what)
            body, com_b = tree.link_to_body(link, p.com)
            if body < 0:
                raise WhatIfError(
                    f"{what} on {p.link!r}: that link is welded to the world, so a payload there changes nothing; "
                    "put it on a moving link (e.g. the hand)"
                )
            rot = tree.link_rotation_in_body(link)
            tree.add_payload(
                mass[s],
                moment[s],
                inertia[s],
                body=body,
                payload_mass=float(p.mass),
                payload_com=com_b,
                payload_inertia=rot @ p.inertia_matrix() @ rot.T,
            )
            if p.known_to_controller:
                gc_mass[s, body] += p.mass
                gc_moment[s, body] += p.mass * com_b
        if v.perturbation is not None:
            w = v.perturbation
            what = f"variant {v.name!r}: perturbation"
            link = _link_index(robot, w.link, what)
            body, point_b = tree.link_to_body(link, w.point)
            if body < 0:
                raise WhatIfError(f"{what} on {w.link!r}: that link is welded to the world; push a moving link")
            out["set_wrench_body"][s] = body
            out["set_wrench_point"][s] = point_b
            out["set_wrench_force"][s] = w.force
            out["set_wrench_torque"][s] = w.torque
            out["set_wrench_begin"][s] = int(round(w.start / dt))
            out["set_wrench_end"][s] = int(round((w.start + w.duration) / dt))
    out["set_mass"] = mass
    out["set_moment"] = moment
    out["set_gc_mass"] = gc_mass
    out["set_gc_moment"] = gc_moment
    out["set_inertia"] = inertia
    return out
