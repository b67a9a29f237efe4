# SPDX-License-Identifier: Apache-2.0
"""Where jobs run: in this process, on a local process pool, or on a Ray cluster (one actor per worker).

Every executor calls the same `run_job` on the same job dicts, so results do not depend on where they ran
(the jobs are deterministic: virtual clocks, seeded emulators and Monte-Carlo). Each worker warms once (robot
and what-if kernels, `warm`) and then takes job after job.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .. import TwinExtError
from ._jobs import run_job, warm

__all__ = ["BatchExecutorError", "run_jobs"]


class BatchExecutorError(TwinExtError, RuntimeError):
    """Ray is asked for but missing or unreachable; the message names the fix."""


def _broken(job: dict[str, Any], why: str) -> dict[str, Any]:
    return {
        "name": job["name"],
        "kind": job["kind"],
        "key": job.get("key", ""),
        "status": "error",
        "checks": [],
        "metrics": {},
        "warnings": [],
        "error": why,
        "series": {},
        "seconds": 0.0,
    }


def _hold(seconds: float) -> int:
    """Keep a pool worker busy for a moment, so that the pool starts every worker."""
    import os
    import time

    time.sleep(seconds)
    return os.getpid()


def _warm_worker(robots: tuple[str, ...], whatif: bool) -> None:
    try:
        warm(robots, whatif)
    except Exception:  # noqa: BLE001, S110 - a job that needs the broken piece reports it
        pass


def run_jobs(
    jobs: list[dict[str, Any]],
    *,
    workers: int | None = None,
    ray: str = "",
    robots: tuple[str, ...] = ("",),
    whatif: bool = True,
    on_start: Callable[[int, str], None] | None = None,
    hooks: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run ``jobs`` (`Job.to_dict` plus ``key``) and yield each result as it finishes (any order).

    Args:
        workers: processes (local) or actors (Ray); None = in this process without Ray, one actor per CPU of the
            cluster with Ray; 1 without Ray = in this process.
        ray: "" = no Ray; ``"auto"`` = the running cluster or a new local one; else a cluster address
            (``ray://host:10001`` or ``host:6379``).
        robots, whatif: what each worker warms before its first job.
        on_start: called with ``(workers, where)`` once the workers are up.
        hooks: extra sinks and a per-tick call (`run_job`); in this process only (they hold Kit objects).
    """
    if not jobs:
        return
    if hooks and (ray or (workers or 1) > 1):
        raise BatchExecutorError("hooks (Isaac Sim drivers) run in this process only: use workers=1 without Ray")
    if ray:
        yield from _run_on_ray(jobs, workers=workers, address=ray, robots=robots, whatif=whatif, on_start=on_start)
        return
    if workers is None or workers <= 1:
        if on_start:
            on_start(1, "this process")
        _warm_worker(robots, whatif)
        for job in jobs:
            yield run_job(job, hooks)
        return
    # spawn: a fresh interpreter per worker (no inherited threads or Warp state from this process)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_warm_worker, initargs=(robots, whatif)
    )
    try:
        # Every worker up and warm before the first job (so start-up is not counted in the jobs' time).
        for future in [pool.submit(_hold, 0.3) for _ in range(workers)]:
            future.result()
        if on_start:
            on_start(workers, "local process pool")
        futures = {pool.submit(run_job, job): job for job in jobs}
        for future in as_completed(futures):
            job = futures[future]
            try:
                yield future.result()
            except BrokenProcessPool as exc:
                yield _broken(job, f"the worker process died running this job or one beside it: {exc!r}")
            except Exception as exc:  # noqa: BLE001 - pickling and the like: still one failed test case
                yield _broken(job, f"{type(exc).__name__}: {exc}")
    finally:
        # Interrupted (Ctrl-C) or done: drop the queued jobs instead of running them all before returning.
        pool.shutdown(wait=True, cancel_futures=True)


def _run_on_ray(jobs, *, workers, address, robots, whatif, on_start):
    try:
        import ray
        from ray.util import ActorPool
    except ImportError:
        raise BatchExecutorError(
            "--ray needs Ray; fix: pip install 'twin-ext[ray]' (or run without --ray: the local process pool)"
        ) from None
    started_here = not ray.is_initialized()
    if started_here:
        options = {"include_dashboard": False, "log_to_driver": False}
        try:
            if address == "auto":
                try:  # a running cluster (RAY_ADDRESS, or the one `ray start` left on this machine) ...
                    ray.init(address="auto", **options)
                except ConnectionError:  # ... or a new one on this machine, for this run only
                    ray.init(address="local", **options)
            else:
                _check_reachable(address)
                ray.init(address=address, **options)
        except Exception as exc:  # noqa: BLE001 - connection errors come in many types
            raise BatchExecutorError(
                f"cannot reach the Ray cluster at {address!r}: {exc}; fix: start one (ray start --head) or pass its "
                "address (--ray HOST:6379), or use --ray auto for a local one"
            ) from None
    try:
        count = workers or max(1, int(ray.cluster_resources().get("CPU", 1)))
        actor_class = ray.remote(num_cpus=1)(JobActor)
        actors = [actor_class.remote(robots, whatif) for _ in range(count)]
        ray.get([a.ready.remote() for a in actors])
        if on_start:
            on_start(count, f"Ray ({address})")
        pool = ActorPool(actors)
        for job in jobs:
            pool.submit(lambda actor, j: actor.run.remote(j), job)
        while pool.has_next():
            try:
                yield pool.get_next_unordered()
            except Exception as exc:  # noqa: BLE001 - an actor died: its job is one failed test case
                yield _broken({"name": "?", "kind": "?"}, f"a Ray task failed: {exc}")
        for actor in actors:
            ray.kill(actor)
    finally:
        if started_here:
            ray.shutdown()


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast on an address nobody serves: ``ray.init`` retries a dead address for minutes."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise BatchExecutorError(f"--ray {address!r} is not HOST:PORT (or ray://HOST:PORT) nor 'auto'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise BatchExecutorError(
            f"cannot reach the Ray cluster at {address!r} ({exc.strerror or exc}); fix: start one (ray start --head) "
            "and pass its address, or use --ray auto"
        ) from None


class JobActor:
    """A Ray actor holding one warm worker: robot models and what-if kernels loaded once, then job after job."""

    def __init__(self, robots: tuple[str, ...], whatif: bool) -> None:
        _warm_worker(robots, whatif)

    def ready(self) -> bool:
        return True

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        return run_job(job)
