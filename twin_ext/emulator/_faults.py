# SPDX-License-Identifier: Apache-2.0
"""Fault profiles: what goes wrong with the robot itself (``[faults]`` of an impairment profile).

The ground truth for a health monitor. A profile TOML (``config/impairments/*.toml`` or
``config/faults/*.toml``; the same format, every key in docs/SETTINGS.md, "Faults") may hold a
``[faults]`` table with one array of tables per kind; every time is in s from the start of the run:

* ``wear`` -- a joint's friction grows linearly in time. The *friction scale* ``s(t)`` multiplies
  both friction terms of the joint in the plant: viscous damping ``b`` (MuJoCo ``dof_damping``,
  N·m·s/rad) and dry friction ``f`` (``dof_frictionloss``, N·m), so the joint's friction torque is
  ``-s(t) (b qd + f sign(qd))``; ``s(t) = 1`` before ``at_s``, then ``min(max_scale, 1 +
  rate_per_hour (t - at_s) / 3600)``. The base terms are the model's (the Menagerie Panda: ``b = 1``,
  ``f = 0``) unless ``[faults] damping`` / ``frictionloss`` set them per joint (give the Panda a dry
  friction, or wear scales only its damping).
* ``collision`` -- for ``duration_s`` from ``at_s``: a torque on a joint (``joint``, ``torque`` N·m;
  MuJoCo ``qfrc_applied``) or a force on a link (``body``, ``force`` N in the world frame, applied at
  ``point``, m in the link's frame; ``xfrc_applied``); ``shape`` rectangular or half-sine.
* ``payload`` -- from ``at_s`` (for ``duration_s``, default to the end) a mass (kg) at ``com`` (m,
  in the frame of ``body``, default the hand) with principal moments ``inertia`` (kg·m², about the
  com, along the body's axes) hangs on the body. The robot's gravity compensation does not know it.
* ``encoder_jump`` -- one published position sample of a joint is off by ``jump`` (rad | m).
* ``encoder_stuck`` -- a joint's published position freezes for ``duration_s``.
* ``torque_bias`` -- a joint's published effort is off by ``bias`` (N·m | N) from ``at_s``.

Plant faults (wear, collision, payload) change the physics; sensor faults (encoder, torque bias)
change only the published measurement, never the plant or its truth. Everything is deterministic:
a fault profile draws no random numbers, so the impairment schedule of a seed does not change.

    >>> from twin_ext.emulator import FaultProfile
    >>> f = FaultProfile.from_mapping({"wear": [{"joint": "joint4", "rate_per_hour": 360.0, "at_s": 2.0}]})
    >>> f.wear[0].scale(12.0)   # 10 s after the start: 1 + 360 * 10 / 3600
    2.0
    >>> FaultProfile.from_mapping({"wear": [{"joint": "joint4", "rate_per_hr": 1.0}]})
    Traceback (most recent call last):
    ...
    twin_ext.emulator._faults.ImpairmentError: faults.wear[0]: unknown key 'rate_per_hr' (did you mean 'rate_per_hour'?); valid keys: ['joint', 'rate_per_hour', 'at_s', 'max_scale', 'name']
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..config import ConfigError, check_keys

__all__ = [
    "COLLISION_SHAPES",
    "FAULT_KINDS",
    "Collision",
    "EncoderJump",
    "EncoderStuck",
    "FaultProfile",
    "ImpairmentError",
    "Payload",
    "TorqueBias",
    "Wear",
]

COLLISION_SHAPES = ("rectangular", "half_sine")
_INF = math.inf
_MAX_PAYLOAD_KG = 100.0
_MAX_COM_M = 2.0


class ImpairmentError(ConfigError):
    """An impairment profile that cannot be used; the message names the key and the fix."""


# ---- the kinds ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Wear:
    """A friction wear ramp on ``joint``: the friction scale grows by ``rate_per_hour`` per hour from
    ``at_s`` (s) and stops at ``max_scale`` (default: no limit). See the module docstring."""

    KIND: ClassVar[str] = "wear"
    joint: str
    rate_per_hour: float
    at_s: float = 0.0
    max_scale: float = _INF
    name: str = ""

    def scale(self, t_s: float | np.ndarray) -> float | np.ndarray:
        """The friction scale (dimensionless, >= 1) at ``t_s`` s from the start (a float or an array)."""
        if isinstance(t_s, (int, float)):  # the per-step path: the same arithmetic as the array one
            return (
                1.0 if t_s < self.at_s else min(self.max_scale, 1.0 + self.rate_per_hour * (t_s - self.at_s) / 3600.0)
            )
        t = np.asarray(t_s, dtype=np.float64)
        s = np.where(
            t < self.at_s, 1.0, np.minimum(self.max_scale, 1.0 + self.rate_per_hour * (t - self.at_s) / 3600.0)
        )
        return float(s) if s.ndim == 0 else s

    @property
    def saturates_at_s(self) -> float | None:
        """s from the start at which the scale reaches ``max_scale`` (None: it never stops growing)."""
        if math.isinf(self.max_scale):
            return None
        return self.at_s + (self.max_scale - 1.0) * 3600.0 / self.rate_per_hour


@dataclass(frozen=True)
class Collision:
    """An external load for ``duration_s`` from ``at_s``: ``torque`` (N·m) on ``joint``, or ``force``
    (N, world frame) on link ``body`` at ``point`` (m, body frame); ``shape`` ``rectangular`` (constant)
    or ``half_sine`` (``sin(pi (t - at_s) / duration_s)`` times the peak)."""

    KIND: ClassVar[str] = "collision"
    at_s: float
    duration_s: float
    joint: str = ""
    torque: float = 0.0
    body: str = ""
    force: tuple[float, float, float] = (0.0, 0.0, 0.0)
    point: tuple[float, float, float] = (0.0, 0.0, 0.0)
    shape: str = "rectangular"
    name: str = ""

    def factor(self, t_s: float) -> float:
        """Fraction of the peak load applied at ``t_s`` s from the start (0 outside the window)."""
        u = (t_s - self.at_s) / self.duration_s
        if not 0.0 <= u < 1.0:
            return 0.0
        return 1.0 if self.shape == "rectangular" else math.sin(math.pi * u)


@dataclass(frozen=True)
class Payload:
    """A payload of ``mass`` kg at ``com`` (m, ``body`` frame) with principal moments ``inertia``
    (kg·m², about the com, along the body axes), attached to ``body`` at ``at_s`` for ``duration_s``
    (default: to the end of the run); unknown to the robot's gravity compensation."""

    KIND: ClassVar[str] = "payload"
    at_s: float
    mass: float
    com: tuple[float, float, float] = (0.0, 0.0, 0.0)
    inertia: tuple[float, float, float] = (0.0, 0.0, 0.0)
    duration_s: float = _INF
    body: str = "hand"
    name: str = ""


@dataclass(frozen=True)
class EncoderJump:
    """The first position sample of ``joint`` published at or after ``at_s`` is off by ``jump`` (rad | m)."""

    KIND: ClassVar[str] = "encoder_jump"
    joint: str
    at_s: float
    jump: float
    name: str = ""


@dataclass(frozen=True)
class EncoderStuck:
    """From ``at_s`` for ``duration_s`` the published position of ``joint`` repeats the first reading
    of the window (the value the encoder stuck at)."""

    KIND: ClassVar[str] = "encoder_stuck"
    joint: str
    at_s: float
    duration_s: float
    name: str = ""


@dataclass(frozen=True)
class TorqueBias:
    """From ``at_s`` for ``duration_s`` (default: to the end) the published effort of ``joint`` is off
    by ``bias`` (N·m | N)."""

    KIND: ClassVar[str] = "torque_bias"
    joint: str
    at_s: float
    bias: float
    duration_s: float = _INF
    name: str = ""


_KINDS: dict[str, type] = {c.KIND: c for c in (Wear, Collision, Payload, EncoderJump, EncoderStuck, TorqueBias)}
FAULT_KINDS = tuple(_KINDS)
"""The fault kinds, in documentation order (each is an array of tables ``[[faults.<kind>]]``)."""
_JOINT_TABLES = ("damping", "frictionloss")


@dataclass(frozen=True)
class FaultProfile:
    """The ``[faults]`` table of a profile: base joint friction and the faults of each kind.

    ``damping`` / ``frictionloss`` are ``((joint, value), ...)``: base viscous damping (N·m·s/rad | N·s/m)
    and dry friction (N·m | N) replacing the model's for those joints, from the start of the run.
    """

    damping: tuple[tuple[str, float], ...] = ()
    frictionloss: tuple[tuple[str, float], ...] = ()
    wear: tuple[Wear, ...] = ()
    collision: tuple[Collision, ...] = ()
    payload: tuple[Payload, ...] = ()
    encoder_jump: tuple[EncoderJump, ...] = ()
    encoder_stuck: tuple[EncoderStuck, ...] = ()
    torque_bias: tuple[TorqueBias, ...] = ()

    def __post_init__(self) -> None:
        _check_faults(self)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """The valid keys of the ``[faults]`` table, in documentation order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def kind_keys(cls, kind: str) -> tuple[str, ...]:
        """The valid keys of one ``[[faults.<kind>]]`` table."""
        return tuple(f.name for f in dataclasses.fields(_KINDS[kind]))

    @classmethod
    def from_mapping(cls, mapping: object, *, where: str = "faults") -> FaultProfile:
        """Faults from a parsed ``[faults]`` table; unknown keys, wrong types and bad values raise
        `ImpairmentError` naming the key (``faults.wear[0].rate_per_hour``) and the fix."""
        if not isinstance(mapping, Mapping):
            raise ImpairmentError(
                f"{where} must be a table ([faults] with [[faults.wear]], [[faults.collision]], ...), "
                f"got {type(mapping).__name__}"
            )
        check_keys(mapping, cls.keys(), where=f"{where}:", error=ImpairmentError)
        kwargs: dict[str, object] = {}
        for key, value in mapping.items():
            if key in _JOINT_TABLES:
                kwargs[key] = _joint_table(f"{where}.{key}", value)
            else:
                kwargs[key] = _fault_list(f"{where}.{key}", _KINDS[key], value)
        return cls(**kwargs)

    def to_mapping(self) -> dict[str, object]:
        """The table as plain data (TOML- and JSON-ready; the inverse of `from_mapping`); empty parts are left out."""
        out: dict[str, object] = {}
        for key in _JOINT_TABLES:
            if getattr(self, key):
                out[key] = dict(getattr(self, key))
        for kind in FAULT_KINDS:
            items = getattr(self, kind)
            if items:
                out[kind] = [
                    {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(f).items() if v != _INF}
                    for f in items
                ]  # an infinite duration or scale is the default: left out, so the mapping is JSON-safe
        return out

    @property
    def is_empty(self) -> bool:
        """True when the table changes nothing (no base friction, no faults)."""
        return self == FaultProfile()

    def entries(self) -> list[tuple[str, object]]:
        """``[(id, fault), ...]`` in documentation order; the id is the fault's ``name`` or ``"<kind>[i]"``."""
        return [(f.name or f"{kind}[{i}]", f) for kind in FAULT_KINDS for i, f in enumerate(getattr(self, kind))]


# ---- parsing -----------------------------------------------------------------------------------
def _number(key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ImpairmentError(f"{key} must be a number, got {value!r}")
    return float(value)


def _vec3(key: str, value: object) -> tuple[float, float, float]:
    if not isinstance(value, list) or len(value) != 3:
        raise ImpairmentError(f"{key} must be a list of 3 numbers [x, y, z], got {value!r}")
    x, y, z = (_number(f"{key}[{i}]", v) for i, v in enumerate(value))
    return x, y, z


def _joint_table(key: str, value: object) -> tuple[tuple[str, float], ...]:
    if not isinstance(value, Mapping):
        raise ImpairmentError(
            f"{key} must be a table of joint = value, e.g. {key.rpartition('.')[2]} = {{ joint4 = 0.5 }}"
        )
    return tuple((str(j), _number(f"{key}.{j}", v)) for j, v in value.items())


def _fault_list(key: str, cls: type, value: object) -> tuple[object, ...]:
    fields = dataclasses.fields(cls)
    names = [f.name for f in fields]
    required = [f.name for f in fields if f.default is dataclasses.MISSING]
    if not isinstance(value, list):
        raise ImpairmentError(f"{key} must be a list of tables like [[{key}]] with keys {names}, got {value!r}")
    out = []
    for i, item in enumerate(value):
        where = f"{key}[{i}]"
        if not isinstance(item, Mapping):
            raise ImpairmentError(f"{where} must be a table with keys {names}")
        check_keys(item, names, where=f"{where}:", error=ImpairmentError)
        missing = [k for k in required if k not in item]
        if missing:
            raise ImpairmentError(f"{where} needs key(s) {missing}")
        kwargs: dict[str, object] = {}
        for f in fields:
            if f.name not in item:
                continue
            v = item[f.name]
            if f.type == "str":
                if not isinstance(v, str):
                    raise ImpairmentError(f"{where}.{f.name} must be a string, got {v!r}")
                kwargs[f.name] = v
            elif f.type.startswith("tuple"):
                kwargs[f.name] = _vec3(f"{where}.{f.name}", v)
            else:
                kwargs[f.name] = _number(f"{where}.{f.name}", v)
        out.append(cls(**kwargs))
    return tuple(out)


# ---- validation --------------------------------------------------------------------------------
def _check_faults(p: FaultProfile) -> None:
    for key in _JOINT_TABLES:
        table = getattr(p, key)
        unit = "N·m·s/rad (N·s/m)" if key == "damping" else "N·m (N)"
        if not isinstance(table, tuple):
            raise ImpairmentError(f"faults.{key} must be a tuple of (joint, value) pairs")
        seen = set()
        for item in table:
            if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
                raise ImpairmentError(f"faults.{key} must be (joint, value) pairs, got {item!r}")
            joint, v = item
            if joint in seen:
                raise ImpairmentError(f"faults.{key}.{joint} is given twice; give each joint once")
            seen.add(joint)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0.0:
                raise ImpairmentError(f"faults.{key}.{joint} must be a finite number >= 0 {unit}, got {v!r}")
    ids: dict[str, str] = {}
    for kind in FAULT_KINDS:
        items = getattr(p, kind)
        cls = _KINDS[kind]
        if not isinstance(items, tuple) or not all(isinstance(f, cls) for f in items):
            raise ImpairmentError(f"faults.{kind} must be a tuple of {cls.__name__}")
        for i, f in enumerate(items):
            where = f"faults.{kind}[{i}]"
            _check_fault(where, f)
            ident = f.name or f"{kind}[{i}]"
            if ident in ids:
                raise ImpairmentError(
                    f"{where}.name {ident!r} is also the id of {ids[ident]}; give each fault its own name"
                )
            ids[ident] = where
    _check_per_joint(p.wear, "wear", lambda f: (f.at_s, _INF), "one wear ramp per joint")
    _check_per_joint(p.encoder_stuck, "encoder_stuck", lambda f: (f.at_s, f.at_s + f.duration_s), "merge them")
    bodies = {f.body for f in p.payload}
    if len(bodies) > 1:
        raise ImpairmentError(
            f"faults.payload: every payload must hang on the same body, got {sorted(bodies)}; use one body (the hand)"
        )
    spans = sorted((f.at_s, f.at_s + f.duration_s, i) for i, f in enumerate(p.payload))
    for (a0, a1, i), (b0, _, k) in zip(spans, spans[1:], strict=False):
        if b0 < a1:
            raise ImpairmentError(
                f"faults.payload[{i}] ({a0:g}..{a1:g} s) and faults.payload[{k}] (from {b0:g} s) overlap; "
                "end the first (duration_s) before the next is attached"
            )


def _check_per_joint(items: tuple, kind: str, span, fix: str) -> None:
    by_joint: dict[str, list[tuple[float, float, int]]] = {}
    for i, f in enumerate(items):
        by_joint.setdefault(f.joint, []).append((*span(f), i))
    for joint, spans in by_joint.items():
        spans.sort()
        for (_, a1, i), (b0, _, k) in zip(spans, spans[1:], strict=False):
            if b0 < a1:
                raise ImpairmentError(f"faults.{kind}[{i}] and faults.{kind}[{k}] overlap on {joint}; {fix}")


def _check_fault(where: str, f: object) -> None:
    def num(key: str, *, lo: float | None = None, lo_open: bool = False, inf_ok: bool = False, unit: str = "") -> float:
        v = getattr(f, key)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v) or (math.isinf(v) and not inf_ok):
            raise ImpairmentError(f"{where}.{key} must be a finite number{' ' + unit if unit else ''}, got {v!r}")
        if lo is not None and (v <= lo if lo_open else v < lo):
            raise ImpairmentError(
                f"{where}.{key} must be {'>' if lo_open else '>='} {lo:g}{' ' + unit if unit else ''}, got {v:g}"
            )
        return float(v)

    def text(key: str) -> str:
        v = getattr(f, key)
        if not isinstance(v, str):
            raise ImpairmentError(f"{where}.{key} must be a string, got {v!r}")
        return v

    def vec(key: str, unit: str) -> tuple[float, ...]:
        v = getattr(f, key)
        if not (isinstance(v, tuple) and len(v) == 3):
            raise ImpairmentError(f"{where}.{key} must be 3 numbers [x, y, z] {unit}, got {v!r}")
        for x in v:
            if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
                raise ImpairmentError(f"{where}.{key} must be 3 finite numbers {unit}, got {v!r}")
        return v

    def nonzero(key: str, unit: str) -> None:
        if num(key, unit=unit) == 0.0:
            raise ImpairmentError(f"{where}.{key} is 0 {unit}, so the fault would do nothing; give it a size")

    text("name")
    num("at_s", lo=0.0, unit="s (time from the start of the run)")
    if hasattr(f, "joint") and not isinstance(f, Collision) and not text("joint"):
        raise ImpairmentError(f'{where}.joint must name a joint of the robot, e.g. "joint4"')
    if isinstance(f, Wear):
        num("rate_per_hour", lo=0.0, lo_open=True, unit="per hour")
        if num("max_scale", lo=1.0, inf_ok=True) == 1.0:
            raise ImpairmentError(
                f"{where}.max_scale = 1 stops the wear before it starts; use a value > 1 or leave it out"
            )
    elif isinstance(f, Collision):
        num("duration_s", lo=0.0, lo_open=True, unit="s")
        num("torque", unit="N·m")
        vec("force", "N")
        vec("point", "m")
        if text("shape") not in COLLISION_SHAPES:
            raise ImpairmentError(f"{where}.shape must be one of {list(COLLISION_SHAPES)}, got {f.shape!r}")
        on_joint, on_body = bool(text("joint")), bool(text("body"))
        if on_joint == on_body:
            raise ImpairmentError(
                f"{where}: give either joint and torque (a torque on a joint, N·m) or body and force "
                "(a force on a link, N, world frame), one per [[faults.collision]]"
            )
        if on_joint:
            if f.force != (0.0, 0.0, 0.0) or f.point != (0.0, 0.0, 0.0):
                raise ImpairmentError(
                    f"{where}: force and point belong to a link collision (body); remove them or joint"
                )
            nonzero("torque", "N·m")
        else:
            if f.torque != 0.0:
                raise ImpairmentError(f"{where}: torque belongs to a joint collision (joint); remove it or body")
            if not any(f.force):
                raise ImpairmentError(
                    f"{where}.force is [0, 0, 0] N, so the collision would do nothing; give it a size"
                )
    elif isinstance(f, Payload):
        if not text("body"):
            raise ImpairmentError(f'{where}.body must name a body of the robot (default "hand")')
        mass = num("mass", lo=0.0, lo_open=True, unit="kg")
        if mass > _MAX_PAYLOAD_KG:
            raise ImpairmentError(f"{where}.mass must be <= {_MAX_PAYLOAD_KG:g} kg, got {mass:g}")
        com = vec("com", "m")
        if math.dist(com, (0.0, 0.0, 0.0)) > _MAX_COM_M:
            raise ImpairmentError(
                f"{where}.com is {math.dist(com, (0, 0, 0)):.3g} m from the body; keep it within {_MAX_COM_M:g} m"
            )
        inertia = vec("inertia", "kg·m²")
        if min(inertia) < 0.0:
            raise ImpairmentError(f"{where}.inertia must be >= 0 kg·m² (principal moments), got {list(inertia)}")
        a, b, c = sorted(inertia)
        if a + b < c * (1.0 - 1e-9):
            raise ImpairmentError(
                f"{where}.inertia {list(inertia)} is not a rigid body's (each moment must be <= the sum of the other two)"
            )
        num("duration_s", lo=0.0, lo_open=True, inf_ok=True, unit="s")
    elif isinstance(f, EncoderJump):
        nonzero("jump", "rad (m)")
    elif isinstance(f, EncoderStuck):
        num("duration_s", lo=0.0, lo_open=True, unit="s")
    elif isinstance(f, TorqueBias):
        nonzero("bias", "N·m (N)")
        num("duration_s", lo=0.0, lo_open=True, inf_ok=True, unit="s")
