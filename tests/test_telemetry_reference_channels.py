# SPDX-License-Identifier: Apache-2.0
"""The optional reference channels of a joint state (``reference_position`` / ``reference_velocity``).

Oracles: the message itself (round trips), golden payloads written by the encoder before the channels existed
(v1 without them is unchanged byte for byte), and the emulator's ground truth (the controller's targets).
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from twin_ext.telemetry import (
    Birth,
    JointState,
    RejectReason,
    TelemetryError,
    decode,
    encode_binary,
    encode_json,
)

NAMES = ("joint1", "joint2", "joint3")
CODECS = {"json": encode_json, "binary": encode_binary}

# Written by the encoders of commit c38cdba (before the reference channels existed).
GOLDEN = [
    (
        JointState("arm-7", 4294967295, -123456789012345, ("a", "b"), [0.1, -2.5], [1e-300, 3.0], [-0.0, 7.25]),
        b'{"version":1,"robot_id":"arm-7","seq":4294967295,"stamp_ns":-123456789012345,"name":["a","b"],'
        b'"position":[0.1,-2.5],"velocity":[1e-300,3.0],"effort":[-0.0,7.25]}',
        "54574a5301030200ffffffff8720f279b78fffff05040061726d2d37016101629a9999999999b93f00000000000004c0"
        "59f3f8c21f6ea501000000000000084000000000000000800000000000001d40",
    ),
    (
        JointState("arm-7", 0, 5, ("a", "b"), [0.1, -2.5]),
        b'{"version":1,"robot_id":"arm-7","seq":0,"stamp_ns":5,"name":["a","b"],"position":[0.1,-2.5]}',
        "54574a530100020000000000050000000000000005040061726d2d37016101629a9999999999b93f00000000000004c0",
    ),
]


def _state(**changes) -> JointState:
    fields = dict(
        robot_id="panda-01",
        seq=7,
        stamp_ns=1_700_000_000_000_000_123,
        names=NAMES,
        position=[0.1, -0.2, 0.3],
        velocity=[0.01, 0.0, -0.5],
        effort=[1.0, 2.0, 3.0],
        reference_position=[0.11, -0.19, 0.31],
        reference_velocity=[0.02, 0.0, -0.45],
    )
    fields.update(changes)
    return JointState(**fields)


@pytest.mark.parametrize("codec", CODECS)
@pytest.mark.parametrize(
    "changes",
    [{}, {"reference_velocity": None}, {"velocity": None, "effort": None}, {"effort": None, "velocity": None}],
    ids=["all", "no-ref-velocity", "position-and-reference", "no-effort"],
)
def test_a_message_with_reference_channels_round_trips(codec, changes):
    """Every combination of the optional arrays with a reference decodes to the same message (exact floats)."""
    msg = _state(**changes)
    back = decode(CODECS[codec](msg))
    assert back == msg
    np.testing.assert_array_equal(back.reference_position, msg.reference_position)
    assert not back.reference_position.flags.writeable
    if msg.reference_velocity is None:
        assert back.reference_velocity is None
    else:
        np.testing.assert_array_equal(back.reference_velocity, msg.reference_velocity)


@pytest.mark.parametrize("codec", CODECS)
def test_reference_channels_follow_the_model_order(codec):
    """With a model, the reference arrays are reordered into model order like position and velocity."""
    msg = _state()
    birth = Birth("panda-01", "franka_panda", tuple(reversed(NAMES)), 200.0, "boot-a", codec)
    back = decode(CODECS[codec](msg), model=birth)
    assert back.names == tuple(reversed(NAMES))
    np.testing.assert_array_equal(back.reference_position, msg.reference_position[::-1])
    np.testing.assert_array_equal(back.reference_velocity, msg.reference_velocity[::-1])


@pytest.mark.parametrize("msg,json_bytes,binary_hex", GOLDEN, ids=["all-arrays", "position-only"])
def test_a_v1_message_without_reference_is_unchanged_byte_for_byte(msg, json_bytes, binary_hex):
    """Encoding a message without reference channels gives the pre-existing payloads, which still decode."""
    assert encode_json(msg) == json_bytes
    assert encode_binary(msg).hex() == binary_hex
    for payload in (json_bytes, bytes.fromhex(binary_hex)):
        back = decode(payload)
        assert back == msg and back.reference_position is None and back.reference_velocity is None


def test_the_binary_flags_and_length_count_the_reference_arrays():
    """Flags 0x04 / 0x08 announce the reference arrays; the payload grows by 8 n bytes for each."""
    msg = _state(velocity=None, effort=None)
    raw = encode_binary(msg)
    flags = struct.unpack_from("<B", raw, 5)[0]
    assert flags == 0x0C
    assert len(raw) == len(encode_binary(_state(velocity=None, effort=None, reference_position=None,
                                                reference_velocity=None))) + 2 * 8 * len(NAMES)  # fmt: skip


def _reason(payload: bytes) -> RejectReason:
    with pytest.raises(TelemetryError) as info:
        decode(payload)
    return info.value.reason


def test_a_reference_velocity_without_reference_position_is_refused():
    """A reference velocity alone is refused in the constructor and in both codecs."""
    with pytest.raises(TelemetryError) as info:
        _state(reference_position=None)
    assert info.value.reason is RejectReason.MISSING_FIELD
    obj = json.loads(encode_json(_state()))
    del obj["reference_position"]
    assert _reason(json.dumps(obj).encode()) is RejectReason.MISSING_FIELD
    raw = bytearray(encode_binary(_state(reference_velocity=None)))
    raw[5] = (raw[5] & ~0x04) | 0x08  # the same array, announced as a velocity without a position
    assert _reason(bytes(raw)) is RejectReason.MALFORMED_BINARY


@pytest.mark.parametrize("codec", CODECS)
def test_a_non_finite_reference_is_refused_and_named(codec):
    """A NaN in a reference array is refused as non-finite, with the field named."""
    if codec == "json":
        text = encode_json(_state()).decode().replace('"reference_velocity":[0.02', '"reference_velocity":[NaN')
        payload = text.encode()
    else:
        raw = bytearray(encode_binary(_state()))
        raw[-8:] = struct.pack("<d", float("nan"))
        payload = bytes(raw)
    with pytest.raises(TelemetryError) as info:
        decode(payload)
    assert info.value.reason is RejectReason.NON_FINITE
    if codec == "binary":
        assert "reference_velocity[2]" in str(info.value)


def test_wrong_length_references_are_refused():
    """A reference array must have one value per joint name."""
    obj = json.loads(encode_json(_state()))
    obj["reference_position"] = [0.0, 1.0]
    assert _reason(json.dumps(obj).encode()) is RejectReason.BAD_LENGTH


# ---- the emulator -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("codec", CODECS)
def test_the_emulator_publishes_the_controllers_targets_when_configured(codec):
    """With publish_reference the emulator's joint states carry its controller's targets of the sampled step;
    by default they carry none (the payloads stay plain v1)."""
    from twin_ext.emulator import EmulatedRobot, EmulatorSettings, ImpairmentProfile

    profile = ImpairmentProfile(rate_hz=100.0)
    assert EmulatorSettings().publish_reference is False
    plain = EmulatedRobot(EmulatorSettings(codec=codec), profile=profile).simulate(0.5, seed=3)
    sim = EmulatedRobot(EmulatorSettings(codec=codec, publish_reference=True), profile=profile).simulate(0.5, seed=3)
    states = [decode(d.payload) for d in plain.deliveries if d.kind == "joint_states"]
    assert states and all(m.reference_position is None and m.reference_velocity is None for m in states)
    if codec == "json":
        assert all(b"reference" not in d.payload for d in plain.deliveries)
    with_ref = [decode(d.payload) for d in sim.deliveries if d.kind == "joint_states"]
    assert len(with_ref) == len(states)
    steps = sim.samples.step
    ref_q = np.array([m.reference_position for m in with_ref])
    ref_qd = np.array([m.reference_velocity for m in with_ref])
    np.testing.assert_array_equal(ref_q, sim.truth.q_target[steps])
    np.testing.assert_array_equal(ref_qd, sim.truth.qd_target[steps])
    assert np.abs(ref_qd).max() > 0.1  # the program moves within the first half second
    for a, b in zip(states, with_ref, strict=True):  # the measurements are the same with or without the channels
        np.testing.assert_array_equal(a.position, b.position)
