# SPDX-License-Identifier: Apache-2.0
"""`WhatIfEngine`: batched forward rollouts of one robot on Warp, with in-kernel verdict statistics.

    >>> import numpy as np
    >>> from twin_ext.robot import default_robot_path, load_robot
    >>> from twin_ext.whatif import WhatIfEngine, WhatIfSettings
    >>> robot = load_robot(default_robot_path())
    >>> engine = WhatIfEngine(robot, settings=WhatIfSettings(use_process_pool=False))
    >>> q0 = np.tile(robot.drive_target, (4, 1))                 # [nworld, ndof] start poses, rad|m
    >>> targets = np.tile(robot.drive_target, (100, 1))          # [nstep, ndof] position targets
    >>> out = engine.rollout(q0, None, targets, dt=0.002, record_every=10)
    >>> out.q.shape                                              # [nworld, nrecord, ndof]
    (4, 10, 9)

Worlds are split over the worker pool (`twin_ext.whatif._pool`); with ``use_process_pool = false`` (or a
non-CPU device) they run in the calling thread. Every input is checked before anything is launched.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..robot import ArticulatedTree, JointType, RobotModel, tree_from_robot
from . import _kernels as kernels
from ._compute import MODEL_ARRAYS, Executor, RunOptions, scratch_bytes_per_world
from ._errors import WhatIfError, WorkerError
from ._settings import WhatIfSettings
from ._shared import plan_layout
from ._variants import Variant, parameter_sets

__all__ = ["WhatIfEngine", "Rollout", "Dynamics"]

_BIG = 1e30  # "no limit" inside the kernels (inf would poison margins with inf - inf)


@dataclass(frozen=True, eq=False)
class Dynamics:
    """Forward dynamics at given states (`WhatIfEngine.accelerations`).

    Attributes:
        qdd: ``[nworld, ndof]`` joint accelerations, rad/s² | m/s².
        mass_matrix: ``[nworld, ndof, ndof]`` joint-space inertia including armature, kg·m² | kg.
        bias: ``[nworld, ndof]`` Coriolis, centrifugal and gravity forces ``C(q, qd)``, N·m | N.
    """

    qdd: np.ndarray
    mass_matrix: np.ndarray
    bias: np.ndarray


@dataclass(frozen=True, eq=False)
class Rollout:
    """Result of `WhatIfEngine.rollout`.

    Times of first violations are seconds after the start (state at step ``k`` is at ``k * dt``); NaN means
    "never". Margins are positive inside the limits and negative beyond them.

    Attributes:
        dof_names: ``[ndof]`` joint names (the last axis of every array).
        dt: s. steps: integration steps. record_every: recording decimation.
        t: ``[nrecord]`` s, time of each recorded sample (``(r + 1) * record_every * dt``).
        q, qd: ``[nworld, nrecord, ndof]`` recorded positions (rad|m) and velocities (rad/s|m/s), in the
            engine's precision (float32 arrays with ``precision = "float32"``; everything else is float64).
        tau: ``[nworld, nrecord, ndof]`` drive effort applied during the step before each sample, N·m|N.
        q_final, qd_final: ``[nworld, ndof]`` state after the last step.
        first_position_violation: ``[nworld, ndof]`` s, first time beyond a position limit (+ tolerance).
        first_velocity_violation: ``[nworld, ndof]`` s, first time above the speed limit (+ tolerance).
        first_effort_saturation: ``[nworld, ndof]`` s, start of the first stretch of at least
            ``settings.effort_saturation_min_s`` during which the drive demanded more than its effort limit.
        max_tracking_error: ``[nworld, ndof]`` max ``|q - q_command|`` (command as sent, before latency), rad|m.
        min_position_margin: ``[nworld, ndof]`` min distance to the nearer position limit, rad|m.
        min_velocity_margin: ``[nworld, ndof]`` min ``limit - |qd|``, rad/s|m/s.
        min_effort_margin: ``[nworld, ndof]`` min ``limit - |demanded effort|``, N·m|N.
        diverged_at: ``[nworld]`` s, when the state stopped being finite (NaN: it did not).
        command_outside_limits: ``[ndof]`` bool, some command target lies outside the joint's limits by more than
            the position tolerance (allowed, flagged).
        compute_seconds: wall time of the launch(es), s.
        completed: False when cancelled before the end.
    """

    dof_names: tuple[str, ...]
    dt: float
    steps: int
    record_every: int
    t: np.ndarray
    q: np.ndarray
    qd: np.ndarray
    tau: np.ndarray
    q_final: np.ndarray
    qd_final: np.ndarray
    first_position_violation: np.ndarray
    first_velocity_violation: np.ndarray
    first_effort_saturation: np.ndarray
    max_tracking_error: np.ndarray
    min_position_margin: np.ndarray
    min_velocity_margin: np.ndarray
    min_effort_margin: np.ndarray
    diverged_at: np.ndarray
    command_outside_limits: np.ndarray
    compute_seconds: float
    completed: bool = True

    @property
    def nworld(self) -> int:
        return int(self.q_final.shape[0])

    @property
    def first_violation(self) -> np.ndarray:
        """``[nworld]`` s, earliest violation of any kind on any joint (NaN: none)."""
        stacked = np.stack(
            [self.first_position_violation, self.first_velocity_violation, self.first_effort_saturation], axis=0
        )
        with np.errstate(all="ignore"):
            out = np.nanmin(np.where(np.isnan(stacked), np.inf, stacked), axis=(0, 2))
        return np.where(np.isinf(out), np.nan, out)

    @property
    def violated(self) -> np.ndarray:
        """``[nworld]`` bool, any violation (or divergence) in the world."""
        return ~np.isnan(self.first_violation) | ~np.isnan(self.diverged_at)


def _robot_prefix(robot: RobotModel) -> str:
    """The robot's top-level prim path (e.g. ``/panda``): its prims are not obstacles when it shares a stage."""
    parts = [p for p in robot.root_path.split("/") if p]
    return "/" + parts[0] if parts else ""


def _column_extremes(flat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column min and max of a tall ``[n, c]`` array, reduced over wide rows (6x faster for c ~ 9)."""
    n, c = flat.shape
    k = max(1, 1024 // c)
    m = n // k * k
    wide = flat[:m].reshape(-1, k * c)
    low = wide.min(axis=0).reshape(k, c).min(axis=0) if m else np.full(c, np.inf)
    high = wide.max(axis=0).reshape(k, c).max(axis=0) if m else np.full(c, -np.inf)
    if m < n:
        low = np.minimum(low, flat[m:].min(axis=0))
        high = np.maximum(high, flat[m:].max(axis=0))
    return low, high


class WhatIfEngine:
    """Batched rollouts and what-if scenarios for one robot.

    Args:
        robot: the `RobotModel` (from `twin_ext.robot.load_robot`).
        device: Warp device, ``"cpu"`` (measured here) or ``"cuda"`` / ``"cuda:N"`` (same kernels; untested
            here: no GPU on the development machines).
        settings: `WhatIfSettings` (``[whatif]``); defaults when None.

    Creating an engine starts (or reuses) the worker pool, which loads the kernels in the background
    (``settings.warmup``); `wait_ready` blocks until it is done and reports the start-up time.
    """

    def __init__(
        self, robot: RobotModel, *, device: str = "cpu", settings: WhatIfSettings | None = None, scene=None
    ) -> None:
        self.robot = robot
        self.settings = settings or WhatIfSettings()
        self.device = str(device)
        # clearance: a `SceneColliders`, a USD path, or None for ``settings.scene`` ("" = no clearance check)
        self._scene_arg = scene if scene is not None else (self.settings.scene or None)
        self._clearance = None
        self._clearance_lock = threading.Lock()
        self.tree: ArticulatedTree = tree_from_robot(robot)
        self._check_model()
        self._model_arrays = self._make_model_arrays()
        digest = hashlib.sha1()
        for name in MODEL_ARRAYS:
            digest.update(np.ascontiguousarray(self._model_arrays[name]).tobytes())
        self.model_key = f"{robot.name}-{digest.hexdigest()[:16]}"
        self._lock = threading.Lock()
        self._executor: Executor | None = None
        self._pool = None
        self._t_created = time.perf_counter()
        self._startup: dict[str, float | int] | None = None
        self._ready = threading.Event()
        self._warm_error: BaseException | None = None
        self._warm_thread: threading.Thread | None = None
        nworkers = self.settings.worker_count() if self.device == "cpu" else 0
        if nworkers > 0:
            from ._pool import shared_pool

            self._pool = shared_pool(
                nworkers, python=self.settings.worker_python, precisions=(), nice=self.settings.worker_nice
            )
        else:
            self._executor = Executor(self.device)
        if self.settings.warmup:
            self._warm_thread = threading.Thread(target=self._prepare, name="twin_ext-whatif-warmup", daemon=True)
            self._warm_thread.start()

    # ---- lifecycle -------------------------------------------------------------------------------------
    def _prepare(self) -> None:
        """Load (on a cold cache: compile) this robot's rollout kernel in the workers or in-process."""
        s = self.settings
        try:
            t0 = time.perf_counter()
            if self._pool is not None:
                kernel_seconds = self._pool.prepare(
                    self.model_key, self._model_arrays, s.precision, s.specialize, timeout=max(s.timeout_s, 600.0),
                    simd_worlds=s.simd_worlds,
                )  # fmt: skip
                workers = self._pool.nworkers
            else:
                assert self._executor is not None
                if not self._executor.has_model(self.model_key, s.precision):
                    self._executor.set_model(self.model_key, s.precision, self._model_arrays)
                kernel_seconds = self._executor.prepare(self.model_key, s.precision, s.specialize, s.simd_worlds)
                workers = 0
            t_geom = time.perf_counter()
            if self.has_clearance:
                checker = self.clearance_checker()  # fit (or load the cached) sphere sets, build the Warp arrays
                if self._pool is not None:  # the workers check the states they roll out: load it there too
                    self._pool.prepare_clearance(checker.key, checker.spec, timeout=max(s.timeout_s, 600.0))
            self._startup = {
                "seconds": time.perf_counter() - self._t_created,
                "kernel_seconds": kernel_seconds,
                "clearance_seconds": time.perf_counter() - t_geom,
                "prepare_seconds": time.perf_counter() - t0,
                "workers": workers,
            }
        except BaseException as exc:  # reported by wait_ready and by the next request
            self._warm_error = exc
        finally:
            self._ready.set()

    def worker_cpu_seconds(self) -> float:
        """CPU time (user + system) this engine's worker processes have used so far, s (0.0 without a pool; NaN
        where ``/proc`` is missing). The difference over a request is its cost in core-seconds whatever else loads
        the machine (benchmarks)."""
        return 0.0 if self._pool is None else self._pool.cpu_seconds()

    def wait_ready(self, timeout: float | None = None) -> dict[str, float | int]:
        """Block until this robot's kernels are loaded (compiled on a cold cache) in every worker.

        Returns:
            ``{"seconds": s from engine creation to ready, "kernel_seconds": s spent loading/compiling kernels,
            "workers": worker processes (0 = in-process)}``.

        Raises:
            WorkerError: a worker could not start or load the kernels (its log is quoted).
        """
        if self._warm_thread is None:  # warm-up off: prepare now, in this thread
            self._warm_thread = threading.current_thread()
            self._prepare()
        timeout = max(self.settings.timeout_s, 600.0) if timeout is None else timeout
        if not self._ready.wait(timeout):
            raise WorkerError(f"the what-if kernels were not ready after {timeout:g} s")
        if self._warm_error is not None:
            raise self._warm_error
        assert self._startup is not None
        return dict(self._startup)

    def close(self) -> None:
        """Release this engine. The shared worker pool stays up for other engines (see `pool.shutdown_workers`)."""
        self._executor = None

    def __enter__(self) -> WhatIfEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- public API ---------------------------------------------------------------------------------------
    @property
    def ndof(self) -> int:
        return self.robot.ndof

    @property
    def has_clearance(self) -> bool:
        """Whether rollouts of `run` are checked for clearance (a scene was given or ``[whatif] scene`` is set)."""
        return self._scene_arg is not None

    def clearance_checker(self):
        """The `ClearanceChecker` of this engine's robot and scene (built on first use; None without a scene).

        Raises:
            WhatIfError: the scene file or the collision settings cannot be used (naming the setting and fix).
        """
        if self._scene_arg is None:
            return None
        with self._clearance_lock:
            if self._clearance is None:
                from .._paths import resolve_shipped
                from ..collision import CollisionGeometryError, SceneColliders, SceneError, load_scene, robot_spheres
                from ._clearance import ClearanceChecker

                s = self.settings
                try:
                    scene = self._scene_arg
                    if not isinstance(scene, SceneColliders):
                        path = resolve_shipped(str(scene), prefer_cwd=True)
                        scene = load_scene(path, root=s.scene_root, exclude=(_robot_prefix(self.robot),))
                    spheres = robot_spheres(
                        self.robot,
                        spheres_per_link=s.spheres_per_link,
                        allowed=s.allowed_collisions if s.self_collision else (),
                        home_clearance=s.min_clearance_m,
                    )
                    if not s.self_collision:
                        import dataclasses

                        spheres = dataclasses.replace(spheres, self_pairs=np.zeros((0, 2), dtype=np.int32))
                except (SceneError, CollisionGeometryError) as exc:
                    raise WhatIfError(f"[whatif] scene / collision settings: {exc}") from exc
                self._clearance = ClearanceChecker(
                    self.robot, spheres, scene, min_clearance=s.min_clearance_m, device=self.device
                )
            return self._clearance

    def check_clearance(self, rollout: Rollout, *, world_variant=None, variants=()):
        """Clearance of a rollout's recorded states -> `Clearance` (None without a scene or recorded states).

        ``variants`` with ``world_variant`` (``[nworld]`` int) add the variants' sized payloads to their links.
        """
        checker = self.clearance_checker()
        if checker is None or rollout.q.shape[1] == 0:
            return None
        return checker.evaluate(rollout.q, rollout.t, world_variant=world_variant, variants=variants)

    def rollout(
        self,
        q0: np.ndarray,
        qd0: np.ndarray | None,
        targets: np.ndarray,
        *,
        dt: float | None = None,
        steps: int | None = None,
        target_velocities: np.ndarray | None = None,
        record_every: int | None = None,
        variants: Sequence[Variant] | None = None,
        world_variant: np.ndarray | None = None,
        gravity_compensation: bool | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ) -> Rollout:
        """Integrate ``nworld`` worlds forward from ``(q0, qd0)`` with the drives tracking ``targets``.

        Args:
            q0: ``[nworld, ndof]`` (or ``[ndof]``) initial positions, rad|m.
            qd0: same shape, initial velocities, rad/s|m/s; None = at rest.
            targets: drive position targets per step, rad|m: ``[nstep, ndof]`` shared by all worlds or
                ``[nworld, nstep, ndof]`` per world; ``nstep`` is 1 (a constant target) or >= ``steps``.
                Targets outside the joint limits are allowed and flagged (`Rollout.command_outside_limits`).
            dt: integration step, s (default ``settings.dt``).
            steps: number of steps (default ``nstep``).
            target_velocities: same shape as ``targets``, rad/s|m/s, for the drives' damping term
                ``kd (qd_target - qd)``; None = zero (MuJoCo's position servo).
            record_every: keep every n-th step in `Rollout.q`/``qd``/``tau`` (default ``settings.record_every``;
                0 = record nothing).
            variants: per-set `Variant` parameters (payloads, gains, friction, latency, perturbation);
                ``speed_scale`` must be 1 here (a speed scale needs a trajectory: use `run`).
            world_variant: ``[nworld]`` int, the variant of each world (default: all 0, or world i -> variant i
                when there are as many variants as worlds).
            gravity_compensation: controller adds ``g(q)`` to the drives (default ``settings.gravity_compensation``).
            progress: called with the fraction done (0..1) while running.
            cancel: set it to stop early (`Rollout.completed` is then False).

        Raises:
            WhatIfError: wrong shapes, non-finite values, ``dt <= 0``, bad variants, or a batch beyond
                ``settings.memory_budget_mb`` -- always before any launch.
        """
        s = self.settings
        dt = self._check_dt(s.dt if dt is None else dt)
        q0, qd0 = self._check_state(q0, qd0)
        nworld = q0.shape[0]
        target_q, per_world = self._check_targets(targets, nworld, "targets")
        nstep_cmd = target_q.shape[1]
        steps = self._check_steps(nstep_cmd if steps is None else steps, nstep_cmd)
        target_qd = None
        if target_velocities is not None:
            target_qd, _ = self._check_targets(target_velocities, nworld, "target_velocities")
            if target_qd.shape != target_q.shape:
                raise WhatIfError(
                    f"target_velocities must have the shape of targets {tuple(np.shape(targets))}, "
                    f"got {tuple(np.shape(target_velocities))}"
                )
        record_every = s.record_every if record_every is None else int(record_every)
        if record_every < 0:
            raise WhatIfError(f"record_every must be >= 0 (0 = record nothing), got {record_every}")
        variants = list(variants) if variants is not None else [Variant()]
        if not variants:
            raise WhatIfError("variants is empty; pass None for the nominal robot or at least one Variant")
        for v in variants:
            if not isinstance(v, Variant):
                raise WhatIfError(f"variants must be Variant objects, got {type(v).__name__}")
            if v.speed_scale != 1.0:
                raise WhatIfError(
                    f"variant {v.name!r} has speed_scale {v.speed_scale:g}: rollout() takes explicit targets; "
                    "run a Scenario (engine.run) to time-scale a trajectory command"
                )
        world_set = self._check_world_variant(world_variant, nworld, len(variants))
        gc = s.gravity_compensation if gravity_compensation is None else bool(gravity_compensation)
        sets = parameter_sets(self.robot, self.tree, variants, dt=dt, gravity_compensation=gc)
        world_stream = np.arange(nworld, dtype=np.int32) if per_world else np.zeros(nworld, np.int32)
        return self._execute(
            sets,
            world_set,
            world_stream,
            q0,
            qd0,
            target_q,
            target_qd,
            dt=dt,
            steps=steps,
            record_every=record_every,
            mode=kernels.MODE_ROLLOUT,
            progress=progress,
            cancel=cancel,
        )

    def accelerations(
        self,
        q: np.ndarray,
        qd: np.ndarray | None,
        targets: np.ndarray | None = None,
        *,
        target_velocities: np.ndarray | None = None,
        variants: Sequence[Variant] | None = None,
        world_variant: np.ndarray | None = None,
        gravity_compensation: bool = False,
        joint_limits: bool = False,
    ) -> Dynamics:
        """Forward dynamics ``qdd = M^-1 (tau(q, qd, target) - C(q, qd))`` at ``nworld`` states (explicit: no
        implicit-integration terms), with ``M`` and ``C``: what MuJoCo's ``mj_forward`` reports as ``qacc``.

        Args:
            q, qd: ``[nworld, ndof]`` (or ``[ndof]``) state, rad|m and rad/s|m/s (qd None = 0).
            targets: ``[nworld, ndof]`` or ``[ndof]`` drive targets, rad|m; None = the drives are off
                (``kp = kd = 0``, only gravity, damping, friction act).
            target_velocities: like ``targets``, rad/s|m/s; None = 0.
            gravity_compensation: add ``g(q)`` to the drives (default off, unlike rollouts).
            joint_limits: include the limit springs (default off: MuJoCo treats limits as constraints).
        """
        q, qd = self._check_state(q, qd)
        nworld = q.shape[0]
        variants = list(variants) if variants is not None else [Variant()]
        if targets is None:
            variants = [
                Variant(
                    name=v.name,
                    payloads=v.payloads,
                    kp_scale=0.0,
                    kd_scale=0.0,
                    damping_scale=v.damping_scale,
                    friction_scale=v.friction_scale,
                    damping=v.damping,
                    friction=v.friction,
                    perturbation=v.perturbation,
                )
                for v in variants
            ]
            targets = q
        tq = self._check_array(targets, "targets", (nworld, self.ndof), allow_single=True)
        tqd = None
        if target_velocities is not None:
            tqd = self._check_array(target_velocities, "target_velocities", (nworld, self.ndof), allow_single=True)[
                :, None, :
            ]
        world_set = self._check_world_variant(world_variant, nworld, len(variants))
        sets = parameter_sets(self.robot, self.tree, variants, dt=1e-3, gravity_compensation=gravity_compensation)
        result = self._execute(
            sets,
            world_set,
            np.arange(nworld, dtype=np.int32),
            q,
            qd,
            tq[:, None, :],
            tqd,
            dt=1e-3,
            steps=1,
            record_every=0,
            mode=kernels.MODE_EVALUATE,
            joint_limits=joint_limits,
        )
        return result

    def run(
        self,
        scenario,
        *,
        base=None,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
    ):
        """Run a `Scenario` (optionally from ``base``: a `TwinSnapshot` or `BaseState`) -> `WhatIfReport`."""
        from ._scenario import run_scenario

        return run_scenario(self, scenario, base=base, progress=progress, cancel=cancel)

    # ---- validation ---------------------------------------------------------------------------------------
    def _check_model(self) -> None:
        r = self.robot
        if r.ndof == 0:
            raise WhatIfError(f"{r.name} has no moving joints: nothing to simulate")
        # A dof whose subtree has neither mass nor armature has a singular mass matrix.
        subtree_mass = self.tree.mass.copy()
        subtree_inertia = np.trace(self.tree.inertia_origin, axis1=1, axis2=2).copy()
        for b in range(r.ndof - 1, -1, -1):
            p = self.tree.parent[b]
            if p >= 0:
                subtree_mass[p] += subtree_mass[b]
                subtree_inertia[p] += subtree_inertia[b]
        empty = [
            r.dof_names[b]
            for b in range(r.ndof)
            if r.armature[b] <= 0 and subtree_mass[b] <= 0 and subtree_inertia[b] <= 0
        ]
        if empty:
            raise WhatIfError(
                f"joint(s) {empty} of {r.name} move nothing with mass and have no armature: the mass matrix "
                "is singular; author masses (PhysicsMassAPI) or an armature for them"
            )

    def _make_model_arrays(self) -> dict[str, np.ndarray]:
        r, t, s = self.robot, self.tree, self.settings
        revolute = r.dof_type == JointType.REVOLUTE
        return {
            "parent": t.parent,
            "parent_slot": np.where(t.parent >= 0, t.parent, r.ndof).astype(np.int32),
            "joint_type": t.joint_type,
            "parent_rot": t.parent_rotation,
            "parent_pos": t.parent_translation,
            "gravity": t.gravity,
            "lower": np.where(np.isfinite(r.lower), r.lower, -_BIG),
            "upper": np.where(np.isfinite(r.upper), r.upper, _BIG),
            "vel_limit": np.where(np.isfinite(r.velocity_limit), r.velocity_limit, _BIG),
            "effort_limit": np.where(np.isfinite(r.effort_limit), r.effort_limit, _BIG),
            "armature": np.asarray(r.armature, dtype=np.float64),
            "pos_tol": np.where(revolute, s.position_tolerance_rad, s.position_tolerance_m),
            "vel_tol": s.velocity_tolerance * np.where(np.isfinite(r.velocity_limit), r.velocity_limit, 0.0),
        }

    def _check_dt(self, dt) -> float:
        if (
            isinstance(dt, bool)
            or not isinstance(dt, (int, float, np.floating))
            or not math.isfinite(float(dt))
            or dt <= 0
        ):
            raise WhatIfError(f"dt must be a finite number of seconds > 0, got {dt!r}")
        if dt > 0.05:
            raise WhatIfError(
                f"dt = {dt:g} s is too coarse for drive dynamics (stiff servos need <= 0.05 s; 0.001-0.002 is typical)"
            )
        return float(dt)

    def _check_steps(self, steps, nstep_cmd: int) -> int:
        if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
            raise WhatIfError(f"steps must be an integer >= 1, got {steps!r}")
        if nstep_cmd != 1 and nstep_cmd < steps:
            raise WhatIfError(
                f"targets have {nstep_cmd} steps but {steps} were asked for; give >= {steps} target rows "
                "(or one row for a constant target)"
            )
        return int(steps)

    def _check_array(self, value, name: str, shape: tuple[int, ...], *, allow_single: bool = False) -> np.ndarray:
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise WhatIfError(
                f"{name} must be a numeric array of shape {list(shape)}, got {type(value).__name__}"
            ) from None
        if allow_single and arr.shape == shape[1:]:
            arr = np.broadcast_to(arr, shape)
        if arr.shape != shape:
            names = ", ".join(self.robot.dof_names)
            raise WhatIfError(
                f"{name} must have shape {list(shape)} (last axis: the {self.ndof} joints {names}), got {list(arr.shape)}"
            )
        if not np.isfinite(arr.sum()) and not np.all(np.isfinite(arr)):  # one pass when all is well
            idx = tuple(int(i[0]) for i in np.nonzero(~np.isfinite(arr)))
            raise WhatIfError(f"{name} must be finite; {name}{list(idx)} is {arr[idx]}")
        return np.ascontiguousarray(arr)

    def _check_state(self, q0, qd0) -> tuple[np.ndarray, np.ndarray]:
        q = np.asarray(q0, dtype=np.float64) if not isinstance(q0, np.ndarray) else q0
        if q.ndim == 1:
            q = q[None]
        if q.ndim != 2 or q.shape[0] < 1:
            raise WhatIfError(f"q0 must have shape [nworld, {self.ndof}] or [{self.ndof}], got {list(np.shape(q0))}")
        nworld = q.shape[0]
        q = self._check_array(q, "q0", (nworld, self.ndof))
        if qd0 is None:
            qd = np.zeros_like(q)
        else:
            qd = np.asarray(qd0, dtype=np.float64)
            if qd.ndim == 1:
                qd = qd[None]
            qd = self._check_array(qd, "qd0", (nworld, self.ndof))
        return q, qd

    def _check_targets(self, targets, nworld: int, name: str) -> tuple[np.ndarray, bool]:
        arr = np.asarray(targets, dtype=np.float64) if not isinstance(targets, np.ndarray) else targets
        if arr.ndim == 2:
            arr = self._check_array(arr, name, (arr.shape[0], self.ndof))
            if arr.shape[0] < 1:
                raise WhatIfError(f"{name} has no rows; give [nstep, {self.ndof}]")
            return arr[None], False
        if arr.ndim == 3:
            if arr.shape[0] != nworld:
                raise WhatIfError(
                    f"per-world {name} must have shape [nworld={nworld}, nstep, {self.ndof}], got {list(arr.shape)}"
                )
            return self._check_array(arr, name, (nworld, arr.shape[1], self.ndof)), True
        raise WhatIfError(
            f"{name} must be [nstep, {self.ndof}] (shared) or [nworld, nstep, {self.ndof}] (per world), "
            f"got shape {list(arr.shape)}"
        )

    def _check_world_variant(self, world_variant, nworld: int, nvariant: int) -> np.ndarray:
        if world_variant is None:
            if nvariant == 1:
                return np.zeros(nworld, np.int32)
            if nvariant == nworld:
                return np.arange(nworld, dtype=np.int32)
            raise WhatIfError(
                f"{nvariant} variants for {nworld} worlds: give world_variant [nworld] (the variant of each world)"
            )
        wv = np.asarray(world_variant)
        if wv.shape != (nworld,) or wv.dtype.kind not in "iu":
            raise WhatIfError(f"world_variant must be {nworld} integers, got shape {list(wv.shape)} dtype {wv.dtype}")
        if wv.min() < 0 or wv.max() >= nvariant:
            raise WhatIfError(f"world_variant values must be in [0, {nvariant - 1}], got [{wv.min()}, {wv.max()}]")
        return wv.astype(np.int32)

    # ---- execution ----------------------------------------------------------------------------------------
    def _execute(
        self,
        sets: dict[str, np.ndarray],
        world_set: np.ndarray,
        world_stream: np.ndarray,
        q0: np.ndarray,
        qd0: np.ndarray,
        target_q: np.ndarray,
        target_qd: np.ndarray | None,
        *,
        dt: float,
        steps: int,
        record_every: int,
        mode: int,
        joint_limits: bool | None = None,
        progress: Callable[[float], None] | None = None,
        cancel: threading.Event | None = None,
        clearance_variants: Sequence[Variant] | None = None,
    ):
        """Launch a checked request -> `Rollout` (`Dynamics` in evaluate mode).

        With ``clearance_variants`` (the request's variants, indexed by ``world_set``) -> ``(Rollout, Clearance |
        None)``: the recorded states' clearance against this engine's scene (None without a scene or records),
        computed by each worker on the worlds it rolled out (in-process without a pool; same results).
        """
        s = self.settings
        precision = s.precision
        fdt = np.float64 if precision == "float64" else np.float32
        nworld, nb = q0.shape
        nrec = steps // record_every if record_every > 0 else 0
        evaluate = mode == kernels.MODE_EVALUATE
        nstream, nstep_cmd = target_q.shape[:2]
        f, i = np.dtype(fdt).str, np.dtype(np.int32).str
        specs: dict[str, tuple[tuple[int, ...], str]] = {}
        for name, arr in sets.items():
            specs[name] = (arr.shape, i if arr.dtype.kind == "i" else f)
        specs.update(
            {
                "world_set": ((nworld,), i),
                "world_stream": ((nworld,), i),
                "q": ((nworld, nb), f),
                "qd": ((nworld, nb), f),
                "target_q": ((nstream, nstep_cmd, nb), f),
                "target_qd": (target_q.shape if target_qd is not None else (1, 1, nb), f),
                "out_q": ((nworld, nrec, nb), f),
                "out_qd": ((nworld, nrec, nb), f),
                "out_tau": ((nworld, nrec, nb), f),
                "first_pos": ((nworld, nb), i),
                "first_vel": ((nworld, nb), i),
                "first_eff": ((nworld, nb), i),
                "max_track": ((nworld, nb), f),
                "min_pos_margin": ((nworld, nb), f),
                "min_vel_margin": ((nworld, nb), f),
                "min_eff_margin": ((nworld, nb), f),
                "diverged": ((nworld,), i),
                "eval_qdd": ((nworld if evaluate else 1, nb), f),
                "eval_bias": ((nworld if evaluate else 1, nb), f),
                "eval_mass": ((nworld if evaluate else 1, nb if evaluate else 1, nb if evaluate else 1), f),
            }
        )
        recorded = ("out_q", "out_qd", "out_tau")
        rec_specs = {name: specs.pop(name) for name in recorded}
        checker = self.clearance_checker() if clearance_variants is not None and nrec > 0 and not evaluate else None
        pooled_clearance = None
        if checker is not None and self._pool is not None:
            nlink = self.robot.nlink
            rec_specs["clear_dist"] = ((nworld, nrec, nlink), np.dtype(np.float32).str)
            rec_specs["clear_which"] = ((nworld, nrec, nlink), i)
            parts = checker.part_arrays(
                clearance_variants, max(int(world_set.max(initial=0)) + 1, len(clearance_variants))
            )
            pooled_clearance = {"key": checker.key, "spec": checker.spec, "parts": parts}
        layout, nbytes = plan_layout(specs)
        rec_layout, rec_bytes = plan_layout(rec_specs)
        self._check_budget(nbytes + rec_bytes, nworld, nb, nrec, precision)

        limit_on = (s.joint_limits == "spring") if joint_limits is None else bool(joint_limits)
        options = RunOptions(
            precision=precision,
            mode=mode,
            dt=dt,
            steps=steps,
            record_every=record_every,
            use_target_qd=target_qd is not None,
            friction_eps=s.friction_smoothing,
            limit_omega=1.0 / max(s.limit_time_constant, 2.0 * dt),
            limit_active=limit_on,
            implicit_saturated=s.implicit_saturated_damping,
            chunk_steps=s.chunk_steps,
            specialized=s.specialize,
            simd_worlds=s.simd_worlds,
            eff_min_steps=max(1, math.ceil(s.effort_saturation_min_s / dt - 1e-9)),
        )
        self.wait_ready()
        with self._lock:
            if self._pool is not None and self._pool.closed:
                # someone shut the shared workers down (shutdown_workers): start fresh ones
                from ._pool import shared_pool

                self._pool = shared_pool(
                    self._pool.nworkers,
                    python=self.settings.worker_python,
                    precisions=(),
                    nice=self.settings.worker_nice,
                )
                self._pool.prepare(
                    self.model_key, self._model_arrays, precision, s.specialize, timeout=max(s.timeout_s, 600.0),
                    simd_worlds=s.simd_worlds,
                )  # fmt: skip
            if self._pool is not None:
                arrays = self._pool.arena(nbytes).views(layout)
                rec_arena = self._pool.recording_arena(rec_bytes)  # the caller gets these arrays without a copy
                rec_arrays = rec_arena.views(rec_layout)
            else:
                arrays = {name: np.empty(shape, dtype=np.dtype(dtype)) for name, (_, shape, dtype) in layout.items()}
                rec_arena = None
                rec_arrays = {
                    name: np.empty(shape, dtype=np.dtype(dtype)) for name, (_, shape, dtype) in rec_layout.items()
                }
            for name, arr in sets.items():
                arrays[name][...] = arr
            arrays["world_set"][...] = world_set
            arrays["world_stream"][...] = world_stream
            arrays["q"][...] = q0
            arrays["qd"][...] = qd0
            arrays["target_q"][...] = target_q
            arrays["target_qd"][...] = target_qd if target_qd is not None else 0.0
            for name in ("first_pos", "first_vel", "first_eff", "diverged"):
                arrays[name][...] = -1
            arrays["max_track"][...] = 0.0
            for name in ("min_pos_margin", "min_vel_margin", "min_eff_margin"):
                arrays[name][...] = np.finfo(fdt).max
            if pooled_clearance is not None:  # chunks a cancel leaves out report "nothing in reach"
                from ._clearance import CUTOFF_M

                rec_arrays["clear_dist"][...] = CUTOFF_M
                rec_arrays["clear_which"][...] = -1
            infos: list[dict] = []
            t0 = time.perf_counter()
            try:
                if self._pool is not None:
                    assert rec_arena is not None
                    completed = self._pool.run(
                        self.model_key,
                        self._model_arrays,
                        layout,
                        options,
                        nworld,
                        extra=(rec_arena.path, rec_layout),
                        timeout=s.timeout_s,
                        progress=progress,
                        cancel=cancel,
                        clearance=pooled_clearance,
                        infos=infos,
                    )
                else:
                    assert self._executor is not None, "this engine was closed"
                    if not self._executor.has_model(self.model_key, precision):
                        self._executor.set_model(self.model_key, precision, self._model_arrays)
                    completed = self._executor.run(
                        self.model_key,
                        {**arrays, **rec_arrays},
                        options,
                        0,
                        nworld,
                        progress=(lambda done: progress(done / steps)) if progress is not None else None,
                        cancelled=cancel.is_set if cancel is not None else None,
                    )
            finally:
                if rec_arena is not None:
                    # reusable (pages already in place) once the caller has dropped every array of it
                    self._pool.track_recording(rec_arena, list(rec_arrays.values()))
            seconds = time.perf_counter() - t0
            skip = ("set_", "target")
            if self._pool is not None:  # the shared arena is reused by the next request: copy what we keep
                out = {name: np.array(arrays[name]) for name in layout if not name.startswith(skip)}
            else:
                out = {name: arrays[name] for name in layout if not name.startswith(skip)}
            out.update(rec_arrays)
            del arrays
        if evaluate:
            return Dynamics(qdd=out["eval_qdd"], mass_matrix=out["eval_mass"], bias=out["eval_bias"])
        clear = (out.pop("clear_dist"), out.pop("clear_which")) if pooled_clearance is not None else None
        rollout = self._make_rollout(out, target_q, dt, steps, record_every, nrec, seconds, completed)
        if clearance_variants is None:
            return rollout
        if checker is None:
            return rollout, None
        if clear is not None:
            cpu_seconds = sum(x.get("clearance_seconds", 0.0) for x in infos)
            return rollout, checker.result(*clear, rollout.t, compute_seconds=cpu_seconds)
        return rollout, checker.evaluate(rollout.q, rollout.t, world_variant=world_set, variants=clearance_variants)

    def _check_budget(self, nbytes: int, nworld: int, nb: int, nrec: int, precision: str) -> None:
        total = nbytes + nworld * scratch_bytes_per_world(nb, precision)
        budget = self.settings.memory_budget_mb * 2**20
        if total > budget:
            size = 8 if precision == "float64" else 4
            recorded = 3 * nworld * nrec * nb * size
            raise WhatIfError(
                f"this request needs {total / 2**20:.0f} MiB ({recorded / 2**20:.0f} MiB of it recorded q/qd/tau for "
                f"{nworld} worlds x {nrec} samples) but the what-if memory budget is {self.settings.memory_budget_mb:g} MiB "
                "([whatif] memory_budget_mb); fix: fewer worlds or steps, a larger record_every (or 0), or raise the budget"
            )

    def _make_rollout(self, out, target_q, dt, steps, record_every, nrec, seconds, completed) -> Rollout:
        def to_time(steps_arr: np.ndarray) -> np.ndarray:
            return np.where(steps_arr >= 0, steps_arr * dt, np.nan)

        r = self.robot
        tol = self._model_arrays["pos_tol"]  # a target on the limit (stored as float32 in USD) is not outside
        low, high = _column_extremes(target_q.reshape(-1, target_q.shape[-1]))
        outside = (low < r.lower - tol) | (high > r.upper + tol)
        out = {
            name: (
                np.asarray(v, dtype=np.float64)
                if v.dtype.kind == "f" and name not in ("out_q", "out_qd", "out_tau")
                else v
            )
            for name, v in out.items()
        }
        margins = {}
        for name in ("min_pos_margin", "min_vel_margin", "min_eff_margin"):
            m = out[name]
            margins[name] = np.where(m > 0.5 * _BIG, np.inf, m)  # "no limit" sentinels and untouched initial values
        t = (np.arange(nrec) + 1) * record_every * dt if nrec else np.zeros(0)
        return Rollout(
            dof_names=r.dof_names,
            dt=dt,
            steps=steps,
            record_every=record_every,
            t=t,
            q=out["out_q"],
            qd=out["out_qd"],
            tau=out["out_tau"],
            q_final=out["q"],
            qd_final=out["qd"],
            first_position_violation=to_time(out["first_pos"]),
            first_velocity_violation=to_time(out["first_vel"]),
            first_effort_saturation=to_time(out["first_eff"]),
            max_tracking_error=out["max_track"],
            min_position_margin=margins["min_pos_margin"],
            min_velocity_margin=margins["min_vel_margin"],
            min_effort_margin=margins["min_eff_margin"],
            diverged_at=to_time(out["diverged"]),
            command_outside_limits=outside,
            compute_seconds=seconds,
            completed=completed,
        )
