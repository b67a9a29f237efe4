# SPDX-License-Identifier: Apache-2.0
"""Telemetry messages, schema version 1: `JointState`, `Birth`, `Status`.

A joint state may carry the optional reference channels (``reference_position`` / ``reference_velocity``:
what the robot's controller tracks); messages without them are the original v1 messages, unchanged.

A message object is always valid: the constructors check every field and raise `TelemetryError`
with a `RejectReason`, so whatever holds a `JointState` can trust it (finite float64 arrays of the
right length, unique names, in-range integers). Arrays are read-only so messages can be shared
between threads without copies.

Units: positions rad (revolute) or m (prismatic), velocities rad/s or m/s, efforts N·m or N;
``stamp_ns`` is the sampling time in the ROBOT's clock (int64 ns), never the arrival time.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..config import robot_id_problem
from ._errors import RejectReason, TelemetryError

__all__ = [
    "SCHEMA_VERSION",
    "MAX_JOINTS",
    "MAX_NAME_CHARS",
    "MAX_ID_CHARS",
    "SEQ_MODULUS",
    "CODECS",
    "ROBOT_STATES",
    "JointState",
    "Birth",
    "Status",
]

SCHEMA_VERSION = 1
"""Version of the message schema this module defines (JSON field ``version``, binary header byte 4)."""
MAX_JOINTS = 256
"""Most joints one message may carry."""
MAX_NAME_CHARS = 128
"""Longest joint name, in characters (and at most 255 bytes of UTF-8 in the binary codec)."""
MAX_ID_CHARS = 64
"""Longest robot id / boot id / model id."""
SEQ_MODULUS = 2**32
"""Sequence numbers are uint32 and wrap to 0 after ``2**32 - 1``."""
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
CODECS = ("json", "binary")
"""Payload codecs a robot may announce in its birth."""
ROBOT_STATES = ("online", "offline")
"""Values of `Status.state`."""

# Robot ids become MQTT topic levels: no '/', '+', '#', spaces or control characters.
_PRINTABLE_ID = re.compile(r"[\x21-\x7e]{1,64}\Z")


def _reject(reason: RejectReason, detail: str) -> TelemetryError:
    return TelemetryError(reason, detail)


def check_robot_id(robot_id: object, field: str = "robot_id") -> str:
    """Return ``robot_id`` if it is a valid robot id (`twin_ext.config.ROBOT_ID_RULE`), else raise `TelemetryError`."""
    problem = robot_id_problem(robot_id)
    if problem is not None:
        reason = RejectReason.BAD_TYPE if type(robot_id) is not str else RejectReason.BAD_VALUE
        raise _reject(reason, f"{field} {problem}")
    return robot_id


def _check_token(value: object, field: str, *, allow_empty: bool = False) -> str:
    if type(value) is not str:
        raise _reject(RejectReason.BAD_TYPE, f"{field} must be a string, got {type(value).__name__}")
    if allow_empty and value == "":
        return value
    if not _PRINTABLE_ID.match(value):
        raise _reject(
            RejectReason.BAD_VALUE, f"{field} {value[:80]!r} is not 1-64 printable ASCII characters without spaces"
        )
    return value


def check_joint_names(names: object, field: str = "name") -> tuple[str, ...]:
    """Return ``names`` as a tuple if it is a valid list of joint names, else raise `TelemetryError`."""
    if type(names) not in (list, tuple):
        raise _reject(RejectReason.BAD_TYPE, f"{field} must be an array of strings, got {type(names).__name__}")
    n = len(names)
    if n == 0:
        raise _reject(RejectReason.BAD_LENGTH, f"{field} is empty: a message needs at least one joint")
    if n > MAX_JOINTS:
        raise _reject(RejectReason.TOO_MANY_JOINTS, f"{field} has {n} joints, more than MAX_JOINTS={MAX_JOINTS}")
    for i, name in enumerate(names):
        if type(name) is not str:
            raise _reject(RejectReason.BAD_TYPE, f"{field}[{i}] must be a string, got {type(name).__name__}")
        if not 0 < len(name) <= MAX_NAME_CHARS or not name.isprintable() or name.strip() != name:
            raise _reject(
                RejectReason.BAD_NAME,
                f"{field}[{i}] {name[:80]!r} must be 1-{MAX_NAME_CHARS} printable characters without surrounding spaces",
            )
    if len(set(names)) != n:
        seen: set[str] = set()
        dup = next(x for x in names if x in seen or seen.add(x))  # type: ignore[func-returns-value]
        raise _reject(RejectReason.BAD_NAME, f"{field} repeats joint {dup!r}")
    return tuple(names)


def check_seq(seq: object) -> int:
    if type(seq) is not int:
        raise _reject(RejectReason.BAD_TYPE, f"seq must be an integer, got {type(seq).__name__}")
    if not 0 <= seq < SEQ_MODULUS:
        raise _reject(RejectReason.BAD_VALUE, f"seq {seq} is outside uint32 [0, 2**32)")
    return seq


def check_stamp(stamp_ns: object) -> int:
    if type(stamp_ns) is not int:
        raise _reject(RejectReason.BAD_TYPE, f"stamp_ns must be an integer (ns), got {type(stamp_ns).__name__}")
    if not INT64_MIN <= stamp_ns <= INT64_MAX:
        raise _reject(RejectReason.BAD_VALUE, f"stamp_ns {stamp_ns} is outside int64")
    return stamp_ns


def _as_vector(values: object, n: int, field: str) -> np.ndarray:
    """Read-only float64 ``[n]`` copy of ``values``; refuses bools, strings and non-finite values."""
    if isinstance(values, np.ndarray):
        if values.dtype.kind not in "fiu":
            raise _reject(RejectReason.BAD_TYPE, f"{field} must hold numbers, got dtype {values.dtype}")
        arr = np.array(values, dtype=np.float64)
    else:
        if type(values) not in (list, tuple):
            raise _reject(RejectReason.BAD_TYPE, f"{field} must be an array of numbers, got {type(values).__name__}")
        for i, v in enumerate(values):
            if type(v) is not float and type(v) is not int:
                raise _reject(RejectReason.BAD_TYPE, f"{field}[{i}] must be a number, got {type(v).__name__}")
        try:
            arr = np.array(values, dtype=np.float64)
        except OverflowError:
            raise _reject(RejectReason.NON_FINITE, f"{field} holds an integer too large for float64") from None
    if arr.shape != (n,):
        raise _reject(
            RejectReason.BAD_LENGTH, f"{field} has shape {arr.shape}, expected ({n},) (one value per joint name)"
        )
    if not np.isfinite(arr).all():
        i = int(np.flatnonzero(~np.isfinite(arr))[0])
        raise _reject(RejectReason.NON_FINITE, f"{field}[{i}] is {arr[i]!r}; values must be finite")
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False, slots=True)
class JointState:
    """One joint-state sample of one robot (sensor_msgs/JointState plus identity and order).

    Attributes:
        robot_id: robot identifier, ``[A-Za-z0-9_.-]{1,64}`` (it is also a topic level).
        seq: sequence number, uint32, +1 per message, wraps to 0 after ``2**32 - 1``.
        stamp_ns: sampling time in the robot's clock, int64 ns.
        names: ``[n]`` joint names, unique.
        position: ``[n]`` float64, rad (revolute) | m (prismatic), read-only.
        velocity: ``[n]`` float64, rad/s | m/s, read-only; or None if not measured.
        effort: ``[n]`` float64, N·m | N, read-only; or None if not measured.
        reference_position: ``[n]`` float64, rad | m, read-only: the position the robot's controller is
            tracking at ``stamp_ns`` (ROS 2 ``JointTrajectoryControllerState.reference``); or None.
        reference_velocity: ``[n]`` float64, rad/s | m/s, read-only: the velocity of that reference; or None.
            Only together with ``reference_position``.

    Raises:
        TelemetryError: a field is invalid (the reason code says which rule it broke).
    """

    robot_id: str
    seq: int
    stamp_ns: int
    names: tuple[str, ...]
    position: np.ndarray
    velocity: np.ndarray | None = None
    effort: np.ndarray | None = None
    reference_position: np.ndarray | None = None
    reference_velocity: np.ndarray | None = None

    def __post_init__(self) -> None:
        check_robot_id(self.robot_id)
        check_seq(self.seq)
        check_stamp(self.stamp_ns)
        names = check_joint_names(self.names, "names")
        n = len(names)
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "position", _as_vector(self.position, n, "position"))
        if self.velocity is not None:
            object.__setattr__(self, "velocity", _as_vector(self.velocity, n, "velocity"))
        if self.effort is not None:
            object.__setattr__(self, "effort", _as_vector(self.effort, n, "effort"))
        if self.reference_position is not None:
            object.__setattr__(self, "reference_position", _as_vector(self.reference_position, n, "reference_position"))
        if self.reference_velocity is not None:
            if self.reference_position is None:
                raise _reject(
                    RejectReason.MISSING_FIELD, "reference_velocity needs reference_position (send both or neither)"
                )
            object.__setattr__(self, "reference_velocity", _as_vector(self.reference_velocity, n, "reference_velocity"))

    @property
    def ndof(self) -> int:
        """Number of joints ``n`` in this message."""
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, JointState):
            return NotImplemented
        return (
            self.robot_id == other.robot_id
            and self.seq == other.seq
            and self.stamp_ns == other.stamp_ns
            and self.names == other.names
            and np.array_equal(self.position, other.position)
            and _optional_equal(self.velocity, other.velocity)
            and _optional_equal(self.effort, other.effort)
            and _optional_equal(self.reference_position, other.reference_position)
            and _optional_equal(self.reference_velocity, other.reference_velocity)
        )

    __hash__ = None  # type: ignore[assignment]  # holds arrays: not hashable

    def __repr__(self) -> str:
        return (
            f"JointState(robot_id={self.robot_id!r}, seq={self.seq}, stamp_ns={self.stamp_ns}, "
            f"n={len(self.names)}, velocity={'yes' if self.velocity is not None else 'no'}, "
            f"effort={'yes' if self.effort is not None else 'no'}"
            + (", reference=yes" if self.reference_position is not None else "")
            + ")"
        )


def _optional_equal(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is b
    return np.array_equal(a, b)


# The slots' own setters: what object.__setattr__ ends up calling on a frozen slots dataclass, without its lookup.
_SET_FIELDS = tuple(
    getattr(JointState, name).__set__
    for name in ("robot_id", "seq", "stamp_ns", "names", "position", "velocity", "effort", "reference_position",
                 "reference_velocity")
)  # fmt: skip


def _trusted_joint_state(
    robot_id, seq, stamp_ns, names, position, velocity, effort, reference_position=None, reference_velocity=None
) -> JointState:
    """Build a `JointState` from fields the codec has already validated (skips the re-checks)."""
    msg = object.__new__(JointState)
    s0, s1, s2, s3, s4, s5, s6, s7, s8 = _SET_FIELDS
    s0(msg, robot_id)
    s1(msg, seq)
    s2(msg, stamp_ns)
    s3(msg, names)
    s4(msg, position)
    s5(msg, velocity)
    s6(msg, effort)
    s7(msg, reference_position)
    s8(msg, reference_velocity)
    return msg


@dataclass(frozen=True, slots=True)
class Birth:
    """The robot's announcement, published retained on ``<prefix>/<robot_id>/birth`` at every start.

    Attributes:
        robot_id: robot identifier (as in `JointState`).
        model_id: which robot model this is (e.g. ``"franka_panda"``), 1-64 printable ASCII.
        joint_names: ``[n]`` the joints every joint-state message carries.
        rate_hz: nominal joint-state publication rate, Hz (> 0).
        boot_id: 1-64 printable ASCII, new on every robot start: a new boot id means the robot
            restarted (its sequence numbers and possibly its clock start over).
        codec: ``"json"`` or ``"binary"`` — the codec the robot publishes joint states with.
    """

    robot_id: str
    model_id: str
    joint_names: tuple[str, ...]
    rate_hz: float
    boot_id: str
    codec: str = "json"

    def __post_init__(self) -> None:
        check_robot_id(self.robot_id)
        _check_token(self.model_id, "model_id")
        object.__setattr__(self, "joint_names", check_joint_names(self.joint_names, "joint_names"))
        rate = self.rate_hz
        if type(rate) not in (int, float):
            raise _reject(RejectReason.BAD_TYPE, f"rate_hz must be a number, got {type(rate).__name__}")
        try:
            rate = float(rate)
        except OverflowError:
            rate = math.inf
        if not (math.isfinite(rate) and 0 < rate <= 1e6):
            raise _reject(RejectReason.BAD_VALUE, f"rate_hz {str(self.rate_hz)[:40]} must be in (0, 1e6] Hz")
        object.__setattr__(self, "rate_hz", rate)
        _check_token(self.boot_id, "boot_id")
        if self.codec not in CODECS:
            raise _reject(RejectReason.BAD_VALUE, f"codec {self.codec!r} must be one of {CODECS}")

    @property
    def dof_names(self) -> tuple[str, ...]:
        """Same as `joint_names`: lets a `Birth` stand in for a robot model in `decode(model=...)`."""
        return self.joint_names


@dataclass(frozen=True, slots=True)
class Status:
    """Robot liveness, retained on ``<prefix>/<robot_id>/status``; ``offline`` is the robot's MQTT will.

    Attributes:
        robot_id: robot identifier.
        state: ``"online"`` or ``"offline"``.
        boot_id: the boot this status belongs to (``""`` if the sender does not know it).
    """

    robot_id: str
    state: str
    boot_id: str = ""

    def __post_init__(self) -> None:
        check_robot_id(self.robot_id)
        if type(self.state) is not str:
            raise _reject(RejectReason.BAD_TYPE, f"state must be a string, got {type(self.state).__name__}")
        if self.state not in ROBOT_STATES:
            raise _reject(RejectReason.BAD_VALUE, f"state {self.state[:40]!r} must be one of {ROBOT_STATES}")
        _check_token(self.boot_id, "boot_id", allow_empty=True)
