# SPDX-License-Identifier: Apache-2.0
"""``python -m twin_ext batch SUITE.toml`` (and ``python -m twin_ext.batch``): run a suite, resume, report.

Results are cached per job under ``<out>/<suite>/jobs/<key>.json`` as each job finishes, so an interrupted
suite run again does only what is left (``--fresh`` runs everything). Exit status: 0 every check passed,
1 a check failed or a job could not run, 2 the suite file or the options are unusable, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["add_batch_arguments", "run_batch", "run_suite", "run_sweep"]


def add_batch_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("suite", help="a suite TOML file (docs/batch.md; examples in config/suites/)")
    parser.add_argument("--out", default="out/batch", help="output root; the suite writes <out>/<suite>/")
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes, or Ray actors (default: this process; with --ray one actor per CPU of the cluster)",
    )
    parser.add_argument(
        "--ray",
        default="",
        metavar="auto|ADDRESS",
        help="run the jobs on Ray: 'auto' (the running cluster, or a new local one) or a cluster address",
    )
    parser.add_argument("--fresh", action="store_true", help="ignore cached results: run every job again")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, only the summary")


def run_batch(args: argparse.Namespace) -> int:
    """The command: run the suite ``args.suite`` and return the exit status."""
    from .. import TwinExtError

    try:
        summary = run_suite(
            args.suite,
            out=Path(args.out),
            workers=args.workers,
            ray=args.ray,
            fresh=args.fresh,
            progress=not args.quiet,
        )
    except TwinExtError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished jobs are cached; run the same command again to resume", file=sys.stderr)
        return 130
    return 0 if summary["passed"] else 1


def run_suite(
    suite_path: str | Path,
    *,
    out: Path = Path("out/batch"),
    workers: int | None = None,
    ray: str = "",
    fresh: bool = False,
    progress: bool = False,
    max_jobs: int | None = None,
    hooks: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Expand and run a suite; write ``junit.xml``, ``summary.json``, ``index.html`` and ``jobs/`` into
    ``out/<suite name>/``. Returns the summary (as written to summary.json, plus ``folder`` and ``ran``: jobs
    run now, the rest came from the cache).

    Args:
        max_jobs: stop after running this many new jobs (tests use it to interrupt a suite); None = all.
        hooks: extra sinks and a per-tick call for every twin run (`run_job`; in-process only): how the Isaac
            Sim runner drives an articulation and steps PhysX while the twin replays.

    Raises:
        SuiteError: the suite file cannot be expanded.
        BatchExecutorError: Ray asked for and not available.
    """
    from ._executors import run_jobs
    from ._reports import write_html, write_junit, write_summary
    from ._suite import load_suite

    suite = load_suite(suite_path)
    if workers is not None and workers < 1:
        from ._suite import SuiteError

        raise SuiteError(f"--workers {workers} must be >= 1")
    folder = out / suite.name
    cache = folder / "jobs"
    cache.mkdir(parents=True, exist_ok=True)
    jobs = [{**job.to_dict(), "key": job.key} for job in suite.jobs]
    results: dict[str, dict[str, Any]] = {}
    todo = []
    for job in jobs:
        cached = cache / f"{job['key']}.json"
        if not fresh and cached.is_file():
            try:
                doc = json.loads(cached.read_text(encoding="utf-8"))
                if doc.get("status") in ("pass", "fail"):  # errors are retried: the file may be fixed by now
                    results[job["name"]] = doc
                    continue
            except (OSError, ValueError):
                pass
        todo.append(job)
    if max_jobs is not None:
        todo = todo[:max_jobs]
    robots = tuple(sorted({j["params"].get("robot", "") for j in jobs}))
    asks = [j for j in todo if j["kind"] in ("whatif", "sweep") or j["params"].get("whatif", "none") != "none"]
    needs_whatif = bool(asks)
    scenes = tuple(sorted({j["params"].get("scene", "") for j in asks})) or ("",)
    ran = 0
    t0 = time.perf_counter()
    with _Progress(progress, suite.name, len(jobs), len(results)) as bar:
        for result in run_jobs(
            todo,
            workers=workers,
            ray=ray,
            robots=robots,
            whatif=needs_whatif,
            scenes=scenes,
            on_start=bar.started,
            on_batch=bar.batch,
            hooks=hooks,
        ):
            ran += 1
            if result.get("key"):
                (cache / f"{result['key']}.json").write_text(json.dumps(result, default=str), encoding="utf-8")
            results[result["name"]] = result
            bar.advance(result)
    wall = time.perf_counter() - t0
    ordered = [results[j["name"]] for j in jobs if j["name"] in results]
    info = {"name": suite.name, "path": str(suite.path), "description": suite.description}
    write_junit(folder / "junit.xml", suite.name, ordered)
    summary = write_summary(folder / "summary.json", info, ordered)
    summary["passed"] = summary["passed"] and len(ordered) == len(jobs)
    write_html(folder, info, ordered)
    summary.update(folder=str(folder), ran=ran, wall_s=wall, pending=len(jobs) - len(ordered))
    if progress:
        counts = summary["counts"]
        pending = f", {summary['pending']} not run" if summary["pending"] else ""
        print(
            f"suite {suite.name}: {len(ordered)} of {len(jobs)} jobs: {counts['pass']} pass, {counts['fail']} fail, "
            f"{counts['error']} error{pending} ({ran} run now in {wall:.1f} s, {len(ordered) - ran} from the cache)\n"
            f"  {folder / 'junit.xml'}\n  {folder / 'summary.json'}\n  {folder / 'index.html'}"
        )
        for r in ordered:
            if r["status"] != "pass":
                why = r.get("error") or "; ".join(f"{c['name']}: {c['detail']}" for c in r["checks"] if not c["ok"])
                print(f"  {r['status'].upper():5} {r['name']}: {why}")
    return summary


def run_sweep(
    scenario: str | Path,
    grid: dict[str, list[float]],
    *,
    batch: int | None = None,
    samples: int | None = None,
    seed: int | None = None,
    duration: float | None = None,
    payload_link: str = "hand",
    payload_com: tuple[float, float, float] = (0.0, 0.0, 0.0),
    scene: str | Path = "",
    checks: dict[str, Any] | None = None,
    workers: int | None = None,
    ray: str = "",
) -> dict[str, Any]:
    """A big what-if sweep outside a suite: the product of ``grid``'s lists as variants of ``scenario`` (a name
    or file), split into batches of ``batch`` variants over ``workers`` processes or Ray actors (as a suite's
    ``[[sweep]]``, docs/batch.md), merged in sweep order.

    Args:
        grid: ``{key: [values]}`` of `GRID_KEYS` (speed_scale, payload_kg (kg), latency (s), kp/kd/damping/friction
            scales).
        batch: variants per task (default 250). samples, seed, duration (s): override the scenario's.
        scene: a USD file of obstacles: adds the collision and clearance verdicts.
        checks: as a suite group's (e.g. ``{"max_fail_fraction": 0.5}``).

    Returns:
        The job's result (`run_job`): ``status``, ``checks``, ``metrics`` with ``verdict``, ``counts``,
        ``variants`` (per variant: name, status, p_violation, closest approach) and ``verdicts_sha256`` (the
        digest of every variant's full verdict: equal for any split and executor).

    Raises:
        SuiteError: a bad grid or parameter. BatchExecutorError: Ray asked for and not available.
    """
    from ._executors import run_jobs
    from ._suite import _checks, _expand_sweep
    from ._sweep import DEFAULT_BATCH

    group: dict[str, Any] = {
        "scenario": str(scenario),
        "grid": grid,
        "batch": batch or DEFAULT_BATCH,
        "payload_link": payload_link,
        "payload_com": list(payload_com),
        "checks": dict(checks or {}),
    }
    for key, value in (("samples", samples), ("seed", seed), ("duration", duration), ("scene", str(scene))):
        if value not in (None, ""):
            group[key] = value
    where = "run_sweep"
    (job,) = _expand_sweep(group, _checks(group, where), [""], Path.cwd(), where)
    params = job.params
    scenes = (params.get("scene", ""),)
    (result,) = run_jobs([{**job.to_dict(), "key": job.key}], workers=workers, ray=ray, scenes=scenes)
    return result


class _Progress:
    """A rich progress bar with ETA (stderr); silent when disabled."""

    def __init__(self, enabled: bool, name: str, total: int, done: int) -> None:
        self.enabled, self.name, self.total, self.done = enabled, name, total, done
        self._progress = None
        self._task = None
        self._plain = False
        self._t0 = time.perf_counter()

    def __enter__(self) -> _Progress:
        if self.enabled:
            try:
                import rich  # noqa: F401 - optional (twin-ext[batch]); plain lines without it
            except ImportError:
                self._plain = True
                return self
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                TextColumn("{task.fields[last]}"),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.name, total=self.total, completed=self.done, last="")
        return self

    def started(self, workers: int, where: str) -> None:
        line = f"{self.name}: {workers} worker(s) on {where}; {self.done} jobs cached"
        if self._progress is not None:
            self._progress.console.print(line)
        elif self._plain:
            print(line, file=sys.stderr)

    def batch(self, name: str, done: int, total: int) -> None:
        """A batch of sweep ``name`` came back (``done`` of ``total``)."""
        if self._progress is not None:
            self._progress.update(self._task, last=f"{name[:32]}: batch {done}/{total}")
        elif self._plain:
            print(f"  {name}: batch {done}/{total}", file=sys.stderr)

    def advance(self, result: dict[str, Any]) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress.update(self._task, advance=1, last=f"{result['status']} {result['name'][:40]}")
        elif self._plain:
            print(f"[{self.done}/{self.total}] {result['status']} {result['name']}", file=sys.stderr)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
