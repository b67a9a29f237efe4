# SPDX-License-Identifier: Apache-2.0
"""Robot -> twin acknowledgements on ``<prefix>/<robot_id>/command/ack``: schema v1, JSON, strict.

One message per state change of one command id (docs/control.md)::

    {"v": 1, "id": "c-17", "state": "received"}
    {"v": 1, "id": "c-17", "state": "rejected", "reason": "lease_expired", "detail": "arrived 0.4 s after ..."}
    {"v": 1, "id": "c-17", "state": "started"}
    {"v": 1, "id": "c-17", "state": "done"}
    {"v": 1, "id": "c-17", "state": "failed", "reason": "lease_expired", "detail": "held at its lease ..."}

``stamp_ns`` (robot clock, ns) is optional. A receiver answers a re-delivered id with the state it is in
(it never executes an id twice).

    >>> decode_ack(encode_ack(CommandAck("c-1", "done")))
    CommandAck(id='c-1', state='done', reason='', detail='', stamp_ns=None)
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from .. import TwinExtError

__all__ = ["ACK_STATES", "END_STATES", "AckError", "CommandAck", "decode_ack", "encode_ack"]

ACK_STATES = ("received", "rejected", "started", "done", "failed")
"""What a robot may say about a command, in the order they happen (rejected, done and failed end it)."""
END_STATES = ("rejected", "done", "failed")
"""States after which nothing more happens to a command."""
MAX_ACK_BYTES = 4096
_KEYS = {"v", "id", "state", "reason", "detail", "stamp_ns"}


class AckError(TwinExtError, ValueError):
    """An acknowledgement payload that is not schema v1; the message names the problem."""


@dataclass(frozen=True)
class CommandAck:
    """One acknowledgement: command ``id``, its ``state`` (`ACK_STATES`), a reason code and a detail sentence
    (rejected/failed), and the robot's clock when it was sent (ns, optional)."""

    id: str
    state: str
    reason: str = ""
    detail: str = ""
    stamp_ns: int | None = None


def encode_ack(ack: CommandAck) -> bytes:
    """The v1 JSON payload of ``ack`` (checked by the decoder)."""
    obj: dict[str, object] = {"v": 1, "id": ack.id, "state": ack.state}
    if ack.reason:
        obj["reason"] = ack.reason
    if ack.detail:
        obj["detail"] = ack.detail[:1000]
    if ack.stamp_ns is not None:
        obj["stamp_ns"] = int(ack.stamp_ns)
    payload = json.dumps(obj, separators=(",", ":")).encode()
    decode_ack(payload)
    return payload


def decode_ack(payload: bytes | bytearray | memoryview) -> CommandAck:
    """Parse an acknowledgement.

    Raises:
        AckError: too large, not a JSON object, unknown keys, wrong version, unknown state, bad types.
    """
    data = bytes(payload)
    if len(data) > MAX_ACK_BYTES:
        raise AckError(f"ack is {len(data)} bytes; the limit is {MAX_ACK_BYTES}")
    try:
        obj = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise AckError(f"ack is not UTF-8 JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise AckError("ack must be a JSON object")
    unknown = sorted(set(obj) - _KEYS)
    if unknown:
        raise AckError(f"ack has unknown keys {unknown}; allowed: {sorted(_KEYS)}")
    if obj.get("v") != 1 or type(obj.get("v")) is not int:
        raise AckError(f'ack "v" must be 1, got {obj.get("v")!r}')
    ack_id, state = obj.get("id"), obj.get("state")
    if not isinstance(ack_id, str) or not 0 < len(ack_id) <= 64:
        raise AckError('ack "id" must be the command id (a string of 1..64 characters)')
    if state not in ACK_STATES:
        raise AckError(f'ack "state" must be one of {list(ACK_STATES)}, got {state!r}')
    reason, detail = obj.get("reason", ""), obj.get("detail", "")
    if not isinstance(reason, str) or len(reason) > 64 or not isinstance(detail, str) or len(detail) > 1000:
        raise AckError('ack "reason" must be a short string (<= 64) and "detail" a string (<= 1000 characters)')
    stamp = obj.get("stamp_ns")
    if stamp is not None and type(stamp) is not int:
        raise AckError(f'ack "stamp_ns" must be an integer (ns), got {stamp!r}')
    return CommandAck(ack_id, state, reason, detail, stamp)
