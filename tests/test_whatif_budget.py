# SPDX-License-Identifier: Apache-2.0
"""The pre-flight budget (`plan_request`): a request's cost from its scalars, refused before any array exists."""

from __future__ import annotations

import time
import tracemalloc

import numpy as np
import pytest

from twin_ext.robot import JointTrajectory
from twin_ext.whatif import (
    Payload,
    Perturbation,
    RequestLimits,
    Scenario,
    TargetStream,
    TrajectoryCommand,
    Variant,
    WhatIfBudgetError,
    WhatIfEngine,
    WhatIfError,
    WhatIfSettings,
    plan_request,
)

PROGRAM = JointTrajectory(["joint1", "joint2"], [0.0, 4.0, 10.0], [[0.0, 0.0], [0.5, -0.3], [0.0, 0.0]])
LIMITS = RequestLimits(max_steps=100_000, max_worlds=4096, max_variants=64, max_world_steps=10_000_000,
                       memory_budget_mb=256.0)  # fmt: skip
SETTINGS = WhatIfSettings()


def _scenario(**kwargs) -> Scenario:
    variants = kwargs.pop("variants", (Variant(),))
    return Scenario("s", kwargs.pop("command", TrajectoryCommand(PROGRAM)), variants, **kwargs)


def test_the_plan_counts_steps_worlds_and_memory_as_the_run_will():
    """Steps from the slowest variant's command plus the settle time, worlds = variants x samples, recordings."""
    plan = plan_request(
        _scenario(samples=8, variants=(Variant("a"), Variant("slow", speed_scale=0.5))), ndof=9, settings=SETTINGS
    )
    assert plan.steps == round((10.0 / 0.5 + SETTINGS.settle_time) / SETTINGS.dt)
    assert (plan.variants, plan.samples, plan.worlds, plan.streams) == (2, 8, 16, 2)
    assert plan.world_steps == 16 * plan.steps
    assert plan.nrecord == plan.steps // SETTINGS.record_every
    assert plan.recorded_bytes == 3 * 16 * plan.nrecord * 9 * 8
    assert plan.command_bytes > 2 * plan.steps * 9 * 8 * 2  # two streams, positions and velocities
    assert plan_request(_scenario(samples=8), ndof=9, settings=SETTINGS, uncertain=False).worlds == 1
    stream = TargetStream(("joint1",), np.zeros((101, 1)), 0.01)
    assert plan_request(_scenario(command=stream, duration=None), ndof=9, settings=SETTINGS).duration == pytest.approx(
        1.0 + SETTINGS.settle_time
    )


@pytest.mark.parametrize(
    "scenario, limit",
    [
        (lambda: _scenario(dt=1e-9), "max_steps"),
        (lambda: _scenario(variants=(Variant("crawl", speed_scale=1e-9),)), "max_steps"),
        (lambda: _scenario(duration=20000.0), "max_steps"),
        (lambda: _scenario(samples=10**9), "max_worlds"),
        (lambda: _scenario(variants=tuple(Variant(f"v{i}") for i in range(65))), "max_variants"),
        (lambda: _scenario(samples=400, duration=100.0), "max_world_steps"),
        (lambda: _scenario(samples=32, duration=190.0, record_every=1), "memory_budget_mb"),
        (lambda: _scenario(command=TargetStream(("joint1",), np.zeros((2, 1)), 1e300)), "max_steps"),
    ],
)
def test_budget_breakers_are_refused_in_microseconds_without_allocating(scenario, limit):
    """Each budget breaker is refused naming limit and fix in < 5 ms, allocating < 256 KiB (dt 1e-9 took 14.8 GB)."""
    s = scenario()
    tracemalloc.start()
    t0 = time.perf_counter()
    with pytest.raises(WhatIfBudgetError, match=rf"{limit}.*fix:") as info:
        plan_request(s, ndof=9, settings=SETTINGS, limits=LIMITS)
    seconds = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert info.value.limit == limit
    assert seconds < 5e-3, seconds  # measured ~20-200 µs; the bound leaves room for a loaded machine
    assert peak < 256 * 1024, peak


def test_aligning_a_very_long_trajectory_is_bounded_too():
    """Alignment samples the trajectory every 10 ms: a 10^9 s waypoint is refused before that grid is built."""
    long = JointTrajectory(["joint1"], [0.0, 1e9], [[0.0], [0.0]])
    with pytest.raises(WhatIfBudgetError, match=r"aligning it .* max_steps = 100000.*align_to_state"):
        plan_request(_scenario(command=TrajectoryCommand(long), duration=1.0), ndof=9, settings=SETTINGS,
                     limits=LIMITS, aligned=True)  # fmt: skip
    plan_request(_scenario(command=TrajectoryCommand(long), duration=1.0), ndof=9, settings=SETTINGS, limits=LIMITS)


def test_times_beyond_the_kernels_step_counters_are_input_errors():
    """A latency or a push time that does not fit the kernels' int32 step counters is refused, naming the variant."""
    with pytest.raises(WhatIfError, match=r"variant 'lag': latency 1e\+300 s .*fix:"):
        plan_request(_scenario(variants=(Variant("lag", latency=1e300),)), ndof=9, settings=SETTINGS)
    push = Perturbation("hand", force=(1.0, 0.0, 0.0), start=1e12, duration=1.0)
    with pytest.raises(WhatIfError, match="variant 'push': perturbation start"):
        plan_request(_scenario(variants=(Variant("push", perturbation=push),)), ndof=9, settings=SETTINGS)
    plan_request(_scenario(variants=(Variant("ok", latency=0.02, payloads=(Payload("hand", 1.0),)),)), ndof=9,
                 settings=SETTINGS)  # fmt: skip


def test_without_limits_only_memory_is_checked_and_the_smaller_budget_applies():
    """Local runs have no compute limits; a remote budget tighter than [whatif] memory_budget_mb wins, named."""
    big = _scenario(samples=128, duration=190.0, record_every=1)  # 2.6 GB of recorded q/qd/tau
    with pytest.raises(WhatIfBudgetError, match=r"budget is 2048 MiB \(\[whatif\] memory_budget_mb\)"):
        plan_request(big, ndof=9, settings=SETTINGS)
    plan_request(_scenario(samples=400, duration=100.0, record_every=0), ndof=9, settings=SETTINGS)  # 20 M: local ok
    with pytest.raises(WhatIfBudgetError, match=r"budget is 256 MiB \(\[remote_whatif\] memory_budget_mb\)"):
        plan_request(big, ndof=9, settings=SETTINGS, limits=RequestLimits(memory_budget_mb=256.0))


def test_engine_run_refuses_a_huge_scenario_before_building_its_command(panda):
    """WhatIfEngine.run refuses a scenario over the memory budget before it builds any command array."""
    engine = WhatIfEngine(panda, settings=WhatIfSettings(use_process_pool=False, warmup=False, memory_budget_mb=64.0))
    traj = JointTrajectory(["joint1"], [0.0, 1.0], [[0.0], [0.1]])
    tracemalloc.start()
    with pytest.raises(WhatIfBudgetError, match=r"needs \d+ MiB .*budget is 64 MiB.*memory_budget_mb"):
        engine.run(Scenario("huge", TrajectoryCommand(traj), dt=1e-6, duration=1000.0))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 16 * 2**20, peak
