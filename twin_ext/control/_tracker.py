# SPDX-License-Identifier: Apache-2.0
"""`CommandTracker`: each command sent, followed to an end state by its acknowledgements and timeouts.

States: ``sent`` -> ``received`` -> ``started`` -> ``done``, or an end in ``rejected`` (by the robot) or
``failed`` (by the robot, or by the twin: ``no_ack`` when nothing came back before the command's lease ran out
and ``ack_timeout_s`` passed, ``no_done`` when it was not done by its lease plus ``done_timeout_margin_s``).
A twin-side ``failed`` is replaced by the robot's own end state if that still arrives (the robot's word is
the truth about what it did); states never go backwards (a re-delivered ``received`` after ``started`` is
kept in the history only).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from ._acks import END_STATES, CommandAck
from ._preflight import PreflightVerdict

__all__ = ["CommandTracker", "TrackedCommand"]

_ORDER = {"sent": 0, "received": 1, "started": 2, "done": 3, "rejected": 3, "failed": 3}
_TWIN_REASONS = ("no_ack", "no_done")


@dataclass
class TrackedCommand:
    """One command the twin sent, and what became of it (mutable; read it through `CommandTracker` snapshots).

    Attributes:
        id: the command id. command: the command as sent (with its lease). payload: the bytes published.
        requester: who asked (e.g. "local", "operator@whatif"). verdict: its `PreflightVerdict`.
        sent_ns: twin clock, ns. lease_ns: end of its lease in the robot's clock (None: no lease).
        ack_deadline_ns, done_deadline_ns: twin clock, ns.
        state, reason, detail: the latest state; history: ``[(twin ns, state, reason)]``.
    """

    id: str
    command: Any
    payload: bytes
    requester: str
    verdict: PreflightVerdict
    sent_ns: int
    lease_ns: int | None
    ack_deadline_ns: int
    done_deadline_ns: int
    state: str = "sent"
    reason: str = ""
    detail: str = ""
    history: list[tuple[int, str, str]] = field(default_factory=list)

    @property
    def ended(self) -> bool:
        return self.state in END_STATES

    def to_dict(self) -> dict[str, Any]:
        """Plain values for views, status files and the audit log."""
        return {
            "id": self.id,
            "type": type(self.command).__name__,
            "requester": self.requester,
            "state": self.state,
            "reason": self.reason,
            "detail": self.detail,
            "sent_ns": self.sent_ns,
            "lease_ns": self.lease_ns,
            "justification": self.verdict.justification(),
        }


class CommandTracker:
    """The last ``history`` commands and their states (thread-safe: acks come from the network thread's queue,
    commands from any thread)."""

    def __init__(self, history: int = 64) -> None:
        self._commands: OrderedDict[str, TrackedCommand] = OrderedDict()
        self._history = history
        self._lock = threading.Lock()
        self.unknown_acks = 0
        """Acknowledgements of ids this twin does not know (another twin's, or forged): counted, ignored."""

    def add(self, tracked: TrackedCommand) -> None:
        with self._lock:
            self._commands[tracked.id] = tracked
            tracked.history.append((tracked.sent_ns, "sent", ""))
            while len(self._commands) > self._history:
                oldest = next(iter(self._commands.values()))
                if not oldest.ended and len(self._commands) <= 4 * self._history:
                    break  # keep following commands in flight, within reason
                self._commands.popitem(last=False)

    def get(self, command_id: str) -> TrackedCommand | None:
        with self._lock:
            return self._commands.get(command_id)

    def recent(self, n: int = 10) -> list[dict[str, Any]]:
        """The last ``n`` commands as `TrackedCommand.to_dict`, newest last."""
        with self._lock:
            return [c.to_dict() for c in list(self._commands.values())[-n:]]

    def on_ack(self, ack: CommandAck, now_ns: int) -> TrackedCommand | None:
        """Apply an acknowledgement; returns the command if its state changed, else None."""
        with self._lock:
            tracked = self._commands.get(ack.id)
            if tracked is None:
                self.unknown_acks += 1
                return None
            tracked.history.append((now_ns, ack.state, ack.reason))
            twin_failed = tracked.state == "failed" and tracked.reason in _TWIN_REASONS
            if tracked.ended and not (twin_failed and ack.state in END_STATES):
                return None
            if not twin_failed and _ORDER[ack.state] <= _ORDER[tracked.state]:
                return None
            tracked.state, tracked.reason, tracked.detail = ack.state, ack.reason, ack.detail
            return tracked

    def expire(self, now_ns: int) -> list[TrackedCommand]:
        """End the commands whose deadlines passed (``failed``: ``no_ack`` / ``no_done``); returns them."""
        out = []
        with self._lock:
            for tracked in self._commands.values():
                if tracked.ended:
                    continue
                if tracked.state == "sent" and now_ns > tracked.ack_deadline_ns:
                    reason, detail = "no_ack", "no acknowledgement from the robot before the command's lease ran out"
                elif now_ns > tracked.done_deadline_ns:
                    reason, detail = "no_done", f"the robot said {tracked.state!r} but never done before the deadline"
                else:
                    continue
                tracked.state, tracked.reason, tracked.detail = "failed", reason, detail
                tracked.history.append((now_ns, "failed", reason))
                out.append(tracked)
        return out
