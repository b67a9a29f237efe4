# SPDX-License-Identifier: Apache-2.0
"""Property-based robustness: 10,500 malformed payloads (hypothesis, derandomised) never crash the decoder or
the ingest, each is refused with a reason code that is counted, and accepted state stays untouched.

Every strategy below produces payloads that are invalid BY CONSTRUCTION (truncations, structural field
corruption, wrong types, non-finite values, unknown joints, wrong versions, deep nesting, oversize
arrays, garbage), so "refused" is the only correct outcome. Per example we check both the decoder
(raises TelemetryError and nothing else) and the whole ingest (counts the same reason, no internal
error, latest sample / sequence / clock unchanged).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twin_ext.telemetry import (
    Birth,
    JointState,
    RejectReason,
    TelemetryError,
    TelemetryIngest,
    TelemetrySettings,
    Topics,
    decode,
    encode_binary,
    encode_json,
)

NAMES = tuple(f"panda_joint{i}" for i in range(1, 8))
MODEL = Birth("panda", "franka_panda", NAMES, 200.0, "boot", "binary")
TOPIC = Topics("panda").joint_states
FUZZ = settings(
    max_examples=1750,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


def _fresh_ingest() -> TelemetryIngest:
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="panda", state_buffer=4), model=MODEL)
    for seq in range(3):
        good = JointState("panda", seq, 1_000_000 * seq, NAMES, np.arange(7.0), np.zeros(7), np.ones(7))
        ingest.on_payload(TOPIC, encode_binary(good), 1_000_000 * seq + 5_000)
    ingest.poll_states()
    return ingest


INGEST = _fresh_ingest()


def _check_refused(payload: bytes, test: str) -> None:
    with pytest.raises(TelemetryError) as info:
        decode(payload, model=MODEL)
    reason = info.value.reason
    assert isinstance(reason, RejectReason)
    before = INGEST.stats
    latest, clock_samples, offset = INGEST.latest, INGEST.clock.samples, INGEST.clock.offset_ns
    INGEST.on_payload(TOPIC, payload, 10_000_000_000)
    after = INGEST.stats
    assert after.internal_errors == 0
    assert after.rejected == before.rejected + 1 and after.accepted == before.accepted
    assert after.rejected_by_reason[reason.value] == before.rejected_by_reason.get(reason.value, 0) + 1
    assert INGEST.latest is latest and after.last_seq == before.last_seq
    assert INGEST.clock.samples == clock_samples and INGEST.clock.offset_ns == offset
    assert INGEST.poll_states() == []
    INGEST.poll_events()


# ---------------------------------------------------------------------------------------- strategies

finite = st.floats(allow_nan=False, allow_infinity=False, width=64)


@st.composite
def valid_states(draw, names=NAMES):
    n = len(names)
    vec = st.lists(finite, min_size=n, max_size=n)
    return JointState(
        "panda",
        draw(st.integers(0, 2**32 - 1)),
        draw(st.integers(-(2**63), 2**63 - 1)),
        names,
        draw(vec),
        draw(st.none() | vec),
        draw(st.none() | vec),
    )


@st.composite
def truncated_binary(draw):
    raw = encode_binary(draw(valid_states()))
    return raw[: draw(st.integers(0, len(raw) - 1))]


@st.composite
def corrupted_binary_header(draw):
    msg = draw(valid_states())
    raw = bytearray(encode_binary(msg))
    version, flags, n, seq, stamp, id_len, names_len = struct.unpack_from("<BBHIqBH", raw, 4)
    field = draw(st.sampled_from(["version", "flags", "n", "id_len", "names_len", "extra", "magic_tail"]))
    if field == "version":
        raw[4] = draw(st.integers(0, 255).filter(lambda v: v != 1))
    elif field == "flags":
        raw[5] = flags | draw(st.integers(1, 63)) << 2
    elif field == "n":
        struct.pack_into("<H", raw, 6, draw(st.integers(0, 65535).filter(lambda v: v != n)))
    elif field == "id_len":
        raw[20] = draw(st.integers(0, 255).filter(lambda v: v != id_len))
    elif field == "names_len":
        struct.pack_into("<H", raw, 21, draw(st.integers(0, 65535).filter(lambda v: v != names_len)))
    elif field == "extra":
        raw += draw(st.binary(min_size=1, max_size=64))
    else:
        raw[3] = draw(st.integers(0, 255).filter(lambda v: v != ord("S")))
    return bytes(raw)


@st.composite
def non_finite_binary(draw):
    msg = draw(valid_states())
    raw = bytearray(encode_binary(msg))
    slots = (len(raw) - (23 + 5 + len(b"".join(bytes((len(x),)) + x.encode() for x in NAMES)))) // 8
    slot = draw(st.integers(0, slots - 1))
    bad = draw(
        st.sampled_from([float("nan"), float("inf"), float("-inf")]).map(lambda v: struct.pack("<d", v))
        | st.integers(1, 2**52 - 1).map(lambda m: struct.pack("<Q", (0x7FF << 52) | m))  # NaNs with any payload
    )
    raw[len(raw) - 8 * (slot + 1) : len(raw) - 8 * slot] = bad
    return bytes(raw)


json_scalars = st.none() | st.booleans() | st.integers() | finite | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda kids: st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4),
    max_leaves=12,
)


def _wrong_type_for(field: str):
    if field in ("version", "seq", "stamp_ns"):
        return json_values.filter(lambda v: type(v) is not int)
    if field == "robot_id":
        return json_values.filter(lambda v: not isinstance(v, str))
    if field == "name":
        return json_values.filter(
            lambda v: not isinstance(v, list) or not all(isinstance(x, str) for x in v) or len(v) != 7
        )
    # position / velocity / effort: anything but a list of 7 numbers (None and [] are valid for the optional ones)
    return json_values.filter(
        lambda v: (
            v is not None
            and v != []
            and not (isinstance(v, list) and len(v) == 7 and all(type(x) in (int, float) for x in v))
        )
    )


@st.composite
def mutated_json(draw):
    obj = json.loads(encode_json(draw(valid_states())))
    obj.setdefault("velocity", [0.0] * 7)
    kind = draw(
        st.sampled_from(["wrong_type", "missing", "unknown_field", "version", "seq_range", "length", "duplicate_key"])
    )
    if kind == "wrong_type":
        field = draw(
            st.sampled_from(["version", "robot_id", "seq", "stamp_ns", "name", "position", "velocity", "effort"])
        )
        obj[field] = draw(_wrong_type_for(field))
    elif kind == "missing":
        del obj[draw(st.sampled_from(["version", "robot_id", "seq", "stamp_ns", "name", "position"]))]
    elif kind == "unknown_field":
        key = draw(st.text(min_size=1, max_size=12).filter(lambda k: k not in obj and k not in ("velocity", "effort")))
        obj[key] = draw(json_values)
    elif kind == "version":
        obj["version"] = draw(st.integers().filter(lambda v: v != 1))
    elif kind == "seq_range":
        obj["seq"] = draw(st.integers(max_value=-1) | st.integers(min_value=2**32))
    elif kind == "length":
        field = draw(st.sampled_from(["position", "velocity", "name"]))
        size = draw(st.integers(1, 300).filter(lambda k: k != 7))
        obj[field] = (
            [f"j{i}" for i in range(size)] if field == "name" else draw(st.lists(finite, min_size=size, max_size=size))
        )
    else:
        text = json.dumps(obj)
        key = draw(st.sampled_from(["seq", "name", "position"]))
        return (text[:-1] + f', "{key}": {json.dumps(obj[key])}}}').encode()
    return json.dumps(obj).encode()


@st.composite
def non_finite_json(draw):
    obj = json.loads(encode_json(draw(valid_states())))
    field = draw(st.sampled_from(["position", "velocity", "effort"]))
    values = obj.get(field) or [0.0] * 7
    values[draw(st.integers(0, 6))] = "@@"
    obj[field] = values
    token = draw(st.sampled_from(["NaN", "Infinity", "-Infinity", "1e999", "-1e400", "1" + "0" * 400]))
    return json.dumps(obj).replace('"@@"', token).encode()


_NAME_CHARS = "abcdefghijklmnopqrstuvwxyz_0123456789-ÄÖÜßé漢字"


@st.composite
def unknown_joints(draw):
    names = list(NAMES)
    for i in draw(st.sets(st.integers(0, 6), min_size=1, max_size=7)):
        names[i] = draw(st.text(alphabet=_NAME_CHARS, min_size=1, max_size=30).filter(lambda s: s not in NAMES))
    if len(set(names)) != 7:
        names = [f"ghost_{i}" for i in range(7)]
    msg = draw(valid_states(tuple(names)))
    return draw(st.sampled_from([encode_json, encode_binary]))(msg)


@st.composite
def deep_or_huge(draw):
    kind = draw(st.sampled_from(["deep_array", "deep_object", "deep_field", "huge_array", "huge_names"]))
    depth = draw(st.integers(100, 30000))
    if kind == "deep_array":
        return b"[" * depth + b"]" * depth
    if kind == "deep_object":
        return b'{"a":' * depth + b"1" + b"}" * depth
    if kind == "deep_field":
        obj = json.loads(encode_json(draw(valid_states())))
        text = json.dumps(obj).replace('"position": [', '"position": ' + "[" * depth + "[", 1)
        return (text[:-1] + "]" * depth + "}").encode()
    size = draw(st.integers(300, 20000))
    if kind == "huge_array":
        return json.dumps(
            {"version": 1, "robot_id": "panda", "seq": 1, "stamp_ns": 1, "name": list(NAMES), "position": [0.5] * size}
        ).encode()
    return json.dumps(
        {
            "version": 1,
            "robot_id": "panda",
            "seq": 1,
            "stamp_ns": 1,
            "name": [f"j{i}" for i in range(size)],
            "position": [0.0] * size,
        }
    ).encode()


garbage = st.binary(max_size=400).filter(lambda b: not b[:1].isspace())


# ---------------------------------------------------------------------------------------- tests


@FUZZ
@given(payload=truncated_binary() | corrupted_binary_header())
def test_truncated_and_corrupted_binary_is_refused(payload):
    """Truncated binary payloads and corrupted header fields are refused, never mis-parsed."""
    _check_refused(payload, "binary_structure")


@FUZZ
@given(payload=non_finite_binary() | non_finite_json())
def test_non_finite_values_are_refused(payload):
    """NaN (any payload bits), ±inf and out-of-float64 numbers are refused in both codecs."""
    _check_refused(payload, "non_finite")


@FUZZ
@given(payload=mutated_json())
def test_wrong_types_fields_versions_and_lengths_are_refused(payload):
    """JSON with wrong types, missing/unknown/duplicate fields, wrong versions, bad ranges or lengths is refused."""
    _check_refused(payload, "json_fields")


@FUZZ
@given(payload=unknown_joints())
def test_unknown_joints_are_refused(payload):
    """Messages naming joints the robot model does not have are refused (both codecs)."""
    _check_refused(payload, "unknown_joints")


@FUZZ
@given(payload=deep_or_huge())
def test_deep_nesting_and_huge_arrays_are_refused(payload):
    """Deeply nested JSON (up to 30,000 levels) and huge arrays/names lists are refused without recursion or memory blow-up."""
    _check_refused(payload, "deep_or_huge")


@settings(FUZZ, max_examples=1750)
@given(payload=garbage)
def test_garbage_bytes_are_refused(payload):
    """Arbitrary bytes are refused with a reason (empty, unknown encoding, malformed ...)."""
    _check_refused(payload, "garbage")


@st.composite
def mutated_births_and_statuses(draw):
    if draw(st.booleans()):
        obj = {
            "version": 1,
            "robot_id": "panda",
            "model_id": "m",
            "joint_names": list(NAMES),
            "rate_hz": 200.0,
            "boot_id": "b",
            "codec": "json",
        }
        field = draw(st.sampled_from(sorted(obj)))
        topic = Topics("panda").birth
    else:
        obj = {"version": 1, "robot_id": "panda", "state": "online", "boot_id": "b"}
        field = draw(st.sampled_from(sorted(obj)))
        topic = Topics("panda").status
    kind = draw(st.sampled_from(["value", "delete", "big"]))
    if kind == "delete" and field != "boot_id":
        del obj[field]
    elif kind == "big":
        obj[field] = draw(st.sampled_from([10**400, -(10**400), 1e308 * 10, "x" * 5000, [0] * 5000]))
    else:
        obj[field] = draw(
            json_values.filter(
                lambda v, f=field, o=dict(obj): (
                    v != o[f] and not (f == "rate_hz" and type(v) in (int, float) and 0 < v <= 1e6)
                )
            )
        )
    return topic, json.dumps(obj).encode()


@settings(FUZZ, max_examples=600)
@given(case=mutated_births_and_statuses())
def test_malformed_births_and_statuses_never_escape_as_other_errors(case):
    """Births and statuses with wrong/huge/missing fields are refused with a reason (or, if still valid, accepted) —
    never an exception other than TelemetryError, never an internal error in the ingest."""
    from twin_ext.telemetry import decode_birth, decode_status

    topic, payload = case
    decoder = decode_birth if topic.endswith("/birth") else decode_status
    try:
        decoder(payload)
    except TelemetryError as exc:
        assert isinstance(exc.reason, RejectReason)
    ingest = TelemetryIngest(settings=TelemetrySettings(robot_id="panda"), model=MODEL)
    ingest.on_payload(topic, payload, 1)
    assert ingest.stats.internal_errors == 0
