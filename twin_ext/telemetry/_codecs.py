# SPDX-License-Identifier: Apache-2.0
"""Wire codecs for schema v1: JSON (interoperable) and a compact little-endian binary codec (rate).

One entry point decodes both: `decode(payload, model=...)` looks at the first bytes (the binary
magic ``b"TWJS"`` or a JSON object) and returns a validated `JointState` or raises `TelemetryError`
with a `RejectReason`. Nothing in a payload is ever evaluated or unpickled: JSON goes through the
standard parser with NaN/Infinity and duplicate keys refused, binary through `struct` and
`numpy.frombuffer` with every length checked against the payload size before it is used.

Births and statuses are small and rare, so they are JSON only (`encode_birth` / `decode_birth`,
`encode_status` / `decode_status`). The layouts are documented in docs/telemetry.md.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

import numpy as np

from ._errors import RejectReason, TelemetryError
from ._messages import (
    MAX_JOINTS,
    SCHEMA_VERSION,
    Birth,
    JointState,
    Status,
    _as_vector,
    _trusted_joint_state,
    check_joint_names,
    check_robot_id,
    check_seq,
    check_stamp,
)

__all__ = [
    "DEFAULT_MAX_PAYLOAD_BYTES",
    "BINARY_MAGIC",
    "encode_json",
    "encode_binary",
    "decode",
    "encode_birth",
    "decode_birth",
    "encode_status",
    "decode_status",
    "SteadyBinaryLayout",
]

DEFAULT_MAX_PAYLOAD_BYTES = 65536
"""Default size cap of one payload, bytes (``telemetry.max_payload_bytes``)."""
BINARY_MAGIC = b"TWJS"
"""First four bytes of a binary joint-state payload ("Twin Joint State")."""

# Binary header, little-endian: magic, version u8, flags u8, n u16, seq u32, stamp_ns i64,
# robot-id length u8, names-table length u16  (23 bytes).
_HEADER = struct.Struct("<4sBBHIqBH")
_SEQ_STAMP = struct.Struct("<Iq")  # seq and stamp_ns, at byte 8 of the header
_FLAG_VELOCITY = 0x01
_FLAG_EFFORT = 0x02
_FLAG_REFERENCE_POSITION = 0x04
_FLAG_REFERENCE_VELOCITY = 0x08
_KNOWN_FLAGS = _FLAG_VELOCITY | _FLAG_EFFORT | _FLAG_REFERENCE_POSITION | _FLAG_REFERENCE_VELOCITY
_ARRAY_FIELDS = ("velocity", "effort", "reference_position", "reference_velocity")  # flag bit k -> field k
_F64 = np.dtype("<f8")

_STATE_REQUIRED = ("version", "robot_id", "seq", "stamp_ns", "name", "position")
_STATE_FIELDS = frozenset(_STATE_REQUIRED + _ARRAY_FIELDS)
_BIRTH_FIELDS = frozenset(("version", "robot_id", "model_id", "joint_names", "rate_hz", "boot_id", "codec"))
_STATUS_REQUIRED = ("version", "robot_id", "state")
_STATUS_FIELDS = frozenset(_STATUS_REQUIRED + ("boot_id",))

_CACHE_LIMIT = 256  # distinct name lists / robot ids remembered (a robot sends one; bounded for safety)


def _reject(reason: RejectReason, detail: str) -> TelemetryError:
    return TelemetryError(reason, detail)


# ------------------------------------------------------------------------------------- encoding


def encode_json(msg: JointState) -> bytes:
    """Encode ``msg`` as one UTF-8 JSON object (sensor_msgs/JointState field names).

    Layout: ``{"version": 1, "robot_id": str, "seq": uint32, "stamp_ns": int64, "name": [str],
    "position": [float], "velocity": [float], "effort": [float], "reference_position": [float],
    "reference_velocity": [float]}``; the optional arrays are omitted when None (so a message without the
    reference channels is encoded exactly as before they existed). Floats use Python's shortest round-trip repr, so decoding gives the same float64s.
    """
    obj: dict[str, Any] = {
        "version": SCHEMA_VERSION,
        "robot_id": msg.robot_id,
        "seq": msg.seq,
        "stamp_ns": msg.stamp_ns,
        "name": list(msg.names),
        "position": msg.position.tolist(),
    }
    if msg.velocity is not None:
        obj["velocity"] = msg.velocity.tolist()
    if msg.effort is not None:
        obj["effort"] = msg.effort.tolist()
    if msg.reference_position is not None:
        obj["reference_position"] = msg.reference_position.tolist()
    if msg.reference_velocity is not None:
        obj["reference_velocity"] = msg.reference_velocity.tolist()
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


_names_table_out: dict[tuple[str, ...], bytes] = {}


def _names_table(names: tuple[str, ...]) -> bytes:
    table = _names_table_out.get(names)
    if table is None:
        parts = []
        for name in names:
            raw = name.encode("utf-8")
            if len(raw) > 255:
                raise _reject(RejectReason.BAD_NAME, f"joint name {name[:40]!r} is longer than 255 bytes of UTF-8")
            parts.append(bytes((len(raw),)) + raw)
        table = b"".join(parts)
        if len(_names_table_out) >= _CACHE_LIMIT:
            _names_table_out.clear()
        _names_table_out[names] = table
    return table


def encode_binary(msg: JointState) -> bytes:
    """Encode ``msg`` in the compact binary codec (layout in docs/telemetry.md).

    ``magic "TWJS" | version u8 | flags u8 | n u16 | seq u32 | stamp_ns i64 | id_len u8 |
    names_len u16 | robot_id | names table (n x [len u8, utf-8]) | position f64[n] |
    velocity f64[n] if flag 0x01 | effort f64[n] if flag 0x02 | reference_position f64[n] if flag 0x04 |
    reference_velocity f64[n] if flag 0x08``, all little-endian.
    """
    flags = 0
    arrays = [msg.position]
    for bit, field in enumerate(_ARRAY_FIELDS):
        values = getattr(msg, field)
        if values is not None:
            flags |= 1 << bit
            arrays.append(values)
    rid = msg.robot_id.encode("ascii")
    table = _names_table(msg.names)
    if len(table) > 0xFFFF:
        raise _reject(RejectReason.TOO_LARGE, f"names table of {len(table)} bytes exceeds 65535")
    header = _HEADER.pack(
        BINARY_MAGIC, SCHEMA_VERSION, flags, len(msg.names), msg.seq, msg.stamp_ns, len(rid), len(table)
    )
    data = np.concatenate(arrays).astype(_F64, copy=False).tobytes()
    return b"".join((header, rid, table, data))


def encode_birth(birth: Birth) -> bytes:
    """Encode a `Birth` as a JSON object (``version``, ``robot_id``, ``model_id``, ``joint_names``,
    ``rate_hz``, ``boot_id``, ``codec``)."""
    obj = {
        "version": SCHEMA_VERSION,
        "robot_id": birth.robot_id,
        "model_id": birth.model_id,
        "joint_names": list(birth.joint_names),
        "rate_hz": birth.rate_hz,
        "boot_id": birth.boot_id,
        "codec": birth.codec,
    }
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")


def encode_status(status: Status) -> bytes:
    """Encode a `Status` as a JSON object (``version``, ``robot_id``, ``state``, ``boot_id``)."""
    obj = {"version": SCHEMA_VERSION, "robot_id": status.robot_id, "state": status.state, "boot_id": status.boot_id}
    return json.dumps(obj, separators=(",", ":")).encode("utf-8")


# ------------------------------------------------------------------------------------- decoding


class _NonFiniteConstant(ValueError):
    pass


def _refuse_constant(token: str) -> Any:
    raise _NonFiniteConstant(token)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise _reject(RejectReason.MALFORMED_JSON, f"key {dup[:40]!r} appears more than once")
    return obj


_JSON = json.JSONDecoder(parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)


def _as_bytes(payload: object) -> bytes:
    if type(payload) is bytes:
        return payload  # type: ignore[return-value]
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    raise _reject(RejectReason.BAD_TYPE, f"payload must be bytes, got {type(payload).__name__}")


def _check_size(payload: bytes, max_bytes: int) -> None:
    size = len(payload)
    if size == 0:
        raise _reject(RejectReason.EMPTY, "payload is empty")
    if size > max_bytes:
        raise _reject(RejectReason.TOO_LARGE, f"payload of {size} bytes exceeds the cap of {max_bytes} bytes")


def _parse_json_object(payload: bytes) -> dict[str, Any]:
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _reject(RejectReason.MALFORMED_JSON, f"payload is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        obj = _JSON.decode(text)
    except TelemetryError:
        raise
    except _NonFiniteConstant as exc:
        raise _reject(RejectReason.NON_FINITE, f"JSON holds the non-finite constant {exc.args[0]}") from None
    except RecursionError:
        raise _reject(RejectReason.MALFORMED_JSON, "JSON is nested too deeply") from None
    except ValueError as exc:
        raise _reject(RejectReason.MALFORMED_JSON, f"invalid JSON: {str(exc)[:120]}") from None
    if type(obj) is not dict:
        raise _reject(RejectReason.MALFORMED_JSON, f"JSON top level must be an object, got {type(obj).__name__}")
    return obj


def _check_version(obj: dict[str, Any]) -> None:
    if "version" not in obj:
        raise _reject(RejectReason.MISSING_FIELD, "field 'version' is missing")
    version = obj["version"]
    if type(version) is not int:
        raise _reject(RejectReason.BAD_TYPE, f"version must be an integer, got {type(version).__name__}")
    if version != SCHEMA_VERSION:
        raise _reject(
            RejectReason.UNSUPPORTED_VERSION,
            f"schema version {version} is not supported (this twin speaks {SCHEMA_VERSION})",
        )


def _check_fields(obj: dict[str, Any], allowed: frozenset[str], required: tuple[str, ...], what: str) -> None:
    if len(obj) > len(allowed) or not allowed.issuperset(obj):
        extra = sorted(k for k in obj if k not in allowed)
        raise _reject(
            RejectReason.UNKNOWN_FIELD, f"{what} has unknown field(s) {', '.join(repr(k[:40]) for k in extra[:5])}"
        )
    for key in required:
        if key not in obj:
            raise _reject(RejectReason.MISSING_FIELD, f"{what} field {key!r} is missing")


# Validated name tuples, keyed by the tuple (JSON) or the raw names-table bytes (binary); values
# are canonical tuples, so later comparisons with the model's names mostly hit identity.
_json_names: dict[tuple, tuple[str, ...]] = {}
_binary_names: dict[bytes, tuple[str, ...]] = {}
_robot_ids: dict[bytes, str] = {}
_orders: dict[tuple[tuple[str, ...], tuple[str, ...]], Any] = {}


def _remember(cache: dict, key: Any, value: Any) -> None:
    if len(cache) >= _CACHE_LIMIT:
        cache.clear()
    cache[key] = value


def _model_order(names: tuple[str, ...], model_names: tuple[str, ...]) -> np.ndarray | None:
    """Index array mapping message order -> model order (None if already in model order)."""
    if names is model_names or names == model_names:
        return None
    key = (names, model_names)
    order = _orders.get(key)
    if order is None:
        index = {name: i for i, name in enumerate(names)}
        unknown = [x for x in names if x not in set(model_names)]
        if unknown:
            raise _reject(
                RejectReason.UNKNOWN_JOINT,
                f"joint(s) {', '.join(repr(x) for x in unknown[:5])} are not in the robot model {list(model_names)[:12]}",
            )
        missing = [x for x in model_names if x not in index]
        if missing:
            raise _reject(
                RejectReason.MISSING_JOINT,
                f"joint(s) {', '.join(repr(x) for x in missing[:5])} of the robot model are missing",
            )
        order = np.array([index[x] for x in model_names], dtype=np.intp)
        _remember(_orders, key, order)
    return order


def _reordered(vec: np.ndarray | None, order: np.ndarray) -> np.ndarray | None:
    if vec is None:
        return None
    out = vec[order]
    out.flags.writeable = False
    return out


def _model_names(model: Any) -> tuple[str, ...] | None:
    if model is None:
        return None
    try:
        names = model.dof_names
    except AttributeError:
        raise TypeError(
            f"model must have a 'dof_names' tuple (a RobotModel or Birth), got {type(model).__name__}"
        ) from None
    return names if type(names) is tuple else tuple(names)


def _decode_json_state(payload: bytes) -> JointState:
    obj = _parse_json_object(payload)
    _check_version(obj)
    _check_fields(obj, _STATE_FIELDS, _STATE_REQUIRED, "joint state")
    robot_id = check_robot_id(obj["robot_id"])
    seq = check_seq(obj["seq"])
    stamp_ns = check_stamp(obj["stamp_ns"])
    raw_names = obj["name"]
    names = None
    if type(raw_names) is list:
        try:
            names = _json_names.get(tuple(raw_names))
        except TypeError:  # unhashable element (a nested list): the check below names it
            pass
    if names is None:
        names = check_joint_names(raw_names, "name")
        _remember(_json_names, names, names)
    n = len(names)
    position = _as_vector(obj["position"], n, "position")
    velocity = obj.get("velocity")
    velocity = None if velocity is None or velocity == [] else _as_vector(velocity, n, "velocity")
    effort = obj.get("effort")
    effort = None if effort is None or effort == [] else _as_vector(effort, n, "effort")
    if "reference_position" not in obj and "reference_velocity" not in obj:
        return _trusted_joint_state(robot_id, seq, stamp_ns, names, position, velocity, effort)
    ref_q = obj.get("reference_position")
    ref_q = None if ref_q is None or ref_q == [] else _as_vector(ref_q, n, "reference_position")
    ref_qd = obj.get("reference_velocity")
    ref_qd = None if ref_qd is None or ref_qd == [] else _as_vector(ref_qd, n, "reference_velocity")
    if ref_qd is not None and ref_q is None:
        raise _reject(RejectReason.MISSING_FIELD, "reference_velocity needs reference_position (send both or neither)")
    return _trusted_joint_state(robot_id, seq, stamp_ns, names, position, velocity, effort, ref_q, ref_qd)


def _decode_binary_names(table: bytes, n: int) -> tuple[str, ...]:
    names = []
    pos, end = 0, len(table)
    for i in range(n):
        if pos >= end:
            raise _reject(RejectReason.MALFORMED_BINARY, f"names table ends before joint {i} of {n}")
        length = table[pos]
        pos += 1
        if length == 0 or pos + length > end:
            raise _reject(RejectReason.MALFORMED_BINARY, f"names table entry {i} has length {length} beyond the table")
        try:
            names.append(table[pos : pos + length].decode("utf-8"))
        except UnicodeDecodeError:
            raise _reject(RejectReason.BAD_NAME, f"joint name {i} is not UTF-8") from None
        pos += length
    if pos != end:
        raise _reject(RejectReason.MALFORMED_BINARY, f"names table has {end - pos} bytes after the {n} names")
    return check_joint_names(names, "name")


def _decode_binary_state(payload: bytes) -> JointState:
    size = len(payload)
    if size < _HEADER.size:
        raise _reject(
            RejectReason.MALFORMED_BINARY,
            f"binary payload of {size} bytes is shorter than the {_HEADER.size}-byte header",
        )
    _, version, flags, n, seq, stamp_ns, id_len, table_len = _HEADER.unpack_from(payload)
    if version != SCHEMA_VERSION:
        raise _reject(
            RejectReason.UNSUPPORTED_VERSION,
            f"binary schema version {version} is not supported (this twin speaks {SCHEMA_VERSION})",
        )
    if flags & ~_KNOWN_FLAGS:
        raise _reject(RejectReason.MALFORMED_BINARY, f"unknown flag bits 0x{flags & ~_KNOWN_FLAGS:02x}")
    if n == 0:
        raise _reject(RejectReason.BAD_LENGTH, "binary message has zero joints")
    if n > MAX_JOINTS:
        raise _reject(RejectReason.TOO_MANY_JOINTS, f"binary message has {n} joints, more than MAX_JOINTS={MAX_JOINTS}")
    if flags & _FLAG_REFERENCE_VELOCITY and not flags & _FLAG_REFERENCE_POSITION:
        raise _reject(
            RejectReason.MALFORMED_BINARY, "flag 0x08 (reference_velocity) needs flag 0x04 (reference_position)"
        )
    narrays = 1 + flags.bit_count()
    expected = _HEADER.size + id_len + table_len + 8 * n * narrays
    if size != expected:
        raise _reject(
            RejectReason.MALFORMED_BINARY, f"binary payload has {size} bytes, its header announces {expected}"
        )
    pos = _HEADER.size
    raw_id = payload[pos : pos + id_len]
    robot_id = _robot_ids.get(raw_id)
    if robot_id is None:
        try:
            robot_id = check_robot_id(raw_id.decode("ascii"))
        except UnicodeDecodeError:
            raise _reject(RejectReason.BAD_VALUE, "robot_id is not ASCII") from None
        _remember(_robot_ids, raw_id, robot_id)
    pos += id_len
    table = payload[pos : pos + table_len]
    names = _binary_names.get(table)
    if names is None:
        names = _decode_binary_names(table, n)
        _remember(_binary_names, table, names)
    elif len(names) != n:
        raise _reject(RejectReason.MALFORMED_BINARY, f"header announces {n} joints, the names table has {len(names)}")
    pos += table_len
    data = np.frombuffer(payload, dtype=_F64, count=n * narrays, offset=pos)
    # A finite sum means every value is finite (half the cost of isfinite + all); an infinite or NaN sum (a
    # non-finite value, or finite ones overflowing) is checked value by value. Summed as Python floats, which
    # overflow and propagate NaN silently (NumPy's reduction would warn on every such payload).
    if not math.isfinite(sum(data.tolist())) and not np.isfinite(data).all():
        i = int(np.flatnonzero(~np.isfinite(data))[0])
        present = ("position",) + tuple(f for bit, f in enumerate(_ARRAY_FIELDS) if flags & (1 << bit))
        field = present[i // n]
        raise _reject(RejectReason.NON_FINITE, f"{field}[{i % n}] is {data[i]!r}; values must be finite")
    position = data[:n]
    velocity = effort = None
    k = n
    if flags & _FLAG_VELOCITY:
        velocity = data[k : k + n]
        k += n
    if flags & _FLAG_EFFORT:
        effort = data[k : k + n]
        k += n
    if not flags & _FLAG_REFERENCE_POSITION:
        return _trusted_joint_state(robot_id, seq, stamp_ns, names, position, velocity, effort)
    ref_q = data[k : k + n]
    ref_qd = data[k + n : k + 2 * n] if flags & _FLAG_REFERENCE_VELOCITY else None
    return _trusted_joint_state(robot_id, seq, stamp_ns, names, position, velocity, effort, ref_q, ref_qd)


def decode(payload: bytes, *, model: Any = None, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> JointState:
    """Decode and validate one joint-state payload in either codec.

    Args:
        payload: the raw message (bytes; bytearray/memoryview are copied).
        model: optional robot model — anything with ``dof_names: tuple[str, ...]`` (a
            `twin_ext.robot.RobotModel`, or a `Birth`). When given, the message must name exactly
            the model's joints (any order); the returned message is in MODEL order.
        max_bytes: size cap; longer payloads are refused with `RejectReason.TOO_LARGE`.

    Returns:
        The `JointState` (arrays read-only float64 ``[n]``; rad|m, rad/s|m/s, N·m|N).

    Raises:
        TelemetryError: the payload is refused; ``.reason`` says why, the message says how to fix it.
    """
    payload = _as_bytes(payload)
    _check_size(payload, max_bytes)
    head = payload[:4]
    if head == BINARY_MAGIC:
        msg = _decode_binary_state(payload)
    elif head[:1] == b"{" or head[:1] in (b" ", b"\t", b"\r", b"\n"):
        msg = _decode_json_state(payload)
    else:
        raise _reject(
            RejectReason.UNKNOWN_ENCODING,
            f"payload starts with {head!r}: neither a JSON object nor the binary magic {BINARY_MAGIC!r}",
        )
    model_names = _model_names(model)
    if model_names is not None:
        order = _model_order(msg.names, model_names)
        if order is not None:
            msg = _trusted_joint_state(
                msg.robot_id,
                msg.seq,
                msg.stamp_ns,
                model_names,
                _reordered(msg.position, order),
                _reordered(msg.velocity, order),
                _reordered(msg.effort, order),
                _reordered(msg.reference_position, order),
                _reordered(msg.reference_velocity, order),
            )
    return msg


def decode_birth(payload: bytes, *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Birth:
    """Decode and validate a birth payload (JSON). Raises `TelemetryError` like `decode`."""
    payload = _as_bytes(payload)
    _check_size(payload, max_bytes)
    obj = _parse_json_object(payload)
    _check_version(obj)
    _check_fields(obj, _BIRTH_FIELDS, tuple(sorted(_BIRTH_FIELDS)), "birth")
    return Birth(
        robot_id=obj["robot_id"],
        model_id=obj["model_id"],
        joint_names=obj["joint_names"],
        rate_hz=obj["rate_hz"],
        boot_id=obj["boot_id"],
        codec=obj["codec"],
    )


def decode_status(payload: bytes, *, max_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES) -> Status:
    """Decode and validate a status payload (JSON). Raises `TelemetryError` like `decode`."""
    payload = _as_bytes(payload)
    _check_size(payload, max_bytes)
    obj = _parse_json_object(payload)
    _check_version(obj)
    _check_fields(obj, _STATUS_FIELDS, _STATUS_REQUIRED, "status")
    return Status(robot_id=obj["robot_id"], state=obj["state"], boot_id=obj.get("boot_id", ""))


class SteadyBinaryLayout:
    """The binary layout of one robot's joint states, learnt from a decoded payload, for reading the next ones
    without decoding them in full (`TelemetryIngest`'s steady lane).

    A robot sends the same header, robot id and names table in every joint state; only ``seq``, ``stamp_ns`` and
    the values change. A payload whose size and unchanging bytes equal the learnt ones therefore decodes to the
    same robot id, names and fields, and `read` only has to unpack what changes and check that it is finite —
    what `decode` would return, without its ~10 µs of checks that cannot fail again. Learnt only from payloads
    in the model's joint order without reference arrays (`learn`); anything else takes `decode`.

    Attributes:
        size: payload size, bytes. robot_id, names: as decoded. n: joints.
        velocity, effort: whether the payloads carry these arrays.
    """

    __slots__ = ("size", "_head", "_tail", "_offset", "_values", "_count", "robot_id", "names", "n", "velocity",
                 "effort")  # fmt: skip

    def __init__(self, payload: bytes, msg: JointState) -> None:
        _, _, flags, n, _, _, id_len, table_len = _HEADER.unpack_from(payload)
        self.size = len(payload)
        self._head = payload[:8]  # magic, version, flags, n
        self._offset = _HEADER.size + id_len + table_len
        self._tail = payload[20 : self._offset]  # id and table lengths, robot id, names table
        self._count = n * (1 + flags.bit_count())
        self._values = struct.Struct(f"<{self._count}d")
        self.robot_id, self.names, self.n = msg.robot_id, msg.names, n
        self.velocity, self.effort = bool(flags & _FLAG_VELOCITY), bool(flags & _FLAG_EFFORT)

    @staticmethod
    def learn(payload: bytes, msg: JointState, model_names: tuple[str, ...]) -> SteadyBinaryLayout | None:
        """The layout of ``payload`` (binary, decoded to ``msg`` in ``model_names`` order), or None if it has
        reference arrays or its names table is in another order (then its payloads keep taking `decode`)."""
        if payload[:4] != BINARY_MAGIC or msg.names != model_names or msg.reference_position is not None:
            return None
        return SteadyBinaryLayout(payload, msg)

    def read(self, payload: bytes) -> tuple[int, int, tuple[float, ...]] | None:
        """``(seq, stamp_ns, values)`` of a payload of this layout with finite values (positions, then
        velocities and efforts if present: ``n`` each), or None (another layout, or a value not finite:
        `decode` then says what is wrong)."""
        if len(payload) != self.size or not payload.startswith(self._head) or not payload.startswith(self._tail, 20):
            return None
        values = self._values.unpack_from(payload, self._offset)
        if not math.isfinite(sum(values)):
            return None  # a value not finite, or finite ones whose sum overflows: decode decides
        seq, stamp_ns = _SEQ_STAMP.unpack_from(payload, 8)
        return seq, stamp_ns, values

    def joint_state(self, payload: bytes, seq: int, stamp_ns: int) -> JointState:
        """The `JointState` `decode` would return for ``payload`` (read by `read`): read-only float64 ``[n]``
        arrays viewing the payload."""
        n = self.n
        data = np.frombuffer(payload, dtype=_F64, count=self._count, offset=self._offset)
        velocity = effort = None
        k = n
        if self.velocity:
            velocity = data[k : k + n]
            k += n
        if self.effort:
            effort = data[k : k + n]
        return _trusted_joint_state(self.robot_id, seq, stamp_ns, self.names, data[:n], velocity, effort)
