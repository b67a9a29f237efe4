# SPDX-License-Identifier: Apache-2.0
"""Pre-flight: every command is checked against the robot model, the twin's health and a simulation before it
leaves (docs/control.md).

Order of the checks (the first that fails names itself in `CommandRefused.check` with the fix):

1. ``stop`` is always allowed, at once: nothing is checked and nothing simulated before it is sent.
2. ``health``: the twin's state is ``ok`` (fresh telemetry, display loop ticking, link up); ``clock``: the clock
   sync is ready (a lease is a time in the robot's clock).
3. ``joints`` exist; ``limits``: move_to targets lie inside the limits by ``position_margin_*``; ``duration``
   within ``[min_duration_s, max_duration_s]``; ``speed``: the move's peak speed (minimum-jerk) at most
   ``max_speed_fraction`` of each joint's velocity limit; ``speed_override`` at most ``max_speed_override``.
4. ``state`` (move_to): the newest sample is at most ``max_state_age_s`` old (in a gap the velocity spread grows
   while health is still ok, and the simulation would test that spread rather than the move).
5. ``simulation`` (move_to): the what-if engine runs the move from the current snapshot, initial states drawn
   from its covariance; refused when P(violation) > ``max_violation_probability`` or the verdict is unknown.

Resume and speed override are bounded but not simulated: the twin knows the robot's joints, not its program.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .. import TwinExtError
from ..estimation import TwinSnapshot
from ..robot import JointTrajectory, JointType, RobotModel
from ..telemetry import MoveTo, Resume, SpeedOverride, Stop
from ..whatif import Scenario, TrajectoryCommand
from ._settings import ControlSettings

__all__ = ["PREFLIGHT_CHECKS", "CommandRefused", "Preflight", "PreflightVerdict", "move_to_scenario"]

PREFLIGHT_CHECKS = (
    "gate",  # the command channel is closed ([twin] commands_enabled) or there is no link
    "id",  # the id was used before for a different command
    "health",  # the twin is not ok (stale, lost, display loop stalled, link down)
    "clock",  # the clock sync is not ready: no lease in the robot's clock can be given
    "joints",  # move_to names joints the robot does not have
    "limits",  # a target outside the joint limits (with margin)
    "duration",  # move_to duration outside [min_duration_s, max_duration_s]
    "speed",  # the move's peak speed above max_speed_fraction x velocity limit
    "speed_override",  # above max_speed_override
    "simulation",  # P(violation) too high, verdict unknown, or no what-if engine
)
"""The names a refusal gives as its failing check."""


class CommandRefused(TwinExtError, RuntimeError):
    """A command was not sent: ``check`` (one of `PREFLIGHT_CHECKS`) failed; ``fix`` says what to do.

    ``verdict`` is the `PreflightVerdict` when the pre-flight ran (None for a closed gate)."""

    def __init__(self, check: str, message: str, fix: str, verdict: PreflightVerdict | None = None) -> None:
        super().__init__(f"command refused ({check}): {message}; fix: {fix}")
        self.check = check
        self.message = message
        self.fix = fix
        self.verdict = verdict


@dataclass(frozen=True)
class PreflightVerdict:
    """The outcome of the pre-flight of one command.

    Attributes:
        allowed: True when every check passed.
        check: the failing check (`PREFLIGHT_CHECKS`), "" when allowed.
        message, fix: what failed and what to do ("" when allowed).
        simulated: whether the what-if engine ran.
        whatif_status: "pass" | "fail" | "unknown" of the simulation, "" if not simulated.
        p_violation: fraction of simulated samples violating a limit (worst variant), NaN if not simulated.
        samples: Monte-Carlo samples simulated (0 if not simulated).
        summary: the what-if report's summary text ("" if not simulated).
        seconds: wall time of the pre-flight, s.
    """

    allowed: bool
    check: str = ""
    message: str = ""
    fix: str = ""
    simulated: bool = False
    whatif_status: str = ""
    p_violation: float = math.nan
    samples: int = 0
    summary: str = field(default="", repr=False)
    seconds: float = 0.0

    def justification(self) -> str:
        """One line that travels with the command (its ``justification``)."""
        if not self.simulated:
            return "pre-flight: bounds and health ok (not simulated)" if self.allowed else f"refused: {self.check}"
        return (
            f"pre-flight {'pass' if self.allowed else 'refused'}: what-if {self.whatif_status}, "
            f"P(violation) {self.p_violation:.3f} over {self.samples} samples from the twin's state"
        )

    def refusal(self) -> CommandRefused:
        """The error to raise for a refused verdict."""
        return CommandRefused(self.check, self.message, self.fix, self)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (NaN becomes None); the summary is kept (the audit log records it)."""
        return {
            "allowed": self.allowed,
            "check": self.check,
            "message": self.message,
            "fix": self.fix,
            "simulated": self.simulated,
            "whatif_status": self.whatif_status,
            "p_violation": self.p_violation if math.isfinite(self.p_violation) else None,
            "samples": self.samples,
            "summary": self.summary,
            "seconds": self.seconds,
        }


def move_to_scenario(model: RobotModel, snapshot: TwinSnapshot, command: MoveTo, *, samples: int) -> Scenario:
    """The what-if `Scenario` of ``command`` from ``snapshot``: a minimum-jerk move of every dof from the snapshot's
    mean positions (``[ndof]`` rad|m) to the target (joints not named hold), as the robot executes a move_to."""
    start = np.array(snapshot.q, dtype=np.float64)
    goal = start.copy()
    for name, x in zip(command.names, command.position, strict=True):
        goal[model.dof_index(name)] = float(x)
    program = JointTrajectory(model.dof_names, [0.0, command.duration_s], [start, goal], labels=["start", "move_to"])
    return Scenario(
        name=f"pre-flight {command.id or 'move_to'}",
        command=TrajectoryCommand(program, start=0.0),
        samples=samples,
        robot=model.name,
    )


class Preflight:
    """Checks commands for one robot (pure: no I/O; the simulation through ``evaluate``).

    Args:
        model: the robot.
        settings: `ControlSettings`.
        evaluate: ``evaluate(snapshot, scenario) -> WhatIfReport`` (e.g. `twin_ext.whatif.WhatIfService.evaluate`);
            None: move_to is refused (``simulation``: no engine).
    """

    def __init__(
        self,
        model: RobotModel,
        settings: ControlSettings | None = None,
        evaluate: Callable[[TwinSnapshot, Scenario], Any] | None = None,
    ) -> None:
        self.model = model
        self.settings = settings or ControlSettings()
        self.evaluate = evaluate

    def check(
        self, command: Any, snapshot: TwinSnapshot | None, *, health: str = "", clock_ready: bool = True
    ) -> PreflightVerdict:
        """Run the checks on ``command`` (never raises for a bad command: a refused verdict names the check).

        Args:
            snapshot: the twin's current snapshot (None before the first tick: refused, ``health``).
            health: the twin's health ("ok", "stale", "lost") if it differs from the snapshot's (e.g. the display
                loop stalled); "" = the snapshot's.
            clock_ready: whether the clock sync maps robot time.
        """
        t0 = time.perf_counter()
        verdict = self._check(command, snapshot, health, clock_ready)
        return _with_seconds(verdict, time.perf_counter() - t0)

    def _check(self, command: Any, snapshot: TwinSnapshot | None, health: str, clock_ready: bool) -> PreflightVerdict:
        s = self.settings
        if isinstance(command, Stop):
            return PreflightVerdict(True)
        if not isinstance(command, (MoveTo, SpeedOverride, Resume)):
            return _refuse("gate", f"not a command: {command!r}", "send SpeedOverride, Stop, Resume or MoveTo")
        state = health or (getattr(snapshot.health, "value", str(snapshot.health)) if snapshot is not None else "")
        if snapshot is None or state != "ok":
            return _refuse(
                "health",
                f"the twin's state is {state or 'not known yet'}, so what the robot would do cannot be predicted",
                "wait until the twin is ok (telemetry flowing, link up); only stop is sent in any state",
            )
        if s.require_clock_sync and not clock_ready:
            return _refuse(
                "clock",
                "the clock sync is not ready, so no lease can be given in the robot's clock",
                "wait a few seconds of telemetry for the clock sync (status clock_ready), or set "
                "[control] require_clock_sync = false",
            )
        if isinstance(command, Resume):
            return PreflightVerdict(True)
        if isinstance(command, SpeedOverride):
            if command.scale > s.max_speed_override:
                return _refuse(
                    "speed_override",
                    f"speed override {command.scale:g} is above [control] max_speed_override = {s.max_speed_override:g}",
                    f"send a scale <= {s.max_speed_override:g}, or raise [control] max_speed_override",
                )
            return PreflightVerdict(True)
        return self._check_move(command, snapshot)

    def _check_move(self, command: MoveTo, snapshot: TwinSnapshot) -> PreflightVerdict:
        s, model = self.settings, self.model
        unknown = [n for n in command.names if n not in model.dof_names]
        if unknown:
            return _refuse(
                "joints",
                f"joints {unknown} do not exist on {model.name}",
                f"name joints of the robot: {list(model.dof_names)}",
            )
        if not s.min_duration_s <= command.duration_s <= s.max_duration_s:
            return _refuse(
                "duration",
                f"duration_s {command.duration_s:g} is outside [{s.min_duration_s:g}, {s.max_duration_s:g}] s "
                "([control] min_duration_s, max_duration_s)",
                "send a duration inside those bounds",
            )
        for name, x in zip(command.names, command.position, strict=True):
            i = model.dof_index(name)
            prismatic = int(model.dof_type[i]) == int(JointType.PRISMATIC)
            margin = s.position_margin_m if prismatic else s.position_margin_rad
            unit = "m" if prismatic else "rad"
            lo, hi = float(model.lower[i]) + margin, float(model.upper[i]) - margin
            if not lo <= x <= hi:
                return _refuse(
                    "limits",
                    f"target {name} = {x:.4g} {unit} is outside its limits [{model.lower[i]:.4g}, {model.upper[i]:.4g}] "
                    f"less the margin {margin:g} {unit}",
                    f"send {name} within [{lo:.4g}, {hi:.4g}] {unit}",
                )
        for name, x in zip(command.names, command.position, strict=True):
            i = model.dof_index(name)
            limit = float(model.velocity_limit[i])
            if not (math.isfinite(limit) and limit > 0):
                continue
            peak = 1.875 * abs(x - float(snapshot.q[i])) / command.duration_s  # minimum-jerk peak speed
            allowed = s.max_speed_fraction * limit
            if peak > allowed:
                need = 1.875 * abs(x - float(snapshot.q[i])) / allowed
                return _refuse(
                    "speed",
                    f"moving {name} by {abs(x - snapshot.q[i]):.3g} in {command.duration_s:g} s peaks at {peak:.3g}/s, "
                    f"above {s.max_speed_fraction:g} x its limit {limit:.3g}/s",
                    f"use duration_s >= {math.ceil(need * 100) / 100:g}",
                )
        if not snapshot.age_s <= s.max_state_age_s:
            # In a gap the velocity spread grows by the motion model while health is still ok; a simulation drawn
            # from it would fail on that spread (often a slow joint's speed limit at t = 0), not on the move.
            n = snapshot.model.ndof
            qd_std = np.sqrt(np.clip(np.diag(snapshot.covariance)[n : 2 * n], 0.0, None))
            worst = int(np.argmax(qd_std))
            return _refuse(
                "state",
                f"the twin's newest sample is {snapshot.age_s * 1e3:.0f} ms old (velocity std up to "
                f"{qd_std[worst]:.3g}/s on {snapshot.model.dof_names[worst]}), so the simulation would test the "
                "estimate's spread rather than the move",
                f"send again once telemetry is fresh (newest sample <= [control] max_state_age_s = "
                f"{s.max_state_age_s:g} s)",
            )
        if self.evaluate is None:
            return _refuse(
                "simulation",
                "this twin has no what-if engine to simulate the move",
                "run the twin with a what-if engine",
            )
        try:
            report = self.evaluate(snapshot, move_to_scenario(model, snapshot, command, samples=s.preflight_samples))
        except Exception as exc:  # noqa: BLE001 - any failure to simulate is a refusal, never a crash
            return _refuse("simulation", f"the simulation failed: {exc}", "check the command and the what-if engine")
        worst = max(report.variants, key=lambda v: v.p_violation)
        samples = sum(v.samples for v in report.variants)
        simulated = {
            "simulated": True,
            "whatif_status": report.status,
            "p_violation": float(worst.p_violation),
            "samples": samples,
            "summary": report.summary(),
        }
        if report.status == "unknown":
            return _refuse(
                "simulation",
                f"the what-if verdict is unknown ({worst.reason})",
                "wait until the twin's state is trusted again",
                **simulated,
            )
        if worst.p_violation > s.max_violation_probability:
            first = worst.worst[0] if worst.worst else None
            where = f"; first {first.kind} {first.joint} at {first.time:.3f} s" if first is not None else ""
            return _refuse(
                "simulation",
                f"the simulated move violates a limit in {worst.violations} of {worst.samples} samples "
                f"(P = {worst.p_violation:.3f} > [control] max_violation_probability = {s.max_violation_probability:g})"
                f"{where}",
                "move slower (longer duration_s) or to a target further inside the limits",
                **simulated,
            )
        return PreflightVerdict(True, **simulated)


def _refuse(check: str, message: str, fix: str, **simulated: Any) -> PreflightVerdict:
    return PreflightVerdict(False, check, message, fix, **simulated)


def _with_seconds(verdict: PreflightVerdict, seconds: float) -> PreflightVerdict:
    return replace(verdict, seconds=seconds)
