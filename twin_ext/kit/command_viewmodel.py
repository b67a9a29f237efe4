# SPDX-License-Identifier: Apache-2.0
"""View-model of the command controls: the what-if panel's "send to robot" and the dashboard's gate and last commands.

Plain Python (tested without Kit); the omni.ui code copies `CommandView` into widgets and forwards clicks. Sending
runs the pre-flight (a what-if simulation for a move_to, tens of ms) on a worker thread so the UI never waits;
stop is sent at once on the calling thread. docs/control.md has the rules.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..control import CommandRefused
from ..telemetry import MoveTo, Stop
from ..whatif import TargetStream, TrajectoryCommand, WhatIfError

__all__ = ["CommandPanelViewModel", "CommandRow", "CommandView", "candidate_move_to"]

NO_PROPOSAL = "run a what-if: its command is proposed here"
"""What the proposal line says before anything was proposed."""

_REACHED = 1e-3
"""A waypoint within this of the current position (every joint, rad|m) counts as reached: the move goes to the next."""

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
        proposal: the proposed command in words (or why there is none).
        verdict: the pre-flight result of the last send in words ("" before one): "accepted — ..." or
            "refused (<check>): <message>; fix: <fix>".
        pending_state: state of the last sent command ("" before one): sent, received, started, done, ...
        rows: the last commands, newest last.
        verdict_level: "" (none yet), "running" (pre-flight under way), "accepted" or "refused" (for colouring).
        acks: the last sent command's states as they arrived, e.g. "3f2a… sent -> received -> started -> done"
            (with the reason of a rejected/failed end); "" before one.
    """

    gate: str
    gate_text: str
    send_enabled: bool
    stop_enabled: bool
    proposal: str
    verdict: str
    pending_state: str
    rows: tuple[CommandRow, ...]
    verdict_level: str = ""
    acks: str = ""


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
        self.verdict_level = ""
        self.proposal_note = NO_PROPOSAL
        self.recent = 8

    def propose(self, command: Any, *, note: str = "") -> None:
        """The command "send to robot" would send (e.g. `candidate_move_to` of the what-if just run); None
        withdraws it, ``note`` then says why (shown instead of a proposal)."""
        self.proposal = command
        self.proposal_note = note or NO_PROPOSAL

    def send(self) -> bool:
        """Start sending the proposal (pre-flight on a worker thread); False if not allowed now."""
        if not self.view().send_enabled:
            return False
        twin, command = self._twin(), self.proposal
        self.verdict_text, self.verdict_level = "pre-flight running …", "running"
        self._sending = self._run(twin.send_command, command, requester=self.requester)
        return True

    def stop(self) -> str:
        """Send a stop now (never waits for a pre-flight); returns the line to show (also the view's verdict)."""
        twin = self._twin()
        if twin is None:
            return "no twin running"
        try:
            self.tracked = twin.send_command(Stop(), requester=self.requester)
        except CommandRefused as exc:
            self.verdict_text, self.verdict_level = f"stop not sent: {exc.message}; {exc.fix}", "refused"
            return self.verdict_text
        self.verdict_text, self.verdict_level = "stop sent", "accepted"
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
            self.verdict_level = "refused"
            return True
        except Exception as exc:  # noqa: BLE001 - shown in the panel, never raised into the UI
            self.verdict_text, self.verdict_level = f"not sent: {exc}", "refused"
            return True
        self.verdict_text = f"accepted — {self.tracked.verdict.justification()}"
        self.verdict_level = "accepted"
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
            proposal=_describe(self.proposal) or self.proposal_note,
            verdict=self.verdict_text,
            pending_state=self.tracked.state if self.tracked is not None else "",
            rows=rows,
            verdict_level=self.verdict_level,
            acks=_acks(self.tracked),
        )

    def min_duration_s(self) -> float:
        """The shortest move_to the twin's pre-flight accepts (``[control] min_duration_s``), s; 0 without a twin."""
        twin = self._twin()
        return float(twin.commands.settings.min_duration_s) if twin is not None else 0.0

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
        return f"move_to {targets} in {command.duration_s:.3g} s"
    scale = getattr(command, "scale", None)
    return f"speed override {scale:g}" if scale is not None else type(command).__name__.lower()


def _acks(tracked: Any) -> str:
    """The states a sent command went through, in arrival order (repeats and out-of-order re-deliveries dropped)."""
    if tracked is None:
        return ""
    states: list[str] = []
    for _, state, _reason in list(tracked.history):
        if state not in states:
            states.append(state)
    if tracked.state not in states:
        states.append(tracked.state)
    reason = f" ({tracked.reason})" if tracked.reason else ""
    return f"{tracked.id} {' -> '.join(states)}{reason}"


def candidate_move_to(
    scenario: Any, snapshot: Any = None, *, speed_scale: float = 1.0, min_duration_s: float = 0.0
) -> MoveTo:
    """The `MoveTo` "send to robot" proposes for a what-if ``scenario`` (`WhatIfPanelViewModel.build_scenario`).

    * A trajectory command (a preset's program or a trajectory file): the program's next waypoint after its start
      (the aligned start: where the robot is in it now), skipping waypoints the robot is already at (within
      1e-3 rad|m) and those sooner than ``min_duration_s`` (the shortest move the pre-flight accepts: the robot is
      about to pass them), reached in the program's time to it divided by ``speed_scale`` — the program's next segment
      (its segments are minimum-jerk, as a move_to executes). A program whose last waypoint equals its first loops:
      past its end the next waypoint is its second.
    * A target stream (hold the current target): its last row of targets, in the scenario's horizon.

    The move names only the joints it moves (further than 1e-3 rad|m from where the robot is; all of them without a
    snapshot): the others hold, so a gripper parked at its limit does not make the pre-flight refuse an arm move.
    Only this move is sent, never the robot's program; the pre-flight simulates exactly it from the twin's state.

    Args:
        scenario: the `twin_ext.whatif.Scenario` the form describes.
        snapshot: the twin's `TwinSnapshot` (``q: [ndof]`` rad|m) the scenario was aligned to, or None.
        speed_scale: the form's speed scale (> 0; 1.5 = the program 1.5x faster).
        min_duration_s: waypoints sooner than this (s, after scaling) are passed by (``[control] min_duration_s``).

    Raises:
        WhatIfError: nothing to send (the program ended, a bad speed scale); the message says why.
    """
    if not (math.isfinite(speed_scale) and speed_scale > 0):
        raise WhatIfError(f"speed scale must be > 0 to send the command, got {speed_scale!r}")
    command = scenario.command
    if isinstance(command, TargetStream):
        names = tuple(command.joint_names)
        duration = float(scenario.duration) if scenario.duration else float(command.dt)
        candidates = [(duration, np.asarray(command.targets, dtype=np.float64)[-1])]
        ended = "the robot is at the target already: nothing to send"
    elif isinstance(command, TrajectoryCommand):
        program = command.trajectory
        names = tuple(program.joint_names)
        times, positions = np.asarray(program.times), np.asarray(program.positions)
        start = float(times[0]) if command.start is None else float(command.start)
        candidates = [((float(t) - start) / speed_scale, positions[k]) for k, t in enumerate(times) if t > start]
        if np.allclose(positions[-1], positions[0], rtol=0.0, atol=1e-9):  # a loop: on past the end
            end = float(times[-1]) - start
            candidates += [((end + float(t - times[0])) / speed_scale, positions[k]) for k, t in enumerate(times) if k]
        ended = "the program has no waypoint left after where the robot is: nothing to send"
    else:
        raise WhatIfError(f"no move_to can be made of a {type(command).__name__} command")
    here = None
    if snapshot is not None:
        model = snapshot.model
        here = np.asarray(snapshot.q, dtype=np.float64)[[model.dof_index(n) for n in names]]
    for k, (duration, target) in enumerate(candidates):
        if duration < min_duration_s and k < len(candidates) - 1:
            continue
        moving = np.ones(len(names), bool) if here is None else np.abs(target - here) > _REACHED
        if moving.any():
            cols = np.flatnonzero(moving)
            return MoveTo(tuple(names[i] for i in cols), tuple(float(target[i]) for i in cols), float(duration))
    raise WhatIfError(ended)
