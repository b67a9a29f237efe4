# SPDX-License-Identifier: Apache-2.0
"""`WorkerPool`: persistent rollout worker processes that keep Warp kernels warm.

A Warp CPU launch runs on one core and holds the GIL, so a batch is split by worlds over worker
processes (one per core by default). Each worker is ``python -m twin_ext.whatif.worker`` started with
two pipes; requests travel as small pickled messages, the arrays in a shared `Arena` the workers write
into. Workers load (or compile) their kernels as soon as they start (`start` returns at once;
`wait_ready` reports the start-up times), and exit by themselves if the parent goes away (their pipe
closes).

One pool per (interpreter, worker count) is shared by every engine of the process (`shared_pool`); it is
closed at interpreter exit or by `shutdown_workers`.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path

import numpy as np

from .._paths import package_import_root
from ._compute import RunOptions
from ._errors import WorkerError
from ._kernels import cache_dir
from ._shared import Arena, remove_stale_arenas
from ._worker import NICE_ENV

__all__ = ["StartupReport", "WorkerPool", "shared_pool", "shutdown_workers"]

_CONTROL_SLOTS = 64


@dataclass(frozen=True)
class StartupReport:
    """How long the pool took to become ready.

    Attributes:
        seconds: wall time from `WorkerPool.start` until every worker had its kernels loaded, s.
        worker_seconds: ``[nworker]`` each worker's own import + kernel load/compile time, s.
        workers: number of worker processes.
    """

    seconds: float
    worker_seconds: tuple[float, ...]
    workers: int


def default_python() -> str:
    """The interpreter for workers: ``sys.executable``, or -- when that is not a Python (embedded in an
    application such as Kit) -- the ``python3`` of this interpreter's prefix."""
    exe = Path(sys.executable)
    if exe.name.lower().startswith("python"):
        return str(exe)
    for candidate in (
        Path(sys.prefix) / "bin" / "python3",
        Path(sys.prefix) / "python3",
        Path(sys.prefix) / "python.exe",
    ):
        if candidate.is_file():
            return str(candidate)
    raise WorkerError(
        f"cannot find a Python interpreter for the what-if workers (sys.executable is {exe}); fix: set [whatif] "
        "worker_python to the application's python3, or use_process_pool = false"
    )


class _Worker:
    def __init__(self, index: int, python: str, log_path: Path, nice: int = 0) -> None:
        self.index = index
        self.log_path = log_path
        r_in, w_in = os.pipe()
        r_out, w_out = os.pipe()
        env = dict(os.environ)
        env[NICE_ENV] = str(int(nice))  # the worker lowers its own priority (`_worker.main`)
        # the worker sees what this process sees: twin_ext itself and every import path (inside Kit, warp and
        # numpy come from extension folders that are on sys.path but not in any site-packages)
        package_parent = str(package_import_root())
        paths = [package_parent] + [p for p in sys.path if p and os.path.isdir(p)]
        paths += [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
        log_path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if log_path.stat().st_size > 1 << 20:  # keep one previous log, never an ever-growing one
                os.replace(log_path, log_path.with_suffix(".log.1"))
        except OSError:
            pass
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [python, "-m", "twin_ext.whatif._worker", str(r_in), str(w_out)],
                pass_fds=(r_in, w_out),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
                close_fds=True,
            )
        os.close(r_in)
        os.close(w_out)
        self.send_conn = Connection(w_in, readable=False)
        self.recv_conn = Connection(r_out, writable=False)
        self.ready = False
        self.startup_seconds = float("nan")
        self.models: set[tuple[str, str]] = set()
        self.clearance: set[str] = set()
        self.arenas: set[str] = set()

    def send(self, msg) -> None:
        try:
            self.send_conn.send(msg)
        except (BrokenPipeError, OSError) as exc:
            raise WorkerError(self.death_note(f"cannot reach what-if worker {self.index}: {exc}")) from None

    def death_note(self, head: str) -> str:
        code = self.proc.poll()
        tail = ""
        try:
            tail = self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            pass
        status = f"exit code {code}" if code is not None else "still running"
        return f"{head} ({status}); its log {self.log_path} ends with:\n{tail}"

    def close(self, timeout: float = 2.0) -> None:
        try:
            self.send_conn.send(("close",))
        except (BrokenPipeError, OSError):
            pass
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=timeout)
        self.send_conn.close()
        self.recv_conn.close()


class WorkerPool:
    """``nworkers`` rollout processes; thread-safe (one request at a time).

    Args:
        nworkers: processes to start (>= 1).
        python: interpreter for the workers ("" = ``sys.executable``).
        precisions: kernels to load at start-up (``"float64"``, ``"float32"``).
    """

    def __init__(
        self, nworkers: int, *, python: str = "", precisions: tuple[str, ...] = ("float64",), nice: int = 0
    ) -> None:
        if nworkers < 1:
            raise ValueError(f"nworkers must be >= 1, got {nworkers}")
        self.nworkers = int(nworkers)
        self.nice = int(nice)
        self.python = python or default_python()
        self.precisions = tuple(precisions)
        self._lock = threading.RLock()
        self._workers: list[_Worker] = []
        self._t_start = 0.0
        self._ready_at = 0.0
        self._arena: Arena | None = None
        self._control: Arena | None = None
        self._recordings: list[tuple[Arena, list]] = []  # (arena, weak references to the caller's arrays)
        self._closed = False

    # ---- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Spawn the workers and ask them to load their kernels; returns at once."""
        with self._lock:
            if self._workers:
                return
            if self._closed:
                raise WorkerError("this worker pool was shut down; create a new engine")
            self._t_start = time.perf_counter()
            remove_stale_arenas()
            logs = cache_dir().parent / "logs"
            for i in range(self.nworkers):
                worker = _Worker(i, self.python, logs / f"whatif-worker-{i}.log", self.nice)
                worker.send(("warm", self.precisions))
                self._workers.append(worker)
            if self._control is None:
                self._control = Arena.create(8 * (1 + _CONTROL_SLOTS))

    def wait_ready(self, timeout: float = 300.0) -> StartupReport:
        """Block until every worker has loaded its kernels; raises `WorkerError` on failure or timeout."""
        with self._lock:
            self.start()
            deadline = time.monotonic() + timeout
            for worker in self._workers:
                if worker.ready:
                    continue
                reply = self._receive(worker, deadline, "start")
                if reply[0] != "ready":
                    raise WorkerError(f"what-if worker {worker.index} failed to start: {reply[1]}")
                worker.ready = True
                worker.startup_seconds = float(reply[1]["seconds"])
                self._ready_at = max(self._ready_at, time.perf_counter())
            return StartupReport(
                seconds=self._ready_at - self._t_start,
                worker_seconds=tuple(w.startup_seconds for w in self._workers),
                workers=len(self._workers),
            )

    def close(self) -> None:
        """Stop the workers and free the shared memory (idempotent)."""
        with self._lock:
            self._closed = True
            for worker in self._workers:
                worker.close()
            self._workers = []
            for arena in (self._arena, self._control):
                if arena is not None:
                    arena.close()
            for arena, _ in self._recordings:
                arena.unlink()  # callers may still hold results in it: the memory goes with their last array
            self._arena = self._control = None
            self._recordings = []

    @property
    def closed(self) -> bool:
        """True after `close` (a closed pool refuses requests; `shared_pool` hands out a new one)."""
        return self._closed

    @property
    def alive(self) -> bool:
        return bool(self._workers) and all(w.proc.poll() is None for w in self._workers)

    def cpu_seconds(self) -> float:
        """CPU time (user + system) the live workers have used so far, s; NaN where ``/proc`` is missing. For
        benchmarks: the difference over a request is its cost in core-seconds, whatever else loads the machine."""
        total = 0.0
        try:
            tick = os.sysconf("SC_CLK_TCK")
            for worker in self._workers:
                fields = Path(f"/proc/{worker.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, ValueError, AttributeError, IndexError):
            return float("nan")
        return total

    def prepare(
        self,
        key: str,
        model_arrays: Mapping[str, np.ndarray],
        precision: str,
        specialized: bool,
        timeout: float = 600.0,
        simd_worlds: int = 1,
    ) -> float:
        """Give every worker the robot ``key`` and load its rollout kernel; returns wall seconds.

        The first worker loads (on a cold cache: compiles) alone, the others then load from the cache, so a
        kernel is never compiled twice at the same time.
        """
        with self._lock:
            t0 = time.perf_counter()
            self.wait_ready(timeout)
            deadline = time.monotonic() + timeout
            for group in (self._workers[:1], self._workers[1:]):
                for worker in group:
                    self._ensure_model(worker, key, precision, model_arrays)
                    worker.send(("prepare", key, precision, bool(specialized), int(simd_worlds)))
                for worker in group:
                    reply = self._receive(worker, deadline, "kernel preparation")
                    if reply[0] != "prepared":
                        raise WorkerError(f"what-if worker {worker.index} could not load the kernels: {reply[1]}")
            return time.perf_counter() - t0

    def prepare_clearance(self, key: str, spec: Mapping, timeout: float = 600.0) -> float:
        """Give every worker the scene clearance model ``key`` (a `ClearanceChecker.spec`) and load its kernel, so
        that requests can check clearance in the workers (`run`'s ``clearance``); returns wall seconds."""
        with self._lock:
            t0 = time.perf_counter()
            self.wait_ready(timeout)
            deadline = time.monotonic() + timeout
            for group in (self._workers[:1], self._workers[1:]):  # as `prepare`: never compile twice at once
                waiting = [w for w in group if key not in w.clearance]
                for worker in waiting:
                    worker.send(("clearance", key, dict(spec), True))
                for worker in waiting:
                    reply = self._receive(worker, deadline, "clearance kernel preparation")
                    if reply[0] != "prepared":
                        raise WorkerError(
                            f"what-if worker {worker.index} could not load the clearance kernel: {reply[1]}"
                        )
                    worker.clearance.add(key)
            return time.perf_counter() - t0

    def _ensure_model(self, worker: _Worker, key: str, precision: str, model_arrays: Mapping[str, np.ndarray]) -> None:
        if (key, precision) not in worker.models:
            worker.send(("model", key, precision, dict(model_arrays)))
            worker.models.add((key, precision))

    # ---- requests -------------------------------------------------------------------------------------
    def recording_arena(self, nbytes: int) -> Arena:
        """An arena for a request's recorded outputs, handed to the caller without a copy.

        One whose arrays the caller has dropped is reused (its pages are already allocated and mapped in the
        workers); otherwise a new one is made. At most one unused arena is kept.
        """
        with self._lock:
            free = [entry for entry in self._recordings if not any(ref() is not None for ref in entry[1])]
            choice = next((entry for entry in sorted(free, key=lambda e: e[0].size) if entry[0].size >= nbytes), None)
            for entry in free:
                if entry is not choice and (choice is not None or len(free) > 1):
                    self._retire(entry)
            if choice is not None:
                self._recordings.remove(choice)
                return choice[0]
            return Arena.create(max(nbytes, 1 << 16))

    def track_recording(self, arena: Arena, arrays: list[np.ndarray]) -> None:
        """Remember ``arena`` until its ``arrays`` (the caller's results) are garbage, then reuse it."""
        with self._lock:
            self._recordings.append((arena, [weakref.ref(a) for a in arrays]))

    def _retire(self, entry) -> None:
        arena = entry[0]
        self._recordings.remove(entry)
        for worker in self._workers:
            if arena.path in worker.arenas:
                try:
                    worker.send(("forget", arena.path))
                except WorkerError:
                    pass
                worker.arenas.discard(arena.path)
        arena.close()

    def arena(self, nbytes: int) -> Arena:
        """A shared arena of at least ``nbytes`` (reused between requests; grown when too small)."""
        with self._lock:
            if self._arena is None or self._arena.size < nbytes:
                if self._arena is not None:
                    old = self._arena.path
                    for worker in self._workers:
                        if old in worker.arenas:
                            worker.send(("forget", old))
                            worker.arenas.discard(old)
                    self._arena.close()
                self._arena = Arena.create(max(nbytes, 1 << 20))
            return self._arena

    def run(
        self,
        key: str,
        model_arrays: Mapping[str, np.ndarray],
        layout: Mapping[str, tuple[int, tuple[int, ...], str]],
        options: RunOptions,
        nworld: int,
        *,
        extra: tuple[str, Mapping[str, tuple[int, tuple[int, ...], str]]] | None = None,
        timeout: float,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
        clearance: Mapping | None = None,
        infos: list[dict] | None = None,
    ) -> bool:
        """Run a request laid out in `arena` over the workers.

        The worlds are cut into up to ``4 x nworkers`` contiguous chunks handed out as workers become free,
        so a worker slowed down by other load on the machine does not hold the whole request back.
        ``extra`` = ``(path, layout)`` of a second arena holding more of the request's arrays (the recorded
        outputs, which go to the caller without a copy).
        ``clearance`` = ``{"key", "spec", "parts"}``: each worker also checks the clearance of the chunks it rolled
        out (``clear_dist`` / ``clear_which`` in the arenas; ``parts``: `ClearanceChecker.part_arrays`).
        ``infos``: a list that receives each chunk's report (``seconds``, ``clearance_seconds``, ...).

        Returns:
            False if ``cancel`` was set before the end (results are then partial).
        """
        with self._lock:
            if self._workers and not self.alive:
                self._abandon()  # a worker died between requests (killed, out of memory): start afresh
            self.wait_ready(timeout)
            assert self._arena is not None and self._control is not None
            ctl = self._control.views({"ctl": (0, (1 + _CONTROL_SLOTS,), "<i8")})["ctl"]
            ctl[:] = 0
            nchunk = max(1, min(nworld, 4 * len(self._workers), _CONTROL_SLOTS))
            bounds = np.linspace(0, nworld, nchunk + 1).round().astype(int)
            queue = list(range(nchunk))
            option_fields = {f: getattr(options, f) for f in options.__dataclass_fields__}
            job = {
                "key": key,
                "arena": self._arena.path,
                "layout": dict(layout),
                "options": option_fields,
                "control": self._control.path,
                "control_size": 1 + _CONTROL_SLOTS,
                "extra": {"path": extra[0], "layout": dict(extra[1])} if extra else None,
                "clearance": {"key": clearance["key"], "parts": clearance["parts"]} if clearance else None,
            }

            def dispatch(worker: _Worker) -> None:
                chunk = queue.pop(0)
                worker.send(("run", {**job, "w0": int(bounds[chunk]), "w1": int(bounds[chunk + 1]), "slot": chunk}))

            pending: dict[Connection, _Worker] = {}
            for worker in self._workers[:nchunk]:
                self._ensure_model(worker, key, options.precision, model_arrays)
                if clearance and clearance["key"] not in worker.clearance:  # e.g. fresh workers after a restart
                    worker.send(("clearance", clearance["key"], dict(clearance["spec"]), False))
                    worker.clearance.add(clearance["key"])
                worker.arenas.add(self._arena.path)
                if extra:
                    worker.arenas.add(extra[0])
                dispatch(worker)
                pending[worker.recv_conn] = worker
            deadline = time.monotonic() + timeout
            completed = True
            errors: list[str] = []
            while pending:
                if cancel is not None and cancel.is_set():
                    ctl[0] = 1
                    queue.clear()
                    completed = False
                ready = wait(list(pending), timeout=0.05)
                if progress is not None and options.steps > 0:
                    done = sum(int(ctl[1 + c]) * int(bounds[c + 1] - bounds[c]) for c in range(nchunk))
                    progress(done / (options.steps * max(nworld, 1)))
                for conn in ready:
                    worker = pending.pop(conn)
                    try:
                        reply = conn.recv()
                    except (EOFError, OSError):
                        self._abandon()
                        raise WorkerError(
                            worker.death_note(f"what-if worker {worker.index} died during a request")
                        ) from None
                    if reply[0] == "error":
                        errors.append(f"worker {worker.index}: {reply[1]}")
                        queue.clear()
                    else:
                        if not reply[1].get("completed", True):
                            completed = False
                        if infos is not None:
                            infos.append(dict(reply[1]))
                    if queue:
                        dispatch(worker)
                        pending[conn] = worker
                if pending and time.monotonic() > deadline:
                    self._abandon()
                    raise WorkerError(
                        f"what-if request took longer than {timeout:g} s ([whatif] timeout_s); the workers were "
                        "restarted. Fix: fewer worlds or steps, or raise timeout_s"
                    )
                for worker in pending.values():
                    if worker.proc.poll() is not None:
                        self._abandon()
                        raise WorkerError(worker.death_note(f"what-if worker {worker.index} died during a request"))
            del ctl
            if errors:
                raise WorkerError("what-if workers failed:\n" + "\n".join(errors))
            return completed

    # ---- internals ----------------------------------------------------------------------------------
    def _receive(self, worker: _Worker, deadline: float, what: str):
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WorkerError(worker.death_note(f"what-if worker {worker.index} did not finish its {what} in time"))
            if worker.recv_conn.poll(min(remaining, 0.2)):
                try:
                    return worker.recv_conn.recv()
                except (EOFError, OSError):
                    raise WorkerError(
                        worker.death_note(f"what-if worker {worker.index} exited during {what}")
                    ) from None
            if worker.proc.poll() is not None:
                raise WorkerError(worker.death_note(f"what-if worker {worker.index} exited during {what}"))

    def _abandon(self) -> None:
        """Kill every worker after a failure (state unknown); the next request starts fresh ones."""
        self._ready_at = 0.0
        for worker in self._workers:
            if worker.proc.poll() is None:
                worker.proc.kill()
            worker.proc.wait(timeout=5.0)
            worker.send_conn.close()
            worker.recv_conn.close()
        self._workers = []


_pools: dict[tuple[str, int], WorkerPool] = {}
_pools_lock = threading.Lock()


def shared_pool(
    nworkers: int, *, python: str = "", precisions: tuple[str, ...] = ("float64",), nice: int = 0
) -> WorkerPool:
    """The process-wide pool for this interpreter, worker count and niceness (started on first use).

    ``precisions`` are the kernels loaded at start-up by a new pool; others load on first use.
    """
    key = (python or default_python(), int(nworkers), int(nice))
    with _pools_lock:
        pool = _pools.get(key)
        if pool is None or pool.closed:
            pool = WorkerPool(nworkers, python=python, precisions=precisions, nice=nice)
            _pools[key] = pool
    pool.start()
    return pool


def shutdown_workers() -> None:
    """Stop every shared worker pool of this process (also runs at interpreter exit)."""
    with _pools_lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool in pools:
        pool.close()


atexit.register(shutdown_workers)
