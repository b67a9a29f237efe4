# SPDX-License-Identifier: Apache-2.0
"""Launching the rollout kernel on a range of worlds: the same code runs in a worker process or in-process.

A request is a set of named NumPy arrays (`REQUEST_ARRAYS`) — in shared memory when it runs in the
worker pool — plus scalar options. `Executor.run` wraps the slice of worlds it owns as zero-copy Warp
arrays, launches the kernel once per chunk of ``chunk_steps`` steps (the time loop stays inside the
kernel), and reports progress between chunks. Which arrays exist, their Warp types, which are per world and
the launch's argument list all come from the kernel's argument declaration (`kernel_args`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from . import _kernel_args as kernel_args
from . import _kernels as kernels
from ._lanes import worlds_per_thread

__all__ = ["MODEL_ARRAYS", "REQUEST_ARRAYS", "WORLD_ARRAYS", "Executor", "RunOptions"]

_ARGS = kernel_args.BY_NAME

MODEL_ARRAYS = kernel_args.names(kernel_args.MODEL)
"""Per-robot arrays, sent once to each worker."""

REQUEST_ARRAYS = kernel_args.names(kernel_args.SETS, kernel_args.WORLDS, kernel_args.STREAMS, kernel_args.OUTPUTS)
"""Per-request arrays in kernel argument order."""

WORLD_ARRAYS = frozenset(name for name in REQUEST_ARRAYS if _ARGS[name].axes[0] == "world")
"""Arrays whose first axis is the world (sliced per worker)."""

_WRITTEN = tuple(name for name in REQUEST_ARRAYS if _ARGS[name].io != kernel_args.IN)
"""Request arrays the kernel writes (copied back when launches do not work in place)."""

_SCRATCH = kernel_args.names(kernel_args.SCRATCH)


@dataclass(frozen=True)
class RunOptions:
    """Scalar options of one request (see `kernels`)."""

    precision: str
    mode: int
    dt: float
    steps: int
    record_every: int
    use_target_qd: bool
    friction_eps: float
    limit_omega: float
    limit_active: bool
    implicit_saturated: bool
    chunk_steps: int
    eff_min_steps: int = 1
    specialized: bool = True
    simd_worlds: int = 1  # worlds per thread of the specialised float64 CPU kernel (`lanes`); 1: scalar


def scratch_bytes_per_world(nb: int, precision: str) -> int:
    """Bytes of kernel scratch one world needs."""
    size = 8 if precision == "float64" else 4
    extent = {"slot": nb + 1, "dof": nb}
    total = 0
    for name in _SCRATCH:
        arg = _ARGS[name]
        total += kernel_args.COMPONENTS[arg.kind] * int(np.prod([extent[axis] for axis in arg.axes[1:]]))
    return size * total


class Executor:
    """Runs requests for any number of robots on one device; keeps kernels, models and scratch warm."""

    def __init__(self, device: str = "cpu", *, copy_io: bool | None = None) -> None:
        self.device = device
        # CPU launches read and write the NumPy (shared) memory in place; other devices get copies in and out
        self.copy_io = (not str(device).startswith("cpu")) if copy_io is None else bool(copy_io)
        self._models: dict[tuple[str, str], dict[str, object]] = {}
        self._shapes: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}
        self._scratch: dict[tuple[str, int], tuple[int, dict[str, object]]] = {}

    def _is_cpu(self) -> bool:
        return str(self.device).startswith("cpu")

    def warm_up(self, precision: str) -> float:
        """Load (or compile) the kernel for ``precision`` and run it once; returns seconds taken."""
        t0 = time.perf_counter()
        wp = kernels.init_warp()
        kernels.get_kernels(precision)
        key = "__warmup__"
        model = _tiny_model()
        self.set_model(key, precision, model)
        arrays = _tiny_request(precision)
        options = RunOptions(
            precision, kernels.MODE_ROLLOUT, 1e-3, 2, 1, False, 0.01, 50.0, True, True, 2, specialized=False
        )
        self.run(key, arrays, options, 0, 1)
        wp.synchronize_device(self.device)
        return time.perf_counter() - t0

    def has_model(self, key: str, precision: str) -> bool:
        return (key, precision) in self._models

    def set_model(self, key: str, precision: str, arrays: Mapping[str, np.ndarray]) -> None:
        """Upload the per-robot arrays ``arrays`` (`MODEL_ARRAYS`, float64/int32) under ``key``."""
        wp = kernels.init_warp()
        _require(arrays, MODEL_ARRAYS, "model")
        types, npdt = kernel_args.dtypes(precision), _numpy_scalar(precision)
        out: dict[str, object] = {}
        for name in MODEL_ARRAYS:
            arg, a = _ARGS[name], arrays[name]
            dtype = types[arg.kind]
            if arg.ndim == 0:  # a value (gravity)
                out[name] = dtype(*[float(x) for x in np.ravel(a)]) if arg.kind in _COMPOSITE else dtype(a)
            else:
                host = np.ascontiguousarray(a, dtype=np.int32 if arg.kind == kernel_args.INT32 else npdt)
                out[name] = wp.array(host, dtype=dtype, device=self.device)
        self._models[(key, precision)] = out
        self._shapes[key] = (tuple(int(x) for x in arrays["parent"]), tuple(int(x) for x in arrays["joint_type"]))

    def kernel_for(self, key: str, options: RunOptions):
        """The kernel a request runs on: specialised to the robot's shape for rollouts, else the generic one."""
        if options.mode == kernels.MODE_ROLLOUT and options.specialized:
            from ._specialized import get_specialized_kernel

            parent, joint_type = self._shapes[key]
            if options.simd_worlds > 1 and options.precision == "float64" and self._is_cpu():
                from ._lanes import get_lanes_kernel

                return get_lanes_kernel(parent, joint_type, options.simd_worlds)
            return get_specialized_kernel(parent, joint_type, options.precision)
        return kernels.get_kernels(options.precision)

    def prepare(self, key: str, precision: str, specialized: bool, simd_worlds: int = 1) -> float:
        """Load (compile on a cold cache) the kernels ``key``'s rollouts need; returns seconds taken."""
        t0 = time.perf_counter()
        options = RunOptions(
            precision, kernels.MODE_ROLLOUT, 1e-3, 1, 0, False, 0.01, 50.0, True, False, 1, 1, specialized,
            simd_worlds,
        )  # fmt: skip
        self.kernel_for(key, options)
        if specialized:
            # a one-world, one-step launch loads the compiled module now rather than on the first request
            nb = len(self._shapes[key][0])
            self.run(key, _probe_request(precision, nb), options, 0, 1)
        return time.perf_counter() - t0

    def run(
        self,
        key: str,
        arrays: Mapping[str, np.ndarray],
        options: RunOptions,
        w0: int,
        w1: int,
        *,
        progress: Callable[[int], None] | None = None,
        cancelled: Callable[[], bool] | None = None,
    ) -> bool:
        """Run worlds ``[w0, w1)`` of a request in place (outputs are written into ``arrays``).

        Args:
            key: model key given to `set_model`.
            arrays: every name in `REQUEST_ARRAYS`, NumPy, C-contiguous, in the precision's dtype
                (int32 for indices and step counts).
            progress: called with the number of steps done after each chunk.
            cancelled: polled between chunks; True stops early.

        Returns:
            False when cancelled before the end.
        """
        if w1 <= w0:
            return True
        wp = kernels.init_warp()
        kernel = self.kernel_for(key, options)
        model = self._models[(key, options.precision)]
        _require(arrays, REQUEST_ARRAYS, "request")
        types, npdt = kernel_args.dtypes(options.precision), _numpy_scalar(options.precision)
        scalar = types[kernel_args.SCALAR]
        n = w1 - w0
        nb = int(arrays["q"].shape[1])

        nworld = int(arrays["q"].shape[0])

        def host(name: str) -> np.ndarray:
            a = arrays[name]
            if name in WORLD_ARRAYS and a.shape[0] == nworld:
                a = a[w0:w1]  # dummies (unused outputs, shape [1, ...]) are passed whole
            return a

        def wrap(name: str):
            a, arg = host(name), _ARGS[name]
            expected = np.int32 if arg.kind == kernel_args.INT32 else npdt
            if a.dtype != expected:
                raise kernel_args.KernelArgumentError(
                    f"request array {name} is {a.dtype}, the kernel takes {np.dtype(expected)} ({arg.kind})"
                )
            if self.copy_io:
                return wp.array(np.ascontiguousarray(a), dtype=types[arg.kind], device=self.device)
            return wp.array(a, dtype=types[arg.kind], copy=False, device=self.device)

        req = {name: wrap(name) for name in REQUEST_ARRAYS}
        record_every = options.record_every if arrays["out_q"].shape[1] > 0 else 0
        fixed = {**model, **req, **self._get_scratch(wp, options.precision, n, nb)}
        lanes = worlds_per_thread(kernel)  # worlds one thread advances (SIMD kernels: several)
        done = 0
        chunk = max(1, options.chunk_steps) if options.mode == kernels.MODE_ROLLOUT else 1
        while done < options.steps:
            end = min(options.steps, done + chunk)
            launch_options = {
                "use_target_qd": int(options.use_target_qd),
                "mode": int(options.mode),
                "dt": scalar(options.dt),
                "step_begin": done,
                "step_end": end,
                "record_every": record_every,
                "friction_eps": scalar(options.friction_eps),
                "limit_omega": scalar(options.limit_omega),
                "limit_active": int(options.limit_active),
                "drive_implicit_saturated": int(options.implicit_saturated),
                "eff_min_steps": max(1, int(options.eff_min_steps)),
            }
            inputs = kernel_args.launch_inputs({**fixed, **launch_options})
            wp.launch(kernel, dim=-(-n // lanes), inputs=inputs, device=self.device)
            wp.synchronize_device(self.device)
            done = end
            if progress is not None:
                progress(done)
            if done < options.steps and cancelled is not None and cancelled():
                self._copy_back(req, host)
                return False
        self._copy_back(req, host)
        return True

    def _copy_back(self, req: Mapping[str, object], host: Callable[[str], np.ndarray]) -> None:
        """Device results back into the request's NumPy arrays (only when launches did not work in place)."""
        if not self.copy_io:
            return
        for name in _WRITTEN:
            target = host(name)
            if target.size:
                target[...] = req[name].numpy().reshape(target.shape)

    def _get_scratch(self, wp, precision: str, n: int, nb: int) -> dict[str, object]:
        """The generic kernel's scratch arrays (`kernel_args.SCRATCH`) for ``n`` worlds, grown as needed."""
        cap, arrs = self._scratch.get((precision, nb), (0, {}))
        if cap < n:
            types = kernel_args.dtypes(precision)
            cap = max(n, 2 * cap)
            extent = {"world": cap, "slot": nb + 1, "dof": nb}
            arrs = {
                name: wp.zeros(tuple(extent[axis] for axis in arg.axes), dtype=types[arg.kind], device=self.device)
                for name in _SCRATCH
                for arg in (_ARGS[name],)
            }
            self._scratch[(precision, nb)] = (cap, arrs)
        return {name: a[:n] for name, a in arrs.items()}


_COMPOSITE = (kernel_args.VEC3, kernel_args.MAT33)


def _numpy_scalar(precision: str):
    return np.float64 if precision == "float64" else np.float32


def _require(arrays: Mapping[str, object], names: tuple[str, ...], what: str) -> None:
    missing = [name for name in names if name not in arrays]
    if missing:
        raise kernel_args.KernelArgumentError(
            f"{what} arrays {missing} are missing (the kernel's arguments: twin_ext.whatif._kernel_args.ROLLOUT_ARGS)"
        )


def _tiny_model() -> dict[str, np.ndarray]:
    """A one-dof pendulum for warm-up launches."""
    return {
        "parent": np.array([-1], dtype=np.int32),
        "parent_slot": np.array([1], dtype=np.int32),
        "joint_type": np.array([1], dtype=np.int32),
        "parent_rot": np.eye(3)[None],
        "parent_pos": np.zeros((1, 3)),
        "gravity": np.array([0.0, 0.0, -9.81]),
        "lower": np.array([-1.0]),
        "upper": np.array([1.0]),
        "vel_limit": np.array([1e30]),
        "effort_limit": np.array([1e30]),
        "armature": np.array([0.1]),
        "pos_tol": np.array([0.0]),
        "vel_tol": np.array([0.0]),
    }


def _probe_request(precision: str, nb: int) -> dict[str, np.ndarray]:
    """A one-world request of ``nb`` dofs (rest state, zero gains) used to load a kernel."""
    f = np.float64 if precision == "float64" else np.float32
    arrays = _tiny_request(precision)
    for name, arr in list(arrays.items()):
        shape = [nb if axis == "dof" else size for axis, size in zip(_ARGS[name].axes, arr.shape, strict=False)]
        shape += list(arr.shape[len(shape) :])  # the (3,) / (3, 3) of vec3 / mat33 elements
        if shape != list(arr.shape):
            fill = arr.flat[0] if arr.size else 0
            arrays[name] = np.full(shape, fill, dtype=arr.dtype)
    arrays["set_kp"][:] = 0
    arrays["set_kd"][:] = 0
    arrays["set_mass"][:] = 1
    arrays["set_inertia"] = np.tile(np.eye(3, dtype=f) * 0.01, (1, nb, 1, 1))
    return arrays


def _tiny_request(precision: str) -> dict[str, np.ndarray]:
    f = np.float64 if precision == "float64" else np.float32
    i = np.int32
    arrays = {
        "set_mass": np.ones((1, 1), f),
        "set_moment": np.array([[[0.1, 0.0, 0.0]]], f),
        "set_inertia": np.eye(3, dtype=f)[None, None] * 0.02,
        "set_kp": np.ones((1, 1), f),
        "set_kd": np.ones((1, 1), f),
        "set_damping": np.zeros((1, 1), f),
        "set_friction": np.ones((1, 1), f),
        "set_latency": np.zeros(1, i),
        "set_gravcomp": np.ones(1, i),
        "set_gc_mass": np.ones((1, 1), f),
        "set_gc_moment": np.array([[[0.1, 0.0, 0.0]]], f),
        "set_wrench_body": np.zeros(1, i),
        "set_wrench_point": np.zeros((1, 3), f),
        "set_wrench_force": np.ones((1, 3), f),
        "set_wrench_torque": np.zeros((1, 3), f),
        "set_wrench_begin": np.zeros(1, i),
        "set_wrench_end": np.ones(1, i),
        "world_set": np.zeros(1, i),
        "world_stream": np.zeros(1, i),
        "q": np.zeros((1, 1), f),
        "qd": np.zeros((1, 1), f),
        "target_q": np.zeros((1, 2, 1), f),
        "target_qd": np.zeros((1, 2, 1), f),
        "out_q": np.zeros((1, 2, 1), f),
        "out_qd": np.zeros((1, 2, 1), f),
        "out_tau": np.zeros((1, 2, 1), f),
        "first_pos": np.full((1, 1), -1, i),
        "first_vel": np.full((1, 1), -1, i),
        "first_eff": np.full((1, 1), -1, i),
        "max_track": np.zeros((1, 1), f),
        "min_pos_margin": np.full((1, 1), np.inf, f),
        "min_vel_margin": np.full((1, 1), np.inf, f),
        "min_eff_margin": np.full((1, 1), np.inf, f),
        "diverged": np.full(1, -1, i),
        "eval_qdd": np.zeros((1, 1), f),
        "eval_bias": np.zeros((1, 1), f),
        "eval_mass": np.zeros((1, 1, 1), f),
    }
    return arrays
