# SPDX-License-Identifier: Apache-2.0
"""Why a telemetry payload was refused: `RejectReason` codes and the `TelemetryError` that carries one.

Every refusal anywhere in the pipeline (codec, validation, ordering, topic routing) has exactly one
reason code; `TelemetryIngest` counts refusals per code and records them with the code.
"""

from __future__ import annotations

import enum

from .. import TwinExtError

__all__ = ["RejectReason", "TelemetryError"]


class RejectReason(str, enum.Enum):
    """Reason code of a refused telemetry payload (the value is the stable, recorded string)."""

    EMPTY = "empty"
    """Zero-length payload (also what clearing a retained message delivers)."""
    TOO_LARGE = "too_large"
    """Payload longer than the size cap (``telemetry.max_payload_bytes``)."""
    UNKNOWN_ENCODING = "unknown_encoding"
    """Neither a JSON object nor the binary codec's magic bytes."""
    MALFORMED_JSON = "malformed_json"
    """Not UTF-8, not valid JSON, not an object, duplicate keys or nested too deeply."""
    MALFORMED_BINARY = "malformed_binary"
    """Binary payload truncated, with trailing bytes, bad flags or inconsistent lengths."""
    UNSUPPORTED_VERSION = "unsupported_version"
    """A schema version this twin does not speak."""
    MISSING_FIELD = "missing_field"
    """A required field is absent."""
    UNKNOWN_FIELD = "unknown_field"
    """A field v1 does not define (refused so typos such as ``velocities`` cannot pass silently)."""
    BAD_TYPE = "bad_type"
    """A field has the wrong type (e.g. a string where a number belongs, a bool as an integer)."""
    BAD_VALUE = "bad_value"
    """A field is out of range (seq outside uint32, stamp outside int64, bad robot id, bad state)."""
    BAD_LENGTH = "bad_length"
    """An array's length differs from the number of joint names."""
    TOO_MANY_JOINTS = "too_many_joints"
    """More joints than ``MAX_JOINTS``."""
    BAD_NAME = "bad_name"
    """A joint name is empty, too long, has control characters or repeats."""
    NON_FINITE = "non_finite"
    """NaN, infinity or a number too large for float64."""
    UNKNOWN_JOINT = "unknown_joint"
    """A joint name the robot model (or the robot's birth) does not have."""
    MISSING_JOINT = "missing_joint"
    """A joint of the robot model (or birth) is absent from the message."""
    WRONG_ROBOT = "wrong_robot"
    """The robot id differs from the topic's or from the one this twin follows."""
    NO_BIRTH = "no_birth"
    """A state arrived before the robot's birth while ``telemetry.require_birth`` is set."""
    DUPLICATE = "duplicate"
    """A sequence number already accepted (redelivery or a duplicating network)."""
    OUT_OF_ORDER = "out_of_order"
    """A sequence number older than one already accepted (arrived late)."""
    UNEXPECTED_TOPIC = "unexpected_topic"
    """A topic outside ``<prefix>/<robot_id>/{joint_states,birth,status}``."""
    OUT_OF_LIMITS = "out_of_limits"
    """A position beyond the model's joint limits by more than ``telemetry.limit_margin`` of the joint's range,
    or a velocity beyond ``telemetry.speed_margin`` times its limit (schema-valid, physically impossible)."""
    IMPLAUSIBLE_JUMP = "implausible_jump"
    """A position that moved further since the previous sample than the joint's velocity limit allows over
    the elapsed robot time (with the margins), and that no run of consistent samples confirmed."""
    IMPLAUSIBLE_STAMP = "implausible_stamp"
    """A ``stamp_ns`` far from the clock estimate (sampled after it arrived, or a step back of the robot
    clock) that no run of consistent samples confirmed as a real clock step."""
    SEQ_JUMP = "seq_jump"
    """A sequence number far ahead of the stream that the following samples never confirmed (a stray)."""
    CONTRADICTED_STATUS = "contradicted_status"
    """An ``offline`` status for the running boot while its joint states keep flowing: not obeyed."""
    CONTRADICTED_BIRTH = "contradicted_birth"
    """A birth announcing a new boot while the data keep continuing the running boot: not obeyed."""

    @property
    def fix(self) -> str:
        """How to make the sender's payloads acceptable (one sentence)."""
        return _FIXES[self]


_FIXES = {
    RejectReason.EMPTY: "publish a non-empty payload (an empty retained message only clears the topic)",
    RejectReason.TOO_LARGE: "send fewer joints per message or raise telemetry.max_payload_bytes",
    RejectReason.UNKNOWN_ENCODING: "publish JSON (an object) or the binary codec (magic b'TWJS'); see docs/telemetry.md",
    RejectReason.MALFORMED_JSON: "publish one flat UTF-8 JSON object per message, each key once",
    RejectReason.MALFORMED_BINARY: "encode with twin_ext.telemetry.encode_binary or follow the layout in docs/telemetry.md",
    RejectReason.UNSUPPORTED_VERSION: "publish schema version 1 (field 'version' / header byte 4)",
    RejectReason.MISSING_FIELD: "include every required field of the v1 schema (docs/telemetry.md)",
    RejectReason.UNKNOWN_FIELD: "remove fields the v1 schema does not define (check the spelling)",
    RejectReason.BAD_TYPE: "use the v1 field types: integers for version/seq/stamp_ns, strings, arrays of numbers",
    RejectReason.BAD_VALUE: "keep seq in [0, 2**32), stamp_ns in int64, robot ids in [A-Za-z0-9_.-]{1,64}",
    RejectReason.BAD_LENGTH: "give position/velocity/effort exactly one value per joint name (or omit velocity/effort)",
    RejectReason.TOO_MANY_JOINTS: "send at most MAX_JOINTS joints per message",
    RejectReason.BAD_NAME: "use unique, non-empty joint names of at most 128 printable characters",
    RejectReason.NON_FINITE: "send finite numbers only (no NaN, Infinity or values beyond float64)",
    RejectReason.UNKNOWN_JOINT: "use the joint names of the robot model / birth, or load the matching robot USD",
    RejectReason.MISSING_JOINT: "send every joint of the robot model / birth in each message",
    RejectReason.WRONG_ROBOT: "set telemetry.robot_id to the robot you mean, or fix the robot id the robot sends",
    RejectReason.NO_BIRTH: "make the robot publish its retained birth first, or set telemetry.require_birth = false",
    RejectReason.DUPLICATE: "nothing to fix on the twin: redelivered samples are dropped by design",
    RejectReason.OUT_OF_ORDER: "nothing to fix on the twin: late samples are dropped by design",
    RejectReason.UNEXPECTED_TOPIC: "publish under <prefix>/<robot_id>/joint_states|birth|status",
    RejectReason.OUT_OF_LIMITS: (
        "check the robot's units and joint order (rad|m, model order by name); if the robot really goes there, "
        "fix the joint limits in the robot USD or raise telemetry.limit_margin / telemetry.speed_margin"
    ),
    RejectReason.IMPLAUSIBLE_JUMP: (
        "nothing moves faster than its velocity limit: check the sender (another publisher on the robot's "
        "topics? restrict them with broker ACLs) or raise telemetry.speed_margin"
    ),
    RejectReason.IMPLAUSIBLE_STAMP: (
        "stamp samples with the robot's own monotonic clock; a real clock step is followed once "
        "clock.jump_confirm_samples consecutive samples agree"
    ),
    RejectReason.SEQ_JUMP: (
        "increase seq by 1 per message; another publisher on the robot's topics? restrict them with broker ACLs"
    ),
    RejectReason.CONTRADICTED_STATUS: (
        "only the robot may publish its status: someone else published 'offline' for the running boot; "
        "restrict <prefix>/<robot_id>/# with broker ACLs (docs/telemetry.md, trust model)"
    ),
    RejectReason.CONTRADICTED_BIRTH: (
        "only the robot may publish its birth: a new boot id was announced but the data continue the old boot; "
        "restrict <prefix>/<robot_id>/# with broker ACLs (docs/telemetry.md, trust model)"
    ),
}


class TelemetryError(TwinExtError, ValueError):
    """A payload that cannot be accepted.

    Attributes:
        reason: the `RejectReason` code.
        detail: what exactly was wrong (names the field and the offending value).
    """

    def __init__(self, reason: RejectReason, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{detail} [{reason.value}]; fix: {reason.fix}")

    def __reduce__(self):  # keep the reason when pickled across processes
        return (TelemetryError, (self.reason, self.detail))
