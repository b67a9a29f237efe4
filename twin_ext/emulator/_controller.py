# SPDX-License-Identifier: Apache-2.0
"""`MotionController`: the emulated robot's motion program and its reaction to commands.

The controller plays a `JointTrajectory` (the program; looped by default) by advancing a path
parameter ``s`` (s of program time) at a rate ``r`` (dimensionless): ``ds/dt = r``. Targets are
``q_d = traj(s)`` and ``qd_d = r * traj'(s)``. Commands change ``r`` or the trajectory:

* speed override ``k``: ``r`` ramps linearly to ``k`` (a full 0 <-> 1 change takes ``ramp_s``);
* stop: ``r`` ramps to 0 along the path (a controlled, category-2-style stop); resume: back to ``k``;
* move_to: a minimum-jerk move from the current target to the new position, then hold there.

Commands that the robot cannot or must not do raise `CommandRejected` with a reason code (the robot
logs it and counts it): ``above_max_speed_override``, ``unknown_joint``, ``out_of_limits``, ``too_fast``,
``stopped``. Pure NumPy; advanced by the caller one control step at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .. import TwinExtError
from ..robot import JointTrajectory, TrajectoryError

__all__ = ["CommandRejected", "ControllerError", "MotionController"]

_PEAK_VELOCITY_FACTOR = 1.875  # max of the minimum-jerk velocity profile, times |dq| / T


class ControllerError(TwinExtError, ValueError):
    """The program cannot run on this robot (joints, limits); the message says what to change."""


class CommandRejected(TwinExtError):
    """A command the robot refuses; ``reason`` is a short code, the message explains and suggests."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


class MotionController:
    """Plays a joint trajectory with speed override, stop/resume and move-to targets.

    Args:
        program: the robot's program; must contain every joint in ``joint_names``.
        joint_names: ``[ndof]`` the robot's joints (target arrays are in this order).
        lower, upper: ``[ndof]`` rad|m joint limits; the program must stay inside them.
        velocity_limits: optional ``{joint: rad/s|m/s}``; the program and move_to must respect them
            at speed override 1.
        loop: repeat the program (its last waypoint must equal its first).
        ramp_s: s, time for a 0 <-> 1 change of the speed rate (stop, resume, override).
        max_speed_override: largest speed override accepted (dimensionless, default 1.0).
    """

    def __init__(
        self,
        program: JointTrajectory,
        *,
        joint_names: Sequence[str],
        lower: np.ndarray,
        upper: np.ndarray,
        velocity_limits: Mapping[str, float] | None = None,
        loop: bool = True,
        ramp_s: float = 0.3,
        max_speed_override: float = 1.0,
    ) -> None:
        self.joint_names = tuple(joint_names)
        self.ndof = len(self.joint_names)
        self.lower = np.asarray(lower, dtype=np.float64)
        self.upper = np.asarray(upper, dtype=np.float64)
        limits = dict(velocity_limits or {})
        self.velocity_limits = np.array([limits.get(n, np.inf) for n in self.joint_names])
        if not (math.isfinite(ramp_s) and ramp_s > 0.0):
            raise ControllerError(f"ramp_s must be > 0 s, got {ramp_s!r}")
        if not (math.isfinite(max_speed_override) and max_speed_override > 0.0):
            raise ControllerError(f"max_speed_override must be > 0, got {max_speed_override!r}")
        self.ramp_s = float(ramp_s)
        self.max_speed_override = float(max_speed_override)
        try:
            program = program.select(self.joint_names)
        except TrajectoryError as exc:
            raise ControllerError(f"the program does not fit this robot: {exc}") from None
        self._check_inside_limits(program.positions, "the program")
        too_fast = program.peak_velocity() > self.velocity_limits * (1.0 + 1e-9)
        if np.any(too_fast):
            j = int(np.flatnonzero(too_fast)[0])
            raise ControllerError(
                f"the program moves {self.joint_names[j]} at {program.peak_velocity()[j]:.3g} (peak), above its "
                f"limit {self.velocity_limits[j]:g}; slow it down (e.g. JointTrajectory.time_scaled)"
            )
        if (
            loop
            and len(program) > 1
            and not np.allclose(program.positions[0], program.positions[-1], atol=1e-9, rtol=0)
        ):
            raise ControllerError(
                "a looping program must end where it starts (last waypoint == first); or set loop = false"
            )
        self.program = program
        self.loop = bool(loop) and len(program) > 1
        self._active = program
        self._looping = self.loop
        self._s = program.start_time  # path parameter, s of program time
        self._rate = 1.0  # current ds/dt
        self._override = 1.0
        self._stopped = False
        self.mode = "program"
        self.last_q, _, _ = program.sample(self._s)

    # ---- state --------------------------------------------------------------------------------
    @property
    def speed_override(self) -> float:
        """The commanded speed override (dimensionless)."""
        return self._override

    @property
    def rate(self) -> float:
        """The current path rate ``ds/dt`` (ramps toward the override, or 0 when stopped)."""
        return self._rate

    @property
    def stopped(self) -> bool:
        return self._stopped

    @property
    def path_time(self) -> float:
        """s, position along the active trajectory (program time)."""
        return self._s

    def initial_position(self) -> np.ndarray:
        """``[ndof]`` the program's first target, where the robot starts at rest."""
        return self.program.sample(self.program.start_time)[0]

    # ---- the control step ---------------------------------------------------------------------
    def step(self, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """Targets for the control interval starting now, then advance by ``dt`` s.

        Returns:
            ``(q_d [ndof] rad|m, qd_d [ndof] rad/s|m/s)``.
        """
        q, qd, _ = self._active.sample(self._s)
        q_d, qd_d = q, self._rate * qd
        goal = 0.0 if self._stopped else self._override
        max_change = dt / self.ramp_s
        self._rate += min(max(goal - self._rate, -max_change), max_change)
        self._s += self._rate * dt
        if self._looping and self._s >= self._active.end_time:
            self._s = self._active.start_time + (self._s - self._active.end_time) % self._active.duration
        self.last_q = q_d
        return q_d, qd_d

    @property
    def move_progress(self) -> float:
        """Fraction of the current move_to done (0..1; 0 in program mode)."""
        if self.mode != "move" or self._active.duration <= 0:
            return 0.0
        return min(1.0, max(0.0, (self._s - self._active.start_time) / self._active.duration))

    @property
    def move_finished(self) -> bool:
        """True once a move_to has reached its target (False while moving, and in program mode)."""
        return self.mode == "move" and self._s >= self._active.end_time

    # ---- commands -----------------------------------------------------------------------------
    def set_speed_override(self, scale: float) -> None:
        if not (math.isfinite(scale) and scale > 0.0):
            raise CommandRejected("bad_value", f"speed override must be > 0, got {scale!r}; use stop to halt")
        if scale > self.max_speed_override * (1.0 + 1e-12):
            raise CommandRejected(
                "above_max_speed_override",
                f"speed override {scale:g} is above this robot's maximum {self.max_speed_override:g} "
                "(emulator setting max_speed_override)",
            )
        self._override = float(scale)

    def stop(self) -> None:
        self._stopped = True

    def resume(self) -> None:
        self._stopped = False

    def move_to(self, names: Sequence[str], position: Sequence[float], duration_s: float) -> None:
        """Start a minimum-jerk move of ``names`` to ``position`` in ``duration_s`` s (others hold)."""
        if self._stopped:
            raise CommandRejected("stopped", "the robot is stopped; send resume before move_to")
        unknown = [n for n in names if n not in self.joint_names]
        if unknown:
            raise CommandRejected(
                "unknown_joint", f"joints {unknown} do not exist; this robot has {list(self.joint_names)}"
            )
        if not (math.isfinite(duration_s) and duration_s > 0.0):
            raise CommandRejected("bad_value", f"duration_s must be > 0, got {duration_s!r}")
        start = np.array(self.last_q, dtype=np.float64)
        goal = start.copy()
        for name, x in zip(names, position, strict=True):
            goal[self.joint_names.index(name)] = float(x)
        self._check_inside_limits(goal[None, :], "the move_to target", exc=CommandRejected)
        peak = _PEAK_VELOCITY_FACTOR * np.abs(goal - start) / duration_s
        over = peak > self.velocity_limits
        if np.any(over):
            need = float(np.max(_PEAK_VELOCITY_FACTOR * np.abs(goal - start) / self.velocity_limits))
            j = int(np.flatnonzero(over)[0])
            raise CommandRejected(
                "too_fast",
                f"moving {self.joint_names[j]} by {abs(goal[j] - start[j]):.3g} in {duration_s:g} s peaks at "
                f"{peak[j]:.3g}, above its limit {self.velocity_limits[j]:g}; use duration_s >= {math.ceil(need * 100) / 100:g}",
            )
        self._active = JointTrajectory(self.joint_names, [0.0, duration_s], [start, goal], labels=["start", "move_to"])
        self._looping = False
        self._s = 0.0
        self.mode = "move"

    # ---- helpers ------------------------------------------------------------------------------
    def _check_inside_limits(self, positions: np.ndarray, what: str, exc: type[Exception] = ControllerError) -> None:
        below = positions < self.lower - 1e-12
        above = positions > self.upper + 1e-12
        if np.any(below | above):
            k, j = (int(x[0]) for x in np.nonzero(below | above))
            lo, hi, x = self.lower[j], self.upper[j], positions[k, j]
            detail = f"{what} puts {self.joint_names[j]} at {x:.4g}, outside its limits [{lo:.4g}, {hi:.4g}]"
            if exc is CommandRejected:
                raise CommandRejected("out_of_limits", detail + "; send a target inside the limits")
            raise ControllerError(detail + (f" (waypoint {k})" if len(positions) > 1 else ""))
