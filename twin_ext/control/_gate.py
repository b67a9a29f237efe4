# SPDX-License-Identifier: Apache-2.0
"""`CommandGate`: how a command leaves the twin — id, pre-flight, lease, publish, track, audit (docs/control.md).

``send`` is synchronous: a stop is published first and recorded after (never delayed); any other command is
pre-flighted (`Preflight`, a what-if run for a move_to), given a lease in the robot's clock and its
justification, published, tracked and recorded — or refused with `CommandRefused` (recorded too).
Acknowledgements arrive on the network thread (`on_ack_payload` only enqueues) and are applied on `poll`
(the display tick), with the timeouts.
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..telemetry import MoveTo, SpeedOverride, Stop, encode_command
from ._acks import AckError, decode_ack
from ._audit import CommandLog
from ._preflight import CommandRefused, Preflight, PreflightVerdict
from ._settings import ControlSettings
from ._tracker import CommandTracker, TrackedCommand

__all__ = ["CommandGate"]

_MAX_PENDING_ACKS = 1000


def _command_dict(command: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(command).__name__}
    if isinstance(command, SpeedOverride):
        out["scale"] = command.scale
    elif isinstance(command, MoveTo):
        out.update(names=list(command.names), position=list(command.position), duration_s=command.duration_s)
    if command.valid_until_ns is not None:
        out["valid_until_ns"] = command.valid_until_ns
    return out


def _same_command(a: Any, b: Any) -> bool:
    """Equal but for the fields the gate fills in (lease, justification)."""
    return type(a) is type(b) and replace(a, valid_until_ns=None, justification="") == replace(
        b, valid_until_ns=None, justification=""
    )


class CommandGate:
    """The command channel of one twin.

    Args:
        preflight: the `Preflight` of the robot.
        settings: `ControlSettings` (default: ``preflight.settings``).
        audit: the `CommandLog` (default: one without a recorder).
        now_ns: the twin clock, int ns.
    """

    def __init__(
        self,
        preflight: Preflight,
        *,
        settings: ControlSettings | None = None,
        audit: CommandLog | None = None,
        now_ns: Callable[[], int],
    ) -> None:
        self.preflight = preflight
        self.settings = settings or preflight.settings
        self.audit = audit or CommandLog()
        self.tracker = CommandTracker(self.settings.history)
        self.now_ns = now_ns
        self._prefix = uuid.uuid4().hex[:8]  # ids unique across twin restarts: a robot remembers ids it executed
        self._counter = itertools.count(1)
        self._acks: deque[bytes] = deque(maxlen=_MAX_PENDING_ACKS)
        self._send_lock = threading.Lock()  # one command at a time: ids and re-sends stay consistent
        self.bad_acks = 0
        """Acknowledgement payloads that were not schema v1 (counted, ignored)."""

    # ---- sending --------------------------------------------------------------------------------------------
    def new_id(self) -> str:
        return f"{self._prefix}-{next(self._counter)}"

    def send(
        self,
        command: Any,
        *,
        snapshot: Any,
        publish: Callable[[bytes], bool],
        health: str = "",
        clock: Any = None,
        requester: str = "local",
    ) -> TrackedCommand:
        """Check, lease, publish and track ``command``; returns its `TrackedCommand`.

        Args:
            snapshot: the twin's current `TwinSnapshot`.
            publish: sends the payload on the command topic (QoS 1); False if the link is not running.
            health: the twin's health if it differs from the snapshot's ("" = the snapshot's).
            clock: the `ClockSync` (robot <-> twin time; ``ready`` and ``to_robot_ns``).
            requester: who asked (recorded in the audit log).

        Raises:
            CommandRefused: a check failed (``check`` names it, ``fix`` says what to do); nothing was sent.
        """
        with self._send_lock:
            now = self.now_ns()
            command_id = command.id or self.new_id()
            command = replace(command, id=command_id)
            known = self.tracker.get(command_id)
            if known is not None:
                return self._resend(known, command, publish, requester, now)
            if isinstance(command, Stop):
                return self._send_stop(command, publish, requester, now)
            clock_ready = bool(getattr(clock, "ready", False))
            verdict = self.preflight.check(command, snapshot, health=health, clock_ready=clock_ready)
            if not verdict.allowed:
                self._refused(now, command, requester, verdict)
                raise verdict.refusal()
            s = self.settings
            now = self.now_ns()  # after the pre-flight (a cold what-if engine may take seconds): the lease starts now
            motion_s = command.duration_s if isinstance(command, MoveTo) else 0.0
            lease_s = motion_s + s.lease_margin_s
            lease_ns = None
            if clock_ready:
                try:
                    lease_ns = int(clock.to_robot_ns(now)) + round(lease_s * 1e9)
                except Exception:  # noqa: BLE001 - no clock line: no lease (only when require_clock_sync is off)
                    lease_ns = None
            command = replace(command, valid_until_ns=lease_ns, justification=verdict.justification())
            payload = encode_command(command)
            if not publish(payload):
                refusal = PreflightVerdict(False, "gate", "the MQTT link is not running", "start the twin's link")
                self._refused(now, command, requester, refusal)
                raise refusal.refusal()
            tracked = TrackedCommand(
                id=command_id,
                command=command,
                payload=payload,
                requester=requester,
                verdict=verdict,
                sent_ns=now,
                lease_ns=lease_ns,
                ack_deadline_ns=now + round(max(s.ack_timeout_s, lease_s) * 1e9),
                done_deadline_ns=now + round((lease_s + s.done_timeout_margin_s) * 1e9),
            )
            self.tracker.add(tracked)
            self.audit.record(
                now,
                "sent",
                command_id,
                requester=requester,
                command=_command_dict(command),
                verdict=verdict.to_dict(),
                state="sent",
            )
            return tracked

    def _send_stop(self, command: Stop, publish: Callable[[bytes], bool], requester: str, now: int) -> TrackedCommand:
        verdict = PreflightVerdict(True)
        payload = encode_command(replace(command, justification="stop: always allowed"))
        if not publish(payload):  # first: a stop waits for nothing
            refusal = PreflightVerdict(False, "gate", "the MQTT link is not running", "start the twin's link")
            self._refused(now, command, requester, refusal)
            raise refusal.refusal()
        s = self.settings
        tracked = TrackedCommand(
            id=command.id,
            command=command,
            payload=payload,
            requester=requester,
            verdict=verdict,
            sent_ns=now,
            lease_ns=None,
            ack_deadline_ns=now + round(s.ack_timeout_s * 1e9),
            done_deadline_ns=now + round((s.ack_timeout_s + s.done_timeout_margin_s) * 1e9),
        )
        self.tracker.add(tracked)
        self.audit.record(
            now, "sent", command.id, requester=requester, command=_command_dict(command), verdict=verdict.to_dict(),
            state="sent",
        )  # fmt: skip
        return tracked

    def _resend(
        self, known: TrackedCommand, command: Any, publish: Callable[[bytes], bool], requester: str, now: int
    ) -> TrackedCommand:
        """The same id again: the same command is re-published byte for byte (the robot executes an id once);
        another command under a used id is refused."""
        if not _same_command(known.command, command):
            verdict = PreflightVerdict(
                False,
                "id",
                f"id {command.id!r} was already used for {type(known.command).__name__}",
                "give each new command a new id (or none: the twin assigns one)",
            )
            self._refused(now, command, requester, verdict)
            raise verdict.refusal()
        if not known.ended:
            publish(known.payload)
        self.audit.record(now, "resent", known.id, requester=requester, state=known.state)
        return known

    def _refused(self, now: int, command: Any, requester: str, verdict: PreflightVerdict) -> None:
        self.audit.record(
            now,
            "refused",
            command.id,
            requester=requester,
            command=_command_dict(command),
            verdict=verdict.to_dict(),
            check=verdict.check,
            message=verdict.message,
        )

    def refuse_closed(self, command: Any, requester: str, message: str, fix: str) -> CommandRefused:
        """Record a command refused because the gate is closed; returns the error to raise."""
        verdict = PreflightVerdict(False, "gate", message, fix)
        self._refused(self.now_ns(), command, requester, verdict)
        return verdict.refusal()

    # ---- acknowledgements -------------------------------------------------------------------------------------
    def on_ack_payload(self, payload: bytes) -> None:
        """Network thread: queue an acknowledgement for the next `poll` (never blocks)."""
        self._acks.append(bytes(payload))

    def poll(self) -> list[TrackedCommand]:
        """Apply queued acknowledgements and timeouts (display thread); returns the commands whose state changed."""
        now = self.now_ns()
        changed = []
        while self._acks:
            payload = self._acks.popleft()
            try:
                ack = decode_ack(payload)
            except AckError as exc:
                self.bad_acks += 1
                self.audit.record(now, "bad_ack", "", message=str(exc))
                continue
            tracked = self.tracker.on_ack(ack, now)
            self.audit.record(
                now, "ack", ack.id, state=ack.state, reason=ack.reason, detail=ack.detail, robot_stamp_ns=ack.stamp_ns,
                applied=tracked is not None,
            )  # fmt: skip
            if tracked is not None:
                changed.append(tracked)
        for tracked in self.tracker.expire(now):
            self.audit.record(now, "timeout", tracked.id, state="failed", reason=tracked.reason, detail=tracked.detail)
            changed.append(tracked)
        return changed

    def state_of(self, command_id: str) -> str:
        """The state of a command id ("" if unknown)."""
        tracked = self.tracker.get(command_id)
        return tracked.state if tracked is not None else ""

    def wait_ended(self, command_id: str, timeout_s: float, *, poll: Callable[[], None] | None = None) -> str:
        """Poll (or call ``poll``, e.g. the twin's tick) until the command ends or ``timeout_s`` passes (s); returns
        its state. For scripts and tests; the live twin polls on its display tick."""
        deadline = time.monotonic() + timeout_s
        while True:
            (poll or self.poll)()
            state = self.state_of(command_id)
            if state in ("done", "failed", "rejected") or time.monotonic() >= deadline:
                return state
            time.sleep(0.005)
