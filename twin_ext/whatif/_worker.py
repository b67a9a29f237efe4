# SPDX-License-Identifier: Apache-2.0
"""Rollout worker process: ``python -m twin_ext.whatif.worker <fd_in> <fd_out>``.

Started by `twin_ext.whatif.pool.WorkerPool`. It keeps Warp, the kernels, robot models and scratch warm
for its lifetime and serves messages from the parent in order:

* ``("warm", precisions)`` -> ``("ready", info)``: initialise Warp and load (or compile) the generic kernel
  of each precision listed;
* ``("model", key, precision, arrays)``: keep a robot's arrays (no reply);
* ``("prepare", key, precision, specialized, simd_worlds)`` -> ``("prepared", info)``: load or compile that
  robot's rollout kernel (the specialised one is compiled once per tree shape and worlds per thread);
* ``("clearance", key, spec, reply)``: keep a scene clearance model (`ClearanceKernel` of a
  `ClearanceChecker.spec`) and load its kernel; replies ``("prepared", info)`` when ``reply``;
* ``("run", job)`` -> ``("done", info)`` | ``("error", text)``: run a world range of a request whose
  arrays live in shared memory (``job["arena"]``), writing results in place; with ``job["clearance"]``
  then the clearance of that range's recorded states (``out_q``, variants ``world_set``) into ``clear_dist`` /
  ``clear_which`` (``info["clearance_seconds"]``);
* ``("close",)``: exit.

Progress (steps done) and the cancel flag live in a small shared control block (``job["control"]``).
"""

from __future__ import annotations

import os
import sys
import time
import traceback

NICE_ENV = "TWIN_EXT_WORKER_NICE"
"""Environment variable through which `WorkerPool` passes ``[whatif] worker_nice`` to its workers."""


def _serve(conn_in, conn_out) -> None:
    from ._compute import Executor, RunOptions
    from ._shared import attach_arena

    executor = Executor("cpu")
    arenas: dict[str, object] = {}
    clearance_models: dict[str, object] = {}

    def attach(path: str):
        arena = arenas.get(path)
        if arena is None:
            arena = attach_arena(path)
            arenas[path] = arena
        return arena

    while True:
        try:
            msg = conn_in.recv()
        except EOFError:
            return
        kind = msg[0]
        try:
            if kind == "close":
                return
            if kind == "warm":
                t0 = time.perf_counter()
                from ._kernels import init_warp

                init_warp()  # import + initialise Warp now, in parallel with the parent's work
                seconds = {p: executor.warm_up(p) for p in msg[1]}
                conn_out.send(("ready", {"pid": os.getpid(), "seconds": time.perf_counter() - t0, "kernels": seconds}))
            elif kind == "model":
                _, key, precision, arrays = msg
                executor.set_model(key, precision, arrays)
            elif kind == "clearance":
                _, key, spec, reply = msg
                t0 = time.perf_counter()
                if clearance_models.get(key) is None or isinstance(clearance_models[key], str):  # none, or failed
                    try:
                        clearance_models[key] = _clearance_model(spec)
                    except Exception:
                        if reply:
                            raise
                        # no one waits for this message: the failure is the reply to the request that needs it
                        clearance_models[key] = traceback.format_exc()
                if reply:
                    conn_out.send(("prepared", {"seconds": time.perf_counter() - t0}))
            elif kind == "prepare":
                _, key, precision, specialized, simd_worlds = msg
                seconds = executor.prepare(key, precision, specialized, simd_worlds)
                conn_out.send(("prepared", {"seconds": seconds}))
            elif kind == "forget":
                # the parent replaced an arena: release our mapping of the old one
                arena = arenas.pop(msg[1], None)
                if arena is not None:
                    arena.close()
            elif kind == "run":
                job = msg[1]
                arrays = attach(job["arena"]).views(job["layout"])
                if job.get("extra"):
                    # the request's recorded outputs (handed to the caller); kept mapped until the parent retires it
                    arrays.update(attach(job["extra"]["path"]).views(job["extra"]["layout"]))
                ctl = attach(job["control"]).views({"ctl": (0, (job["control_size"],), "int64")})["ctl"]
                slot = job["slot"]
                t0 = time.perf_counter()

                # Both closures run only inside executor.run below, in this iteration (B023 does not apply).
                def progress(done: int) -> None:
                    ctl[1 + slot] = done  # noqa: B023

                completed = executor.run(
                    job["key"],
                    arrays,
                    RunOptions(**job["options"]),
                    job["w0"],
                    job["w1"],
                    progress=progress,
                    cancelled=lambda: bool(ctl[0]),  # noqa: B023
                )
                info = {"seconds": time.perf_counter() - t0, "completed": completed}
                if job.get("clearance"):
                    t1 = time.perf_counter()
                    _check_clearance(clearance_models[job["clearance"]["key"]], job, arrays)
                    info["clearance_seconds"] = time.perf_counter() - t1
                del arrays, ctl  # drop views before the parent may replace the arena
                conn_out.send(("done", info))
            else:
                conn_out.send(("error", f"unknown message {kind!r}"))
        except Exception:  # report, keep serving: one bad request must not kill the warm worker
            conn_out.send(("error", traceback.format_exc()))


def _clearance_model(spec):
    """A `ClearanceKernel` of ``spec`` with its kernel loaded (one state: compiled on a cold cache)."""
    import numpy as np

    from ._clearance import ClearanceKernel

    model = ClearanceKernel(spec, "cpu")
    empty = (np.zeros(2, np.int32), np.zeros(0, np.int32), np.zeros((0, 3), np.float32), np.zeros(0, np.float32))
    n = model.nlink
    model.launch(
        np.zeros((1, model.ndof)),
        1,
        np.zeros(1, np.int32),
        empty,
        np.empty((1, n), np.float32),
        np.empty((1, n), np.int32),
    )
    return model


def _check_clearance(model, job, arrays) -> None:
    """Clearance of worlds ``[w0, w1)`` of a request: their recorded ``out_q`` into ``clear_dist`` / ``clear_which``."""
    if isinstance(model, str):
        raise RuntimeError(f"the clearance model could not be built in this worker:\n{model}")
    w0, w1 = job["w0"], job["w1"]
    q = arrays["out_q"][w0:w1]
    nworld, nrec, ndof = q.shape
    if nworld * nrec == 0:
        return
    dist = arrays["clear_dist"][w0:w1].reshape(nworld * nrec, -1)  # views: contiguous world ranges
    which = arrays["clear_which"][w0:w1].reshape(nworld * nrec, -1)
    model.launch(q.reshape(-1, ndof), nrec, arrays["world_set"][w0:w1], job["clearance"]["parts"], dist, which)


def _lower_priority(nice: str) -> None:
    """Add ``nice`` (a decimal string, 0-19) to this process's niceness: rollouts yield the cores to the twin."""
    try:
        step = int(nice)
    except ValueError:
        return
    if step > 0 and hasattr(os, "nice"):
        try:
            os.nice(step)
        except OSError:  # a sandbox that forbids it: run at the twin's priority
            pass


def main(argv: list[str] | None = None) -> int:
    from multiprocessing.connection import Connection

    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2:
        print("usage: python -m twin_ext.whatif.worker <fd_in> <fd_out> (started by WorkerPool)", file=sys.stderr)
        return 2
    _lower_priority(os.environ.get(NICE_ENV, "0"))
    conn_in = Connection(int(args[0]), writable=False)
    conn_out = Connection(int(args[1]), readable=False)
    try:
        _serve(conn_in, conn_out)
    finally:
        conn_out.close()
        conn_in.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
