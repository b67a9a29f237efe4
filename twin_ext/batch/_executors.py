# SPDX-License-Identifier: Apache-2.0
"""Where jobs run: in this process, on a local process pool, or on a Ray cluster (one actor per worker).

Every executor calls the same `run_job` on the same job dicts, so results do not depend on where they ran
(the jobs are deterministic: virtual clocks, seeded emulators and Monte-Carlo). Each worker warms once (robot
and what-if kernels, `warm`) and then takes task after task: a whole job, or one batch of variants of a sweep
job (thousands of variants), which the driver merges into the job's result as its last batch comes back.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from .. import TwinExtError
from ._jobs import finish_sweep, run_job, run_task, warm
from ._sweep import batch_count

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


def _warm_worker(robots: tuple[str, ...], whatif: bool, scenes: tuple[str, ...] = ("",)) -> None:
    try:
        warm(robots, whatif, scenes)
    except Exception:  # noqa: BLE001, S110 - a job that needs the broken piece reports it
        pass


def _tasks(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each job as one task, a sweep job as one task per batch of variants."""
    tasks = []
    for job in jobs:
        if job["kind"] == "sweep":
            tasks.extend({"job": job, "batch": i} for i in range(batch_count(job["params"])))
        else:
            tasks.append({"job": job})
    return tasks


class _Collector:
    """Task results in, job results out: a sweep's result once all its batches are back (merged, judged)."""

    def __init__(self, jobs: list[dict[str, Any]], on_batch: Callable[[str, int, int], None] | None = None) -> None:
        self.jobs = {j["key"]: j for j in jobs if j["kind"] == "sweep"}
        self.parts: dict[str, list[dict[str, Any]]] = {k: [] for k in self.jobs}
        self.on_batch = on_batch

    def add(self, task: dict[str, Any] | None, result: dict[str, Any]) -> list[dict[str, Any]]:
        if "index" not in result:  # a whole job
            return [result]
        key = result["key"]
        self.parts[key].append(result)
        job = self.jobs[key]
        total = batch_count(job["params"])
        if self.on_batch:
            self.on_batch(job["name"], len(self.parts[key]), total)
        if len(self.parts[key]) < total:
            return []
        return [finish_sweep(job, self.parts.pop(key))]

    def failed(self, task: dict[str, Any], why: str) -> list[dict[str, Any]]:
        if "batch" in task:
            return self.add(task, {"key": task["job"]["key"], "index": task["batch"], "error": why})
        return [_broken(task["job"], why)]

    def leftovers(self, why: str) -> list[dict[str, Any]]:
        """Sweeps with batches that never came back (a lost actor): failed jobs saying so."""
        out = []
        for key, parts in list(self.parts.items()):
            job = self.jobs[key]
            got = {p["index"] for p in parts}
            lost = [{"key": key, "index": i, "error": why} for i in range(batch_count(job["params"])) if i not in got]
            out.append(finish_sweep(job, parts + lost))
        self.parts.clear()
        return out


def run_jobs(
    jobs: list[dict[str, Any]],
    *,
    workers: int | None = None,
    ray: str = "",
    robots: tuple[str, ...] = ("",),
    whatif: bool = True,
    scenes: tuple[str, ...] = ("",),
    on_start: Callable[[int, str], None] | None = None,
    on_batch: Callable[[str, int, int], None] | None = None,
    hooks: dict[str, Any] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run ``jobs`` (`Job.to_dict` plus ``key``) and yield each result as it finishes (any order).

    Args:
        workers: processes (local) or actors (Ray); None = in this process without Ray, one actor per CPU of the
            cluster with Ray; 1 without Ray = in this process.
        ray: "" = no Ray; ``"auto"`` = the running cluster or a new local one; else a cluster address
            (``ray://host:10001`` or ``host:6379``).
        robots, whatif, scenes: what each worker warms before its first job (robot models; what-if engines per
            robot and scene, "" = none).
        on_start: called with ``(workers, where)`` once the workers are up.
        on_batch: called with ``(job name, batches back, batches)`` as each batch of a sweep comes back (pool, Ray).
        hooks: extra sinks and a per-tick call (`run_job`); in this process only (they hold Kit objects).
    """
    if not jobs:
        return
    if hooks and (ray or (workers or 1) > 1):
        raise BatchExecutorError("hooks (Isaac Sim drivers) run in this process only: use workers=1 without Ray")
    if ray:
        yield from _run_on_ray(
            jobs,
            workers=workers,
            address=ray,
            robots=robots,
            whatif=whatif,
            scenes=scenes,
            on_start=on_start,
            on_batch=on_batch,
        )
        return
    if workers is None or workers <= 1:
        if on_start:
            on_start(1, "this process")
        _warm_worker(robots, whatif, scenes)
        for job in jobs:
            yield run_job(job, hooks)
        return
    # spawn: a fresh interpreter per worker (no inherited threads or Warp state from this process)
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_warm_worker, initargs=(robots, whatif, scenes)
    )
    try:
        # Every worker up and warm before the first job (so start-up is not counted in the jobs' time).
        for future in [pool.submit(_hold, 0.3) for _ in range(workers)]:
            future.result()
        if on_start:
            on_start(workers, "local process pool")
        collector = _Collector(jobs, on_batch)
        futures = {pool.submit(run_task, task): task for task in _tasks(jobs)}
        for future in as_completed(futures):
            task = futures[future]
            try:
                yield from collector.add(task, future.result())
            except BrokenProcessPool as exc:
                yield from collector.failed(task, f"the worker process died running this job or one beside it: {exc!r}")
            except Exception as exc:  # noqa: BLE001 - pickling and the like: still one failed test case
                yield from collector.failed(task, f"{type(exc).__name__}: {exc}")
    finally:
        # Interrupted (Ctrl-C) or done: drop the queued jobs instead of running them all before returning.
        pool.shutdown(wait=True, cancel_futures=True)


def _run_on_ray(jobs, *, workers, address, robots, whatif, scenes, on_start, on_batch=None):
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
        actors = [actor_class.remote(robots, whatif, scenes) for _ in range(count)]
        ray.get([a.ready.remote() for a in actors])
        if on_start:
            on_start(count, f"Ray ({address})")
        pool = ActorPool(actors)
        collector = _Collector(jobs, on_batch)
        for task in _tasks(jobs):
            pool.submit(lambda actor, t: actor.run_task.remote(t), task)
        while pool.has_next():
            try:
                yield from collector.add(None, pool.get_next_unordered())
            except Exception as exc:  # noqa: BLE001 - an actor died: its job is one failed test case
                yield _broken({"name": "?", "kind": "?"}, f"a Ray task failed: {exc}")
        yield from collector.leftovers("a Ray task failed: this batch never came back")
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
    """A Ray actor holding one warm worker: robot models and what-if kernels loaded once, then task after task."""

    def __init__(self, robots: tuple[str, ...], whatif: bool, scenes: tuple[str, ...] = ("",)) -> None:
        _warm_worker(robots, whatif, scenes)

    def ready(self) -> bool:
        return True

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        return run_job(job)

    def run_task(self, task: dict[str, Any]) -> dict[str, Any]:
        """A whole job or one batch of a sweep (`run_task`)."""
        return run_task(task)
