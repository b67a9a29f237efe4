# SPDX-License-Identifier: Apache-2.0
"""View-model of the command controls: the what-if panel's "send to robot" and the dashboard's gate and last commands.

Plain Python (tested without Kit); the omni.ui code copies `CommandView` into widgets and forwards clicks. Sending
runs the pre-flight (a what-if simulation for a move_to, tens of ms) on a worker thread so the UI never waits;
stop is sent at once on the calling thread. docs/control.md has the rules.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from ..control import CommandRefused
from ..telemetry import Stop

__all__ = ["CommandPanelViewModel", "CommandRow", "CommandView"]

_GATE_TEXT = {
    "open": "commands: open (each is pre-flighted and simulated)",
    "blocked": "commands: blocked",
    "closed": "commands: closed",
}


@dataclass(frozen=True)
class CommandRow:
    """One recent command as the dashboard lists it."""

    id: str
    kind: str
    requester: str
    state: str
    reason: str
    justification: str


@dataclass(frozen=True)
class CommandView:
    """Everything the controls show.

    Attributes:
        gate: "open" | "blocked" | "closed"; gate_text: the line to show (with why, when not open).
        send_enabled: "send to robot" may be clicked (gate open, a command proposed, none being sent).
        stop_enabled: "stop" may be clicked (the gate is not closed).
        proposal: the proposed command in words ("" if none).
        verdict: the pre-flight result of the last send in words ("" before one).
        pending_state: state of the last sent command ("" before one): sent, received, started, done, ...
        rows: the last commands, newest last.
    """

    gate: str
    gate_text: str
    send_enabled: bool
    stop_enabled: bool
    proposal: str
    verdict: str
    pending_state: str
    rows: tuple[CommandRow, ...]


class CommandPanelViewModel:
    """Send to robot, stop, and what became of the commands.

    Args:
        twin: returns the `LiveTwin` (or None while no twin runs), e.g. ``lambda: controller.session.twin``.
        requester: recorded in the audit log as who asked (e.g. the operator's name).
        submit: runs a function off the UI thread and returns a Future (default: one worker thread).
    """

    def __init__(
        self,
        twin: Callable[[], Any],
        *,
        requester: str = "kit-operator",
        submit: Callable[..., Future] | None = None,
    ) -> None:
        self._twin = twin
        self.requester = requester
        self._executor: ThreadPoolExecutor | None = None
        self._submit = submit
        self.proposal: Any = None
        self._sending: Future | None = None
        self.tracked: Any = None
        self.verdict_text = ""
        self.recent = 8

    def propose(self, command: Any) -> None:
        """The command "send to robot" would send (e.g. a MoveTo to the what-if's target)."""
        self.proposal = command

    def send(self) -> bool:
        """Start sending the proposal (pre-flight on a worker thread); False if not allowed now."""
        if not self.view().send_enabled:
            return False
        twin, command = self._twin(), self.proposal
        self.verdict_text = "pre-flight running …"
        self._sending = self._run(twin.send_command, command, requester=self.requester)
        return True

    def stop(self) -> str:
        """Send a stop now (never waits for a pre-flight); returns the line to show."""
        twin = self._twin()
        if twin is None:
            return "no twin running"
        try:
            self.tracked = twin.send_command(Stop(), requester=self.requester)
        except CommandRefused as exc:
            return f"stop not sent: {exc.message}; {exc.fix}"
        return "stop sent"

    def poll(self) -> bool:
        """Collect a finished send (call from the UI refresh); True when something changed."""
        future = self._sending
        if future is None or not future.done():
            return False
        self._sending = None
        try:
            self.tracked = future.result()
        except CommandRefused as exc:
            self.verdict_text = f"refused ({exc.check}): {exc.message}; fix: {exc.fix}"
            return True
        except Exception as exc:  # noqa: BLE001 - shown in the panel, never raised into the UI
            self.verdict_text = f"not sent: {exc}"
            return True
        self.verdict_text = self.tracked.verdict.justification()
        return True

    def view(self) -> CommandView:
        twin = self._twin()
        if twin is None:
            gate, why, rows = "closed", "no twin running", ()
        else:
            gate, why = twin.gate_state()
            rows = tuple(
                CommandRow(r["id"], r["type"], r["requester"], r["state"], r["reason"], r["justification"])
                for r in twin.commands.tracker.recent(self.recent)
            )
        text = _GATE_TEXT[gate] + (f" — {why}" if why else "")
        return CommandView(
            gate=gate,
            gate_text=text,
            send_enabled=gate == "open" and self.proposal is not None and self._sending is None,
            stop_enabled=gate != "closed",
            proposal=_describe(self.proposal),
            verdict=self.verdict_text,
            pending_state=self.tracked.state if self.tracked is not None else "",
            rows=rows,
        )

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def _run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Future:
        if self._submit is not None:
            return self._submit(fn, *args, **kwargs)
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="twin_ext-command")
        return self._executor.submit(fn, *args, **kwargs)


def _describe(command: Any) -> str:
    if command is None:
        return ""
    names = getattr(command, "names", None)
    if names is not None:
        targets = ", ".join(f"{n} {x:.3f}" for n, x in zip(names, command.position, strict=True))
        return f"move_to {targets} in {command.duration_s:g} s"
    scale = getattr(command, "scale", None)
    return f"speed override {scale:g}" if scale is not None else type(command).__name__.lower()
