# SPDX-License-Identifier: Apache-2.0
"""Messages v1 and codecs: round trips, the documented binary layout, and one refusal per reason code."""

from __future__ import annotations

import json
import pickle
import struct

import numpy as np
import pytest

from twin_ext.telemetry import (
    BINARY_MAGIC,
    MAX_JOINTS,
    Birth,
    JointState,
    RejectReason,
    Status,
    TelemetryError,
    decode,
    decode_birth,
    decode_status,
    encode_binary,
    encode_birth,
    encode_json,
    encode_status,
)

NAMES = tuple(f"panda_joint{i}" for i in range(1, 8))


def _state(**overrides) -> JointState:
    fields = dict(
        robot_id="panda-01", seq=41, stamp_ns=1_700_000_000_123_456_789, names=NAMES,
        position=np.linspace(-1.0, 1.0, 7), velocity=np.arange(7) * 0.1, effort=np.arange(7) * -2.5,
    )  # fmt: skip
    fields.update(overrides)
    return JointState(**fields)


def _json(**overrides) -> bytes:
    obj = json.loads(encode_json(_state()))
    for key, value in overrides.items():
        if value is ...:
            obj.pop(key)
        else:
            obj[key] = value
    return json.dumps(obj).encode()


def _reason(payload, **kwargs) -> RejectReason:
    with pytest.raises(TelemetryError) as info:
        decode(payload, **kwargs)
    assert info.value.reason.fix in str(info.value), "every refusal message carries the fix"
    return info.value.reason


@pytest.mark.parametrize("encode", [encode_json, encode_binary])
@pytest.mark.parametrize("optional", [(True, True), (False, False), (True, False), (False, True)])
def test_round_trip_is_exact_in_both_codecs(encode, optional):
    """Encoding then decoding gives back the same message, bit for bit, with or without velocity/effort."""
    with_velocity, with_effort = optional
    msg = _state(
        position=np.array([0.1, -1e-300, 1e300, np.pi, -0.0, 2.0**-1074, 7.0]),
        velocity=np.arange(7) * 0.3 if with_velocity else None,
        effort=np.arange(7) * 0.7 if with_effort else None,
    )
    back = decode(encode(msg))
    assert back == msg
    assert back.position.dtype == np.float64 and not back.position.flags.writeable
    assert (back.velocity is None) == (not with_velocity) and (back.effort is None) == (not with_effort)


def test_binary_layout_matches_the_documented_offsets():
    """The binary header is magic|version|flags|n|seq|stamp|id_len|names_len, little-endian, then id, names, f64 arrays."""
    msg = _state(names=("a", "bc"), position=[1.0, 2.0], velocity=None, effort=[3.0, 4.0], seq=0xDEADBEEF, stamp_ns=-5)
    raw = encode_binary(msg)
    assert raw[:4] == BINARY_MAGIC == b"TWJS"
    magic, version, flags, n, seq, stamp, id_len, names_len = struct.unpack_from("<4sBBHIqBH", raw)
    assert (version, flags, n, seq, stamp, id_len, names_len) == (1, 0x02, 2, 0xDEADBEEF, -5, 8, 5)
    assert raw[23:31] == b"panda-01" and raw[31:36] == b"\x01a\x02bc"
    assert np.frombuffer(raw[36:], "<f8").tolist() == [1.0, 2.0, 3.0, 4.0]
    assert len(raw) == 23 + 8 + 5 + 8 * 4


def test_json_uses_joint_state_field_names():
    """The JSON codec speaks sensor_msgs/JointState names (name/position/velocity/effort) plus identity and order."""
    obj = json.loads(encode_json(_state(effort=None)))
    assert set(obj) == {"version", "robot_id", "seq", "stamp_ns", "name", "position", "velocity"}
    assert obj["name"] == list(NAMES) and obj["version"] == 1


def test_decode_with_model_reorders_to_model_order():
    """With a model, a message naming the model's joints in another order comes back in model order."""
    birth = Birth("panda-01", "franka_panda", NAMES, 200.0, "boot-a", "binary")
    shuffled = tuple(reversed(NAMES))
    msg = _state(names=shuffled, position=np.arange(7.0))
    for payload in (encode_json(msg), encode_binary(msg)):
        back = decode(payload, model=birth)
        assert back.names == NAMES
        np.testing.assert_array_equal(back.position, np.arange(7.0)[::-1])
        np.testing.assert_array_equal(back.effort, msg.effort[::-1])


def test_empty_velocity_and_effort_arrays_mean_not_measured():
    """Like sensor_msgs/JointState, empty velocity/effort arrays (or null) mean 'not measured'."""
    msg = decode(_json(velocity=[], effort=None))
    assert msg.velocity is None and msg.effort is None


GOOD = _json()
BAD_JSON = [
    (b"", RejectReason.EMPTY),
    (b"{" + b" " * 70000 + b"}", RejectReason.TOO_LARGE),
    (b"\x80\x03}q\x00.", RejectReason.UNKNOWN_ENCODING),  # a pickle is never unpickled
    (pickle.dumps({"version": 1}), RejectReason.UNKNOWN_ENCODING),
    (b'{"version": 1,', RejectReason.MALFORMED_JSON),
    (b"{\xff\xfe}", RejectReason.MALFORMED_JSON),
    (b" [1, 2]", RejectReason.MALFORMED_JSON),
    (b'{"a":' * 5000 + b"1" + b"}" * 5000, RejectReason.MALFORMED_JSON),
    (b'{"version":1,"version":1}', RejectReason.MALFORMED_JSON),
    (_json(version=2), RejectReason.UNSUPPORTED_VERSION),
    (_json(version="1"), RejectReason.BAD_TYPE),
    (_json(version=...), RejectReason.MISSING_FIELD),
    (_json(seq=...), RejectReason.MISSING_FIELD),
    (_json(velocities=[0.0] * 7), RejectReason.UNKNOWN_FIELD),
    (_json(seq=1.0), RejectReason.BAD_TYPE),
    (_json(seq=True), RejectReason.BAD_TYPE),
    (_json(seq=2**32), RejectReason.BAD_VALUE),
    (_json(seq=-1), RejectReason.BAD_VALUE),
    (_json(stamp_ns=2**63), RejectReason.BAD_VALUE),
    (_json(stamp_ns="123"), RejectReason.BAD_TYPE),
    (_json(robot_id="a/b"), RejectReason.BAD_VALUE),
    (_json(robot_id=7), RejectReason.BAD_TYPE),
    (_json(name="panda_joint1"), RejectReason.BAD_TYPE),
    (_json(name=[]), RejectReason.BAD_LENGTH),
    (_json(name=["a", "a", "b", "c", "d", "e", "f"]), RejectReason.BAD_NAME),
    (_json(name=["", "b", "c", "d", "e", "f", "g"]), RejectReason.BAD_NAME),
    (_json(name=["x" * 129, "b", "c", "d", "e", "f", "g"]), RejectReason.BAD_NAME),
    (_json(name=[1, "b", "c", "d", "e", "f", "g"]), RejectReason.BAD_TYPE),
    (_json(name=[f"j{i}" for i in range(MAX_JOINTS + 1)]), RejectReason.TOO_MANY_JOINTS),
    (_json(position=[0.0] * 6), RejectReason.BAD_LENGTH),
    (_json(position=[[0.0]] * 7), RejectReason.BAD_TYPE),
    (_json(position=["0.5"] * 7), RejectReason.BAD_TYPE),
    (_json(position=[True] * 7), RejectReason.BAD_TYPE),
    (_json(velocity=[0.0] * 8), RejectReason.BAD_LENGTH),
    (_json(effort="fast"), RejectReason.BAD_TYPE),
    (_json(position=[1e999] * 7), RejectReason.NON_FINITE),
    (_json(position=[10**400] + [0.0] * 6), RejectReason.NON_FINITE),
    (GOOD.replace(b"-1.0", b"NaN", 1), RejectReason.NON_FINITE),
    (GOOD.replace(b"-1.0", b"-Infinity", 1), RejectReason.NON_FINITE),
]


@pytest.mark.parametrize("payload,reason", BAD_JSON, ids=[f"{r.value}-{i}" for i, (_, r) in enumerate(BAD_JSON)])
def test_malformed_json_is_refused_with_its_reason(payload, reason):
    """Each JSON rule, when broken, is refused with its own reason code."""
    assert _reason(payload) is reason


def _binary(msg=None, *, patch: dict[int, bytes] | None = None, cut: int | None = None, extra: bytes = b"") -> bytes:
    raw = bytearray(encode_binary(msg or _state()))
    for offset, value in (patch or {}).items():
        offset %= len(raw)  # negative offsets count from the end
        raw[offset : offset + len(value)] = value
    raw = bytes(raw) + extra
    return raw[:cut] if cut is not None else raw


BAD_BINARY = [
    (b"TWJS", RejectReason.MALFORMED_BINARY),
    (_binary(cut=-1), RejectReason.MALFORMED_BINARY),
    (_binary(cut=30), RejectReason.MALFORMED_BINARY),
    (_binary(extra=b"\x00"), RejectReason.MALFORMED_BINARY),
    (_binary(patch={4: b"\x02"}), RejectReason.UNSUPPORTED_VERSION),
    (_binary(patch={5: b"\x04"}), RejectReason.MALFORMED_BINARY),
    (_binary(patch={6: struct.pack("<H", 0)}), RejectReason.BAD_LENGTH),
    (_binary(patch={6: struct.pack("<H", 1000)}), RejectReason.TOO_MANY_JOINTS),
    (_binary(patch={6: struct.pack("<H", 8)}), RejectReason.MALFORMED_BINARY),
    (_binary(patch={20: b"\x00"}), RejectReason.MALFORMED_BINARY),
    (_binary(patch={23: b"p/"}), RejectReason.BAD_VALUE),
    (_binary(patch={23: b"\xff"}), RejectReason.BAD_VALUE),
    (_binary(patch={31: b"\x00"}), RejectReason.MALFORMED_BINARY),
    (_binary(patch={32: b"\xff\xfe"}), RejectReason.BAD_NAME),
    (
        _binary(_state(names=("a", "b"), position=[0, 0], velocity=None, effort=None), patch={34: b"a"}),
        RejectReason.BAD_NAME,
    ),
    (_binary(patch={-8: struct.pack("<d", float("nan"))}), RejectReason.NON_FINITE),
    (_binary(patch={-16: struct.pack("<d", float("-inf"))}), RejectReason.NON_FINITE),
]


@pytest.mark.parametrize("payload,reason", BAD_BINARY, ids=[f"{r.value}-{i}" for i, (_, r) in enumerate(BAD_BINARY)])
def test_malformed_binary_is_refused_with_its_reason(payload, reason):
    """Each binary rule (lengths, flags, version, names, finite values), when broken, has its own reason."""
    assert _reason(payload) is reason


def test_binary_values_whose_sum_overflows_are_still_finite():
    """Huge finite values (their sum is infinite) are accepted; one non-finite value among them is still refused."""
    huge = _state(effort=np.full(7, 1e308))
    assert np.array_equal(decode(encode_binary(huge)).effort, huge.effort)
    raw = bytearray(encode_binary(huge))
    raw[-8:] = struct.pack("<d", float("inf"))
    assert _reason(bytes(raw)) is RejectReason.NON_FINITE


def test_names_are_checked_against_the_model():
    """With a model, an unknown joint is UNKNOWN_JOINT and an absent one MISSING_JOINT, in both codecs."""
    birth = Birth("panda-01", "franka_panda", NAMES, 200.0, "boot-a", "json")
    renamed = _state(names=NAMES[:-1] + ("gripper",))
    fewer = _state(names=NAMES[:-1], position=np.zeros(6), velocity=None, effort=None)
    for encode in (encode_json, encode_binary):
        assert _reason(encode(renamed), model=birth) is RejectReason.UNKNOWN_JOINT
        assert _reason(encode(fewer), model=birth) is RejectReason.MISSING_JOINT


def test_size_cap_is_configurable():
    """The size cap is checked before anything is parsed and can be lowered per call."""
    payload = encode_binary(_state())
    assert decode(payload, max_bytes=len(payload)) == _state()
    assert _reason(payload, max_bytes=len(payload) - 1) is RejectReason.TOO_LARGE


def test_constructor_validates_like_the_decoder():
    """A JointState built in code obeys the same rules as a decoded one (so encoders never emit invalid payloads)."""
    with pytest.raises(TelemetryError) as info:
        _state(position=[0.0, np.inf, 0, 0, 0, 0, 0])
    assert info.value.reason is RejectReason.NON_FINITE
    with pytest.raises(TelemetryError) as info:
        _state(seq=2**32)
    assert info.value.reason is RejectReason.BAD_VALUE
    with pytest.raises(TelemetryError):
        _state(position=np.array(["a"] * 7))


def test_birth_and_status_round_trip_and_validate():
    """Births and statuses survive encode/decode; bad ones are refused with a reason."""
    birth = Birth("panda-01", "franka_panda", NAMES, 200, "4f1c-boot", "binary")
    assert decode_birth(encode_birth(birth)) == birth and birth.rate_hz == 200.0
    status = Status("panda-01", "offline", "4f1c-boot")
    assert decode_status(encode_status(status)) == status
    bad_birth = json.loads(encode_birth(birth))
    bad_birth["rate_hz"] = -1
    with pytest.raises(TelemetryError) as info:
        decode_birth(json.dumps(bad_birth).encode())
    assert info.value.reason is RejectReason.BAD_VALUE
    with pytest.raises(TelemetryError) as info:
        decode_status(b'{"version":1,"robot_id":"panda-01","state":"sleeping"}')
    assert info.value.reason is RejectReason.BAD_VALUE
    with pytest.raises(TelemetryError) as info:
        decode_birth(b'{"version":1}')
    assert info.value.reason is RejectReason.MISSING_FIELD


def test_decode_accepts_bytearray_and_refuses_text():
    """decode takes any bytes-like payload; a str is a BAD_TYPE refusal, not a crash."""
    payload = encode_binary(_state())
    assert decode(bytearray(payload)) == decode(memoryview(payload)) == _state()
    assert _reason(payload.decode("latin-1")) is RejectReason.BAD_TYPE
