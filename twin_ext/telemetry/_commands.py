# SPDX-License-Identifier: Apache-2.0
"""Twin -> robot commands on ``twin/v1/<robot_id>/command``: schema v1, JSON, strict validation.

The command channel is OFF by default on the robot side (the emulator obeys it only when started with
``--accept-commands``). This module only defines and checks the wire format; whether a well-formed
command is acceptable for a given robot (joint names, limits, speeds) is the receiver's decision.

Wire format (UTF-8 JSON object, at most `MAX_COMMAND_BYTES`)::

    {"v": 1, "type": "speed_override", "scale": 0.5}
    {"v": 1, "type": "stop"}
    {"v": 1, "type": "resume"}
    {"v": 1, "type": "move_to", "names": ["joint1"], "position": [0.3], "duration_s": 2.0}

Every command may also carry ``"id"`` (a string up to 64 characters: the receiver acknowledges it on
``.../command/ack`` and executes one id at most once), ``"valid_until_ns"`` (its lease: an integer, ns in
the *robot's* clock; a receiver refuses a command that arrives later and holds a motion still running then;
docs/control.md) and ``"justification"`` (up to `MAX_JUSTIFICATION_CHARS` characters: why the twin sent
it, e.g. its pre-flight verdict).
Unknown keys, duplicate keys, NaN/Infinity, booleans where numbers are expected, and wrong versions
are rejected with a `CommandError` whose ``reason`` is one of `REJECT_REASONS`. Nothing in a payload is
executed or unpickled.

    >>> cmd = decode_command(encode_command(SpeedOverride(scale=0.5)))
    >>> cmd
    SpeedOverride(scale=0.5, id='', valid_until_ns=None)
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from .. import TwinExtError
from ..config import check_keys

__all__ = [
    "COMMAND_SCHEMA_VERSION",
    "MAX_COMMAND_BYTES",
    "MAX_JUSTIFICATION_CHARS",
    "MAX_SPEED_SCALE",
    "REJECT_REASONS",
    "Command",
    "CommandError",
    "MoveTo",
    "Resume",
    "SpeedOverride",
    "Stop",
    "decode_command",
    "encode_command",
]

COMMAND_SCHEMA_VERSION = 1
MAX_COMMAND_BYTES = 16 * 1024
"""Payloads larger than this are rejected before parsing (``reason="too_large"``)."""
MAX_SPEED_SCALE = 2.0
"""Largest speed override the schema admits (a robot may admit less; the emulator's default is 1.0)."""
MAX_JOINTS = 64
MAX_DURATION_S = 3600.0
MAX_ID_CHARS = 64
MAX_JUSTIFICATION_CHARS = 1024

REJECT_REASONS = (
    "too_large",  # payload over MAX_COMMAND_BYTES
    "not_json",  # not UTF-8 JSON, NaN/Infinity, or duplicate keys
    "not_object",  # JSON but not an object
    "bad_version",  # "v" missing or not COMMAND_SCHEMA_VERSION
    "unknown_type",  # "type" missing or not a known command
    "unknown_key",  # a key this command type does not have
    "missing_key",  # a required key is absent
    "bad_value",  # wrong type, out of range, non-finite, wrong length, duplicate names
)


class CommandError(TwinExtError, ValueError):
    """A command payload that was rejected; ``reason`` is one of `REJECT_REASONS`."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class SpeedOverride:
    """Scale the robot's program speed (time scaling): ``0 < scale <= MAX_SPEED_SCALE``, dimensionless."""

    scale: float
    id: str = ""
    valid_until_ns: int | None = None
    justification: str = field(default="", repr=False)


@dataclass(frozen=True)
class Stop:
    """Controlled stop along the current path (the program is kept; `Resume` continues it). A receiver obeys a
    stop even when its ``valid_until_ns`` has passed."""

    id: str = ""
    valid_until_ns: int | None = None
    justification: str = field(default="", repr=False)


@dataclass(frozen=True)
class Resume:
    """Continue after a `Stop` at the current speed override."""

    id: str = ""
    valid_until_ns: int | None = None
    justification: str = field(default="", repr=False)


@dataclass(frozen=True)
class MoveTo:
    """Move the named joints to ``position`` in ``duration_s`` and hold there (other joints hold).

    Attributes:
        names: ``[m]`` joint names (unique).
        position: ``[m]`` rad (revolute) | m (prismatic) targets, finite.
        duration_s: s, time for the move, ``0 < duration_s <= 3600``.
        valid_until_ns: the lease, ns in the robot's clock (None: no lease).
        justification: why it was sent (free text, at most `MAX_JUSTIFICATION_CHARS` characters).
    """

    names: tuple[str, ...]
    position: tuple[float, ...]
    duration_s: float
    id: str = ""
    valid_until_ns: int | None = None
    justification: str = field(default="", repr=False)


Command = SpeedOverride | Stop | Resume | MoveTo

_COMMON = ("id", "valid_until_ns", "justification")
_TYPES: dict[str, tuple[type, tuple[str, ...], tuple[str, ...]]] = {
    # type name: (class, required keys, optional keys) -- "v" and "type" are always required
    "speed_override": (SpeedOverride, ("scale",), _COMMON),
    "stop": (Stop, (), _COMMON),
    "resume": (Resume, (), _COMMON),
    "move_to": (MoveTo, ("names", "position", "duration_s"), _COMMON),
}
_NAME_OF = {cls: name for name, (cls, _, _) in _TYPES.items()}


def encode_command(command: Command) -> bytes:
    """Serialise a command to its v1 JSON payload (validated first, so the receiver will accept its form)."""
    name = _NAME_OF.get(type(command))
    if name is None:
        raise TypeError(f"not a command: {command!r}; use SpeedOverride, Stop, Resume or MoveTo")
    obj: dict[str, object] = {"v": COMMAND_SCHEMA_VERSION, "type": name}
    if isinstance(command, SpeedOverride):
        obj["scale"] = command.scale
    elif isinstance(command, MoveTo):
        obj["names"] = list(command.names)
        obj["position"] = list(command.position)
        obj["duration_s"] = command.duration_s
    if command.id:
        obj["id"] = command.id
    if command.valid_until_ns is not None:
        obj["valid_until_ns"] = command.valid_until_ns
    if command.justification:
        obj["justification"] = command.justification
    try:
        payload = json.dumps(obj, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise CommandError("bad_value", f"cannot encode {command!r}: {exc}") from None
    decode_command(payload)  # one definition of "valid": the decoder's
    return payload


def decode_command(payload: bytes | bytearray | memoryview) -> Command:
    """Parse and validate a command payload.

    Raises:
        CommandError: with ``reason`` in `REJECT_REASONS` and a message naming the problem and fix.
    """
    data = bytes(payload)
    if len(data) > MAX_COMMAND_BYTES:
        raise CommandError("too_large", f"command is {len(data)} bytes; the limit is {MAX_COMMAND_BYTES}")
    try:
        obj = json.loads(data.decode("utf-8"), parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except CommandError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CommandError("not_json", f"command is not UTF-8 JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise CommandError("not_object", f"command must be a JSON object, got {type(obj).__name__}")
    version = obj.get("v")
    if type(version) is not int or version != COMMAND_SCHEMA_VERSION:
        raise CommandError(
            "bad_version",
            f'"v" must be {COMMAND_SCHEMA_VERSION} (this receiver speaks command schema v1), got {_short(version)}',
        )
    kind = obj.get("type")
    if kind not in _TYPES:
        raise CommandError("unknown_type", f'"type" must be one of {sorted(_TYPES)}, got {_short(kind)}')
    cls, required, optional = _TYPES[kind]
    allowed = {"v", "type", *required, *optional}
    check_keys(obj, sorted(allowed), where=f"{kind}:", error=lambda message: CommandError("unknown_key", message))
    missing = [k for k in required if k not in obj]
    if missing:
        raise CommandError("missing_key", f"{kind} needs key(s) {missing}")
    cmd_id = obj.get("id", "")
    if not isinstance(cmd_id, str) or len(cmd_id) > MAX_ID_CHARS or not cmd_id.isprintable():
        raise CommandError("bad_value", f'"id" must be a printable string of at most {MAX_ID_CHARS} characters')
    lease = obj.get("valid_until_ns")
    if lease is not None and (type(lease) is not int or not 0 <= lease < 2**63):
        raise CommandError("bad_value", f'"valid_until_ns" must be an integer of ns in [0, 2^63), got {_short(lease)}')
    why = obj.get("justification", "")
    if not isinstance(why, str) or len(why) > MAX_JUSTIFICATION_CHARS:
        raise CommandError(
            "bad_value", f'"justification" must be a string of at most {MAX_JUSTIFICATION_CHARS} characters'
        )
    common = {"id": cmd_id, "valid_until_ns": lease, "justification": why}
    if cls is SpeedOverride:
        scale = _number(obj["scale"], "scale")
        if not 0.0 < scale <= MAX_SPEED_SCALE:
            raise CommandError("bad_value", f"scale must be in (0, {MAX_SPEED_SCALE}], got {scale!r}; use stop to halt")
        return SpeedOverride(scale=scale, **common)
    if cls is Stop:
        return Stop(**common)
    if cls is Resume:
        return Resume(**common)
    names, position = obj["names"], obj["position"]
    if not isinstance(names, list) or not names or len(names) > MAX_JOINTS:
        raise CommandError("bad_value", f"names must be a list of 1..{MAX_JOINTS} joint names")
    if not all(isinstance(n, str) and n and len(n) <= 128 and n.isprintable() for n in names):
        raise CommandError("bad_value", "names must be non-empty printable strings (at most 128 characters)")
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise CommandError("bad_value", f"names must be unique; repeated: {_short(dup, 80)}")
    if not isinstance(position, list) or len(position) != len(names):
        raise CommandError("bad_value", f"position must be a list of {len(names)} numbers (one per name)")
    pos = tuple(_number(x, f"position[{i}]") for i, x in enumerate(position))
    duration = _number(obj["duration_s"], "duration_s")
    if not 0.0 < duration <= MAX_DURATION_S:
        raise CommandError("bad_value", f"duration_s must be in (0, {MAX_DURATION_S:g}] s, got {duration!r}")
    return MoveTo(names=tuple(names), position=pos, duration_s=duration, **common)


def _number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CommandError("bad_value", f"{what} must be a number, got {_short(value)}")
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x):
        raise CommandError("bad_value", f"{what} must be finite, got {_short(value)}")
    return x


def _short(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reject_constant(name: str) -> float:
    raise CommandError("not_json", f"{name} is not allowed in commands; send finite numbers")


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        dup = sorted({k for k in keys if keys.count(k) > 1})
        raise CommandError("not_json", f"duplicate key(s) {_short(dup, 80)} in command")
    return dict(pairs)
