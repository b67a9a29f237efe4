# SPDX-License-Identifier: Apache-2.0
"""`LinkEvent` and `EventKind`: what the telemetry pipeline tells its consumer (link, robot, rejections, replay)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["EventKind", "LinkEvent"]


class EventKind(str, enum.Enum):
    """Kinds of `LinkEvent` (the value is the stable string used in logs and recordings)."""

    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    UNREACHABLE = "unreachable"
    """The broker cannot be reached (refused, DNS, timeout, TLS); the link keeps retrying."""
    REFUSED = "refused"
    """The broker answered but refused the connection (credentials, client id, protocol)."""
    CONFLICT = "conflict"
    """Another twin uses this twin's MQTT client id: the broker lets only one of them connect, so this one
    stopped connecting (or took the session over); the message names the fix (``broker.client_id``)."""
    OTHER_TWIN = "other_twin"
    """Another twin (another client id) mirrors the same robot on this broker (informational)."""
    SUBSCRIBE_FAILED = "subscribe_failed"
    STOPPED = "stopped"
    ROBOT_SELECTED = "robot_selected"
    BIRTH = "birth"
    BIRTH_MISMATCH = "birth_mismatch"
    ROBOT_RESTARTED = "robot_restarted"
    ROBOT_ONLINE = "robot_online"
    ROBOT_OFFLINE = "robot_offline"
    REJECTED = "rejected"
    """Payloads were refused (at most one event per reason per ``reject_event_interval_s``)."""
    SEQUENCE_RESET = "sequence_reset"
    CLOCK_JUMP = "clock_jump"
    RECORDING_FAILED = "recording_failed"
    REPLAY_FINISHED = "replay_finished"
    INTERNAL_ERROR = "internal_error"


@dataclass(frozen=True)
class LinkEvent:
    """Something the consumer (UI, log, twin loop) should know about.

    Attributes:
        kind: the `EventKind`.
        time_ns: twin clock when it happened, ns.
        message: one human sentence naming the problem and, for problems, the fix.
        detail: machine-readable extras (e.g. ``{"reason": "non_finite", "count": 12}``).
    """

    kind: EventKind
    time_ns: int
    message: str
    detail: Mapping[str, Any] = field(default_factory=dict)
