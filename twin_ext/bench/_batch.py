# SPDX-License-Identifier: Apache-2.0
"""``python -m twin_ext.bench batch``: suite throughput (jobs/s) in this process, on the local process pool and on
Ray with 1 and 2 workers, and the cost of one task on each executor.

Anchor: the same jobs run one after another in this process (what a shell loop over ``twin-ext replay`` does,
without its start-up). Jobs: emulated 4 s runs of the standard network, one seed each (deterministic, ~CPU-bound).
Throughput is counted from the moment the workers are up (start-up, the Warp warm-up included, is printed
separately). Per-task overhead: round trips of an empty call through the executor (Ray: an actor method via
`ActorPool`; pool: a trivial function).

Sweep (``--no-sweep`` skips it): config/suites/sweep.toml's 2000 what-if variants in 8 batches of 250, as
variants/s on the same executors (anchor: the batches one after another in this process), with the digest of
the merged verdicts compared across executors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

__all__ = ["main"]


def _jobs(count: int) -> list[dict[str, Any]]:
    from .._paths import impairments_dir
    from ..batch import Job

    jobs = []
    for seed in range(count):
        params = {
            "robot": "",
            "impairments": str(impairments_dir() / "standard.toml"),
            "faults": "none",
            "duration_s": 4.0,
            "seed": seed,
            "whatif": "none",
            "whatif_at_s": None,
            "samples": 2,
        }
        job = Job("emulate", f"bench#{seed}", params, {"forbid_events": ["collision"]})
        jobs.append({**job.to_dict(), "key": job.key})
    return jobs


def _timed(jobs, **options) -> dict[str, float]:
    from ..batch import run_jobs

    t0 = time.perf_counter()
    ready = [t0]
    results = list(run_jobs(jobs, on_start=lambda *_: ready.__setitem__(0, time.perf_counter()), **options))
    t1 = time.perf_counter()
    bad = [r["name"] for r in results if r["status"] != "pass"]
    if bad:
        raise RuntimeError(f"benchmark jobs did not pass: {bad}")
    metrics = [r["metrics"] for r in sorted(results, key=lambda r: r["name"])]
    out = {
        "startup_s": ready[0] - t0,
        "jobs_per_s": len(jobs) / (t1 - ready[0]),
        "job_s_median": sorted(r["seconds"] for r in results)[len(results) // 2],
    }
    if jobs[0]["kind"] == "sweep":
        out["variants_per_s"] = sum(m["sweep_variants"] for m in metrics) / (t1 - ready[0])
        out["metrics"] = json.dumps([m["verdicts_sha256"] for m in metrics])
    else:
        out["metrics"] = json.dumps([m["twin_rms_mrad"] for m in metrics])
    return out


def _sweep_jobs() -> list[dict[str, Any]]:
    from .._paths import config_dir
    from ..batch import load_suite

    return [{**job.to_dict(), "key": job.key} for job in load_suite(config_dir() / "suites" / "sweep.toml").jobs]


def _pool_overhead(calls: int) -> float:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(os.getpid, range(0)))
        pool.submit(os.getpid).result()  # workers up
        t0 = time.perf_counter()
        for future in [pool.submit(os.getpid) for _ in range(calls)]:
            future.result()
        return (time.perf_counter() - t0) / calls


def _ray_overhead(calls: int) -> float:
    import ray
    from ray.util import ActorPool

    @ray.remote(num_cpus=1)
    class Empty:
        def ready(self) -> bool:
            return True

    actors = [Empty.remote() for _ in range(2)]
    ray.get([a.ready.remote() for a in actors])
    pool = ActorPool(actors)
    t0 = time.perf_counter()
    for _ in range(calls):
        pool.submit(lambda actor, _v: actor.ready.remote(), None)
    while pool.has_next():
        pool.get_next_unordered()
    for a in actors:
        ray.kill(a)
    return (time.perf_counter() - t0) / calls


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m twin_ext.bench batch", description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=8, help="emulated 4 s jobs per executor (default 8)")
    p.add_argument("--no-ray", action="store_true", help="skip the Ray executors")
    p.add_argument("--no-sweep", action="store_true", help="skip the 2000-variant what-if sweep")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    jobs = _jobs(args.jobs)
    doc: dict[str, Any] = {"jobs": args.jobs, "cpus": os.cpu_count(), "load_before": os.getloadavg()[0]}
    doc["anchor_serial"] = _timed(jobs, workers=1, whatif=False)
    doc["pool_2"] = _timed(jobs, workers=2, whatif=False)
    doc["pool_task_overhead_ms"] = _pool_overhead(200) * 1e3
    sweep = [] if args.no_sweep else _sweep_jobs()
    if sweep:
        doc["sweep_anchor_serial"] = _timed(sweep, workers=1)
        doc["sweep_pool_2"] = _timed(sweep, workers=2)
    if not args.no_ray:
        try:
            import ray
        except ImportError:
            print("Ray not installed (pip install 'twin-ext[ray]'): Ray figures skipped", file=sys.stderr)
        else:
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray stays on 127.0.0.1
            ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
            try:
                doc["ray_1"] = _timed(jobs, workers=1, ray="auto", whatif=False)
                doc["ray_2"] = _timed(jobs, workers=2, ray="auto", whatif=False)
                doc["ray_task_overhead_ms"] = _ray_overhead(200) * 1e3
                if sweep:
                    doc["sweep_ray_2"] = _timed(sweep, workers=2, ray="auto")
            finally:
                ray.shutdown()
    doc["load_after"] = os.getloadavg()[0]
    base = doc["anchor_serial"]["jobs_per_s"]
    same = {k: v["metrics"] for k, v in doc.items() if isinstance(v, dict) and not k.startswith("sweep")}
    doc["identical_results"] = len(set(same.values())) == 1
    if sweep:
        digests = {k: v["metrics"] for k, v in doc.items() if isinstance(v, dict) and k.startswith("sweep")}
        doc["sweep_identical_results"] = len(set(digests.values())) == 1
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(
        f"batch: {args.jobs} emulated 4 s jobs per executor on {doc['cpus']} CPUs (load average "
        f"{doc['load_before']:.1f} before, {doc['load_after']:.1f} after: other work on the machine slows the workers)"
    )
    for key, label in (
        ("anchor_serial", "anchor: one after another here"),
        ("pool_2", "process pool, 2 workers"),
        ("ray_1", "Ray, 1 actor"),
        ("ray_2", "Ray, 2 actors"),
    ):
        if key in doc:
            r = doc[key]
            print(
                f"  {label:<32}{r['jobs_per_s']:6.3f} jobs/s  x{r['jobs_per_s'] / base:4.2f} of the anchor  "
                f"(start-up {r['startup_s']:5.1f} s, median job {r['job_s_median']:.2f} s)"
            )
    print(f"  per-task overhead: process pool {doc['pool_task_overhead_ms']:.3f} ms", end="")
    if "ray_task_overhead_ms" in doc:
        print(f", Ray actor call {doc['ray_task_overhead_ms']:.3f} ms", end="")
    print(f"\n  identical results on every executor: {doc['identical_results']}")
    if sweep:
        anchor = doc["sweep_anchor_serial"]["variants_per_s"]
        print("sweep: config/suites/sweep.toml, 2000 what-if variants in 8 batches of 250")
        for key, label in (
            ("sweep_anchor_serial", "anchor: batches one after another"),
            ("sweep_pool_2", "process pool, 2 workers"),
            ("sweep_ray_2", "Ray, 2 actors"),
        ):
            if key in doc:
                r = doc[key]
                print(
                    f"  {label:<36}{r['variants_per_s']:7.0f} variants/s  x{r['variants_per_s'] / anchor:4.2f} of the "
                    f"anchor  (start-up {r['startup_s']:5.1f} s)"
                )
        print(f"  identical merged verdicts on every executor: {doc['sweep_identical_results']}")
    return 0
