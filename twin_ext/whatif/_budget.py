# SPDX-License-Identifier: Apache-2.0
"""The pre-flight budget of a what-if request: its size from the scenario alone, before any array exists.

`plan_request` reads only a scenario's scalars (dt, duration, samples, variants, speeds, recording) and the
trajectory's time span, so a request that would need gigabytes or minutes is refused in microseconds:

* **compute**: steps (simulated time / dt), worlds (variants x samples), world-steps (worlds x steps) and
  variants against `RequestLimits` (the remote service's ``[remote_whatif]`` limits; local runs have none);
* **memory**: the command streams built in Python, the engine's inputs, recorded ``q/qd/tau`` and kernel
  scratch, against ``[whatif] memory_budget_mb`` (or a smaller remote budget);
* **ranges**: latencies and push times must fit the kernels' int32 step counters.

`run_scenario` calls it before it samples a command or an initial state; the remote service calls it with its
limits before it even aligns the command (alignment samples the trajectory every 10 ms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ._compute import scratch_bytes_per_world
from ._errors import WhatIfError
from ._settings import WhatIfSettings

__all__ = ["RequestLimits", "RequestPlan", "WhatIfBudgetError", "plan_request"]

_MIB = 2**20
_INT32_MAX = 2**31 - 1
_ALIGN_RESOLUTION_S = 0.01  # JointTrajectory.nearest_time's default grid, used by align_to_snapshot
_MAX_DT = 0.05  # the engine's coarsest step (stiff servos)


class WhatIfBudgetError(WhatIfError):
    """A what-if request is bigger than a budget (steps, worlds, world-steps, memory); refused before anything
    was allocated. The message names the request's figure, the limit (with its setting) and the fix.

    Attributes:
        limit: the name of the limit that was exceeded (e.g. ``"max_world_steps"``, ``"memory_budget_mb"``).
    """

    def __init__(self, message: str, *, limit: str) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class RequestLimits:
    """Compute limits of one request (None = unlimited) and an optional tighter memory budget.

    Attributes:
        max_steps: integration steps (simulated time / dt); also bounds the alignment grid (trajectory span / 10 ms).
        max_worlds: variants x samples.
        max_variants: variants.
        max_world_steps: worlds x steps, the compute a request costs (~1 µs per world-step and core for the Panda).
        memory_budget_mb: MiB; the smaller of this and ``[whatif] memory_budget_mb`` applies.
        section: where these limits are set, for messages (e.g. ``"[remote_whatif]"``).
    """

    max_steps: int | None = None
    max_worlds: int | None = None
    max_variants: int | None = None
    max_world_steps: int | None = None
    memory_budget_mb: float | None = None
    section: str = "[remote_whatif]"


@dataclass(frozen=True)
class RequestPlan:
    """What a request will cost, computed before it runs (`plan_request`).

    Attributes:
        dt: s. duration: simulated time, s. steps: integration steps.
        variants, samples, worlds (= variants x samples), world_steps (= worlds x steps), streams (command
        streams: one per distinct speed).
        record_every, nrecord: recording decimation and recorded samples per world.
        command_bytes: the command streams and their temporaries built in Python.
        engine_bytes: the engine's inputs, recorded outputs and kernel scratch.
        recorded_bytes: the recorded ``q/qd/tau`` (part of ``engine_bytes``).
    """

    dt: float
    duration: float
    steps: int
    variants: int
    samples: int
    worlds: int
    world_steps: int
    streams: int
    record_every: int
    nrecord: int
    command_bytes: int
    engine_bytes: int
    recorded_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.command_bytes + self.engine_bytes

    def to_dict(self) -> dict[str, float | int]:
        """Plain values (MiB rounded to 0.1) for logs and answers."""
        return {
            "dt": self.dt,
            "duration": self.duration,
            "steps": self.steps,
            "variants": self.variants,
            "samples": self.samples,
            "worlds": self.worlds,
            "world_steps": self.world_steps,
            "memory_mb": round(self.total_bytes / _MIB, 1),
        }


def _span(command, *, aligned: bool) -> float:
    """Program time the command covers, s (duck-typed: a trajectory command or a target stream)."""
    traj = getattr(command, "trajectory", None)
    if traj is not None:
        t0, end = float(traj.start_time), float(traj.end_time)
        # alignment replaces the start by a time in [t0, end]: the whole trajectory bounds it
        start = t0 if (aligned or command.start is None) else float(command.start)
        return max(0.0, end - start)
    return max(0, command.targets.shape[0] - 1) * float(command.dt)


def plan_request(
    scenario,
    *,
    ndof: int,
    settings: WhatIfSettings,
    limits: RequestLimits | None = None,
    uncertain: bool = True,
    aligned: bool = False,
) -> RequestPlan:
    """The cost of running ``scenario`` on a robot with ``ndof`` dofs, checked against the budgets.

    Args:
        scenario: a `Scenario` (only its scalars and the trajectory's time span are read).
        ndof: the robot's dofs.
        settings: the engine's `WhatIfSettings` (defaults, precision, ``memory_budget_mb``).
        limits: compute limits (None: memory only, as for local runs).
        uncertain: the base state has a covariance (the twin's snapshot has): ``samples`` worlds per variant;
            False: one.
        aligned: the command will be aligned to the twin's state (its start then lies anywhere in the
            trajectory): plan for the whole trajectory, and bound the alignment's 10 ms grid.

    Raises:
        WhatIfBudgetError: a figure beyond its limit (the message names both and the fix).
        WhatIfError: a dt outside (0, 0.05] s, or a latency/push time beyond the kernels' step counters.
    """
    s = settings
    lim = limits or RequestLimits()
    where = lim.section
    dt = s.dt if scenario.dt is None else scenario.dt
    if isinstance(dt, bool) or not isinstance(dt, (int, float)) or not math.isfinite(dt) or dt <= 0:
        raise WhatIfError(f"dt must be a finite number of seconds > 0, got {dt!r}")
    dt = float(dt)
    if dt > _MAX_DT:
        raise WhatIfError(
            f"dt = {dt:g} s is too coarse for drive dynamics (stiff servos need <= 0.05 s; 0.001-0.002 is typical)"
        )
    variants = scenario.variants
    nvar = len(variants)
    if lim.max_variants is not None and nvar > lim.max_variants:
        raise WhatIfBudgetError(
            f"the request has {nvar} variants, more than {where} max_variants = {lim.max_variants}; "
            "fix: ask about fewer variants per request",
            limit="max_variants",
        )
    samples = s.samples if scenario.samples is None else int(scenario.samples)
    samples = samples if uncertain else 1
    worlds = nvar * samples
    if lim.max_worlds is not None and worlds > lim.max_worlds:
        raise WhatIfBudgetError(
            f"the request needs {worlds} worlds ({nvar} variants x {samples} samples), more than {where} "
            f"max_worlds = {lim.max_worlds}; fix: fewer samples or variants",
            limit="max_worlds",
        )
    speeds = sorted({float(v.speed_scale) for v in variants})
    if scenario.duration is not None:
        duration = float(scenario.duration)
    else:
        span = _span(scenario.command, aligned=aligned)
        duration = max(span / sp for sp in speeds) + s.settle_time
    nsteps = duration / dt  # a float: never an integer with 10^20 digits or an array of that length
    if not math.isfinite(nsteps) or (lim.max_steps is not None and nsteps > lim.max_steps):
        limit = f"more than {where} max_steps = {lim.max_steps}" if lim.max_steps is not None else "no end"
        raise WhatIfBudgetError(
            f"the request needs {nsteps:.3g} steps ({duration:.4g} s simulated at dt {dt:g} s; the slowest "
            f"speed_scale is {min(speeds):g}): {limit}; fix: a shorter duration, a larger dt or a speed_scale "
            "nearer 1",
            limit="max_steps",
        )
    steps = max(1, int(round(nsteps)))
    world_steps = worlds * steps
    if lim.max_world_steps is not None and world_steps > lim.max_world_steps:
        raise WhatIfBudgetError(
            f"the request needs {world_steps:.3g} world-steps ({worlds} worlds x {steps} steps), more than {where} "
            f"max_world_steps = {lim.max_world_steps:.3g} (~1 µs per world-step and core); fix: fewer samples or "
            "variants, a shorter duration or a larger dt",
            limit="max_world_steps",
        )
    traj = getattr(scenario.command, "trajectory", None)
    if aligned and traj is not None and lim.max_steps is not None:
        grid = (float(traj.end_time) - float(traj.start_time)) / _ALIGN_RESOLUTION_S
        if grid > lim.max_steps:
            raise WhatIfBudgetError(
                f"the command trajectory spans {grid * _ALIGN_RESOLUTION_S:.4g} s; aligning it to the twin's state "
                f"samples it every {_ALIGN_RESOLUTION_S * 1000:g} ms, more than {where} max_steps = {lim.max_steps} "
                'points; fix: a shorter trajectory, or "align_to_state": false',
                limit="max_steps",
            )
    for v in variants:
        times = [("latency", v.latency)]
        if v.perturbation is not None:
            p = v.perturbation
            times += [("perturbation start", p.start), ("perturbation end", p.start + p.duration)]
        for what, value in times:
            if not math.isfinite(value) or abs(value) / dt > _INT32_MAX:
                raise WhatIfError(
                    f"variant {v.name!r}: {what} {value:g} s is beyond what the kernels count at dt {dt:g} s "
                    f"(at most {_INT32_MAX * dt:.3g} s); fix: a time within the simulated duration ({duration:.4g} s)"
                )

    record_every = s.record_every if scenario.record_every is None else int(scenario.record_every)
    nrec = steps // record_every if record_every > 0 else 0
    feedforward = s.velocity_feedforward if scenario.velocity_feedforward is None else scenario.velocity_feedforward
    channels = 2 if feedforward else 1
    nstream = len(speeds)
    fsize = 8 if s.precision == "float64" else 4
    # Python: the streams per speed and their stacked copy (float64), plus one speed's sampling temporaries
    # (times, ramp, the trajectory's q/qd/qdd columns, the outside-the-limits masks) and the initial states.
    command = 2 * nstream * steps * ndof * 8 * channels + steps * (8 * (4 + 3 * ndof) + 3 * ndof)
    command += worlds * 2 * ndof * 8 * 4
    # The engine: its copy of the streams, per-world state and statistics, recordings, scratch, parameter sets.
    recorded = 3 * worlds * nrec * ndof * fsize
    engine = nstream * steps * ndof * fsize * channels + worlds * (2 + 7) * ndof * fsize + worlds * (3 * ndof + 4) * 4
    engine += recorded + worlds * scratch_bytes_per_world(ndof, s.precision) + nvar * ndof * 8 * 64
    plan = RequestPlan(
        dt=dt,
        duration=duration,
        steps=steps,
        variants=nvar,
        samples=samples,
        worlds=worlds,
        world_steps=world_steps,
        streams=nstream,
        record_every=record_every,
        nrecord=nrec,
        command_bytes=int(command),
        engine_bytes=int(engine),
        recorded_bytes=int(recorded),
    )
    budget_mb = s.memory_budget_mb
    setting = "[whatif] memory_budget_mb"
    if lim.memory_budget_mb is not None and lim.memory_budget_mb < budget_mb:
        budget_mb, setting = lim.memory_budget_mb, f"{where} memory_budget_mb"
    if plan.total_bytes > budget_mb * _MIB:
        raise WhatIfBudgetError(
            f"this request needs {plan.total_bytes / _MIB:.0f} MiB ({recorded / _MIB:.0f} MiB of it recorded "
            f"q/qd/tau for {worlds} worlds x {nrec} samples, {command / _MIB:.0f} MiB command streams of {steps} "
            f"steps) but the what-if memory budget is {budget_mb:g} MiB ({setting}); fix: fewer worlds or steps, "
            "a larger record_every (or 0), or raise the budget",
            limit="memory_budget_mb",
        )
    return plan
