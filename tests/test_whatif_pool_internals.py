# SPDX-License-Identifier: Apache-2.0
"""Internals of the what-if worker pool and executor (`twin_ext.whatif._pool`, `_compute`): dead workers are
replaced, the device copy-in/copy-out path agrees with the in-place one, and shared recording memory is reused
safely."""

from __future__ import annotations

import os
import signal
from functools import cache

import numpy as np
import pytest
from conftest import REPO

from twin_ext.robot import JointTrajectory, load_robot
from twin_ext.whatif import WhatIfEngine, WhatIfSettings, WorkerError
from twin_ext.whatif._compute import Executor
from twin_ext.whatif._pool import shared_pool

PANDA_HOME = np.array([0.0, -0.7854, 0.0, -2.3562, 0.0, 1.5708, 0.7854, 0.02, 0.02])


@cache
def _robot(name: str):
    assert name == "panda"
    return load_robot(REPO / "usd/franka_panda/panda.usda")


@cache
def engine(name: str) -> WhatIfEngine:
    return WhatIfEngine(_robot(name), settings=WhatIfSettings(use_process_pool=False))


def _wild_targets(robot, q0: np.ndarray, steps: int, dt: float, seed: int):
    """Targets that swing every joint and push some past their limits (limit springs engage)."""
    rng = np.random.default_rng(seed)
    lo = np.where(np.isfinite(robot.lower), robot.lower, -2.0)
    hi = np.where(np.isfinite(robot.upper), robot.upper, 2.0)
    far = np.where(rng.random(robot.ndof) < 0.5, hi + 0.1 * (hi - lo), lo - 0.1 * (hi - lo))
    traj = JointTrajectory(robot.dof_names, [0.0, 0.5 * steps * dt, steps * dt], [q0, far, q0])
    q, qd, _ = traj.sample(np.arange(steps) * dt)
    return q, qd


def test_a_dead_worker_is_replaced_and_a_death_during_a_request_is_reported():
    """A worker killed between requests is replaced transparently; one killed during a request makes that request
    fail with WorkerError quoting the worker's exit, and the next request works again."""

    robot = _robot("panda")
    pooled = WhatIfEngine(robot, settings=WhatIfSettings(workers=2, chunk_steps=50))
    pool = shared_pool(2, nice=WhatIfSettings().worker_nice)  # the pool the engine uses
    targets = np.tile(PANDA_HOME, (100, 1))
    reference = pooled.rollout(PANDA_HOME, None, targets, dt=2e-3)
    os.kill(pool._workers[0].proc.pid, signal.SIGKILL)
    pool._workers[0].proc.wait(timeout=10)
    np.testing.assert_array_equal(pooled.rollout(PANDA_HOME, None, targets, dt=2e-3).q, reference.q)

    def kill_worker(fraction):
        for worker in pool._workers:
            if worker.proc.poll() is None:
                os.kill(worker.proc.pid, signal.SIGKILL)
                return

    with pytest.raises(WorkerError, match="died during a request"):
        pooled.rollout(
            np.tile(PANDA_HOME, (64, 1)), None, np.tile(PANDA_HOME, (20000, 1)), dt=1e-3, progress=kill_worker
        )
    np.testing.assert_array_equal(pooled.rollout(PANDA_HOME, None, targets, dt=2e-3).q, reference.q)


def test_the_copy_in_copy_out_path_of_non_cpu_devices_gives_the_same_results():
    """The path used for CUDA devices (inputs copied to the device, results copied back) is exercised on the CPU and
    agrees exactly with the in-place path (CUDA itself is untested here: no GPU)."""

    robot = _robot("panda")
    copying = WhatIfEngine(robot, settings=WhatIfSettings(use_process_pool=False, warmup=False))
    copying._executor = Executor("cpu", copy_io=True)  # before its (lazy) warm-up uses the executor
    targets, velocities = _wild_targets(robot, PANDA_HOME, 200, 2e-3, seed=9)
    kwargs = dict(dt=2e-3, target_velocities=velocities, record_every=4)
    a = copying.rollout(np.tile(PANDA_HOME, (3, 1)), None, targets, **kwargs)
    b = engine("panda").rollout(np.tile(PANDA_HOME, (3, 1)), None, targets, **kwargs)
    for field in ("q", "tau", "q_final", "first_position_violation", "min_effort_margin", "max_tracking_error"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    dyn_a = copying.accelerations(PANDA_HOME, None, PANDA_HOME + 0.1)
    dyn_b = engine("panda").accelerations(PANDA_HOME, None, PANDA_HOME + 0.1)
    np.testing.assert_array_equal(dyn_a.qdd, dyn_b.qdd)


def test_results_stay_valid_while_later_requests_reuse_the_memory_of_dropped_ones():
    """Recorded trajectories are handed over without a copy: a result kept alive is never overwritten by later
    requests, memory of dropped results is reused, and at most one unused recording buffer is kept."""
    import gc

    robot = _robot("panda")
    pooled = WhatIfEngine(robot, settings=WhatIfSettings(workers=2))
    up, down = np.tile(PANDA_HOME + 0.05, (100, 1)), np.tile(PANDA_HOME - 0.05, (100, 1))
    kept = pooled.rollout(PANDA_HOME, None, up, dt=2e-3, record_every=1)
    snapshot = kept.q.copy()
    for _ in range(5):
        other = pooled.rollout(PANDA_HOME, None, down, dt=2e-3, record_every=1)
        assert not np.array_equal(other.q, snapshot)
        del other
        gc.collect()
    np.testing.assert_array_equal(kept.q, snapshot)
    pool = shared_pool(2, nice=WhatIfSettings().worker_nice)  # the pool the engine uses
    free = [entry for entry in pool._recordings if all(ref() is None for ref in entry[1])]
    assert len(pool._recordings) <= 3 and len(free) <= 1


def test_pool_workers_run_at_the_configured_lower_priority():
    """`worker_nice` = 7: every worker process of the engine's pool runs 7 niceness steps below this process (so
    rollouts yield the cores to the twin's network and display threads)."""
    if not hasattr(os, "getpriority"):
        pytest.skip("no POSIX priorities on this OS")
    pooled = WhatIfEngine(_robot("panda"), settings=WhatIfSettings(workers=1, worker_nice=7))
    pooled.rollout(PANDA_HOME, None, np.tile(PANDA_HOME, (10, 1)), dt=2e-3)
    pool = shared_pool(1, nice=7)
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert [os.getpriority(os.PRIO_PROCESS, w.proc.pid) for w in pool._workers] == [min(own + 7, 19)]
