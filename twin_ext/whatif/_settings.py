# SPDX-License-Identifier: Apache-2.0
"""`WhatIfSettings`: the ``[whatif]`` section of the twin configuration (documented in docs/SETTINGS.md)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..config import section_from_mapping

__all__ = ["WhatIfSettings"]

_PRECISIONS = ("float64", "float32")
_LIMIT_MODES = ("spring", "off")


@dataclass(frozen=True)
class WhatIfSettings:
    """Engine, integrator and verdict settings of the what-if engine (SI units; see docs/SETTINGS.md)."""

    precision: str = "float64"
    """Floating point of the kernels: "float64" (oracle-grade; on CPU as fast as float32) or "float32"."""
    use_process_pool: bool = True
    """Split batches over worker processes (a Warp CPU launch uses one core and holds the GIL)."""
    workers: int = 0
    """Worker processes; 0 = one per CPU core."""
    worker_python: str = ""
    """Interpreter for worker processes; "" = ``sys.executable``, or the embedded interpreter's ``python3`` when
    ``sys.executable`` is an application (Kit)."""
    worker_nice: int = 10
    """POSIX niceness added to the worker processes (0-19; 0 = the twin's own priority; ignored where the OS has
    none): rollouts yield the cores to the twin's network and display threads and to a robot emulator on the same
    machine, so a what-if does not delay telemetry. An idle machine runs them as fast as before."""
    warmup: bool = True
    """Start the workers and load/compile the kernels in the background when an engine is created."""
    specialize: bool = True
    """Roll out with a kernel generated for the robot's tree shape (~1.4x faster; compiled once per shape and
    precision into the kernel cache, ~10 s for the Panda); false: the generic kernel."""
    simd_worlds: int = 8
    """Worlds one CPU thread advances at once in SIMD vectors, with ``specialize`` and float64 on CPU (~2.7x faster
    than one world per thread; 1, 2, 4, 8 or 16; 1: the scalar specialised kernel). Any x86-64 CPU runs it
    (``-march=native`` picks AVX-512, AVX2 or SSE2); results equal the scalar kernel's to rounding."""
    memory_budget_mb: float = 2048.0
    """Largest memory one request may use (inputs, recorded outputs, scratch), MiB; checked before launch."""
    timeout_s: float = 300.0
    """Longest a request may run before the workers are declared dead, s."""
    chunk_steps: int = 500
    """Steps per kernel launch (progress and cancellation granularity)."""
    dt: float = 0.002
    """Default integration step, s."""
    record_every: int = 10
    """Default recording decimation: keep every n-th step of q, qd, tau."""
    samples: int = 32
    """Default Monte-Carlo samples per variant (sample 0 is the mean state)."""
    seed: int = 0
    """Default random seed for Monte-Carlo sampling."""
    speed_ramp_s: float = 0.3
    """A speed change of a program the robot is already running (a command joined mid-way) ramps over this
    time, s, as robot speed overrides do (the emulator's ramp_time); 0 = a step change."""
    settle_time: float = 0.5
    """Simulated time after a trajectory command ends (holding its last waypoint), s."""
    gravity_compensation: bool = True
    """The robot's controller adds the gravity torque g(q) to its drives (as the Panda's firmware does)."""
    velocity_feedforward: bool = True
    """Drives track the command's velocity (kd (qd_target - qd)); false: kd (0 - qd), MuJoCo's plain servo."""
    joint_limits: str = "spring"
    """How position limits act: "spring" (one-sided critically damped spring-damper) or "off"."""
    limit_time_constant: float = 0.02
    """Time constant of the limit spring-damper, s (MuJoCo's default; raised to 2 dt when smaller, as MuJoCo does)."""
    friction_smoothing: float = 0.01
    """Velocity scale eps of the smooth Coulomb friction -F tanh(qd / eps), rad/s | m/s."""
    implicit_saturated_damping: bool = True
    """Keep a drive's kd in the implicit damping while its force is clamped. True (default): a saturated stiff
    drive integrates stably at dt = 2 ms. False: drop it -- the exact derivative of a clamped force, and what
    MuJoCo 4's implicitfast does (the oracle tests use it) -- which at dt = 2 ms makes a saturated Panda wrist
    (kd dt / I ~ 3 > 2) flip its torque sign every step, a numerical chatter a 1 kHz robot controller never
    shows and that would read as sustained saturation."""
    position_tolerance_rad: float = 1e-3
    """A revolute joint violates its limit when it goes more than this beyond it, rad (a joint whose target is
    exactly that limit may rest on it: contact with a commanded stop is not a violation)."""
    position_tolerance_m: float = 1e-4
    """A prismatic joint violates its limit when it goes more than this beyond it, m (same rule)."""
    velocity_tolerance: float = 0.0
    """A joint violates its speed limit when |qd| > (1 + this) * limit (fraction)."""
    effort_saturation_min_s: float = 0.02
    """A drive's effort limit counts as violated when it demands more than the limit for at least this long, s
    (0: a single step). Drives clip brief peaks — e.g. the first steps of a rollout whose sampled initial state
    differs slightly from the command — without losing the motion; sustained saturation is what loses it."""
    confidence: float = 0.95
    """Confidence level of the Wilson interval on P(violation)."""
    max_violation_probability: float = 0.0
    """A variant passes when its observed violation fraction is at most this."""
    scene: str = ""
    """USD file whose colliders (UsdPhysics CollisionAPI) the rollouts are checked against; "" = no scene (self
    collision only, when on). Relative paths: the working folder, then the extension's folder."""
    scene_root: str = ""
    """Prim path of the scene's colliders; "" = the whole stage minus the robot's own prims."""
    min_clearance_m: float = 0.01
    """A link closer than this to the scene or to another link is a ``clearance`` violation, m (at or below 0:
    ``collision``)."""
    self_collision: bool = True
    """With a scene set, also check the robot's links against each other (adjacent links, gripper fingers, pairs
    closer than min_clearance_m at the home pose and allowed_collisions are not checked)."""
    allowed_collisions: tuple = ()
    """Link-name pairs never checked against each other, e.g. [["link5", "link7"]] (like MoveIt's allowed
    collision matrix)."""
    spheres_per_link: int = 12
    """Spheres fitted to each link's collision geometry (more: tighter, slower)."""
    clearance_interval_s: float = 0.01
    """Simulated time between the states checked for clearance, s (the rollout records at least this often when a
    check is on)."""

    def __post_init__(self) -> None:
        def positive(name: str) -> None:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

        if self.precision not in _PRECISIONS:
            raise ValueError(f"precision must be one of {list(_PRECISIONS)}, got {self.precision!r}")
        if self.joint_limits not in _LIMIT_MODES:
            raise ValueError(f"joint_limits must be one of {list(_LIMIT_MODES)}, got {self.joint_limits!r}")
        if (
            isinstance(self.worker_nice, bool)
            or not isinstance(self.worker_nice, int)
            or not 0 <= self.worker_nice <= 19
        ):
            raise ValueError(
                f"worker_nice must be an integer in 0..19 (0: the twin's priority), got {self.worker_nice!r}"
            )
        if self.simd_worlds not in (1, 2, 4, 8, 16):
            raise ValueError(f"simd_worlds must be 1, 2, 4, 8 or 16, got {self.simd_worlds!r}")
        for name in (
            "memory_budget_mb",
            "timeout_s",
            "dt",
            "limit_time_constant",
            "friction_smoothing",
            "clearance_interval_s",
        ):
            positive(name)
        for name in ("workers", "seed"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("chunk_steps", "record_every", "samples", "spheres_per_link"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in (
            "settle_time",
            "speed_ramp_s",
            "position_tolerance_rad",
            "position_tolerance_m",
            "velocity_tolerance",
            "effort_saturation_min_s",
            "min_clearance_m",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for pair in self.allowed_collisions:
            if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(n, str) for n in pair)):
                raise ValueError(
                    f"allowed_collisions entries must be pairs of link names like ['link5', 'link7'], got {pair!r}"
                )
        if not 0.5 <= self.confidence < 1.0:
            raise ValueError(f"confidence must be in [0.5, 1), got {self.confidence}")
        if not 0.0 <= self.max_violation_probability < 1.0:
            raise ValueError(f"max_violation_probability must be in [0, 1), got {self.max_violation_probability}")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> WhatIfSettings:
        """Build from the ``[whatif]`` table; unknown keys are errors naming the valid ones."""
        return section_from_mapping(cls, mapping, section="whatif")

    def worker_count(self) -> int:
        """Worker processes to start (0 when the pool is off)."""
        import os

        if not self.use_process_pool:
            return 0
        return self.workers or max(1, os.cpu_count() or 1)
