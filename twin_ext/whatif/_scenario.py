# SPDX-License-Identifier: Apache-2.0
"""Scenarios: a base state, a candidate command and variants, run as Monte-Carlo rollouts with verdicts.

A `Scenario` comes from Python or from a TOML file (``config/scenarios/*.toml``; the schema is in
docs/whatif.md and in `Scenario.from_mapping`). Running one (`WhatIfEngine.run` / `run_scenario`):

1. **Base state**: a `TwinSnapshot` (mean ``q, qd`` and covariance; its health decides whether a verdict
   may pass), a `BaseState` given in the scenario, or — when neither is given — the command's state at
   its start, at rest.
2. **Command** per variant: a `JointTrajectory` time-scaled by the variant's ``speed_scale`` and sampled
   every ``dt`` (position targets and, with ``velocity_feedforward``, velocity targets), or a target
   stream. Joints the command does not name hold their base position.
3. **Samples**: ``samples`` initial states per variant; sample 0 is the mean, the others are drawn from
   ``N(mean, covariance)`` with positions clipped into the joint limits (hard stops). Every variant uses
   the same draws (common random numbers), so differences between variants are not sampling noise.
4. **Rollouts** of all variants x samples in one batch; **verdicts** per variant (`verdict`).
"""

from __future__ import annotations

import dataclasses
import math
import time
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._paths import scenarios_dir
from ..config import check_keys
from ..estimation import Health, TwinSnapshot
from ..robot import JointTrajectory, JointType, RobotModel, TrajectoryError
from . import _kernels as kernels
from ._budget import plan_request
from ._errors import WhatIfError
from ._variants import Payload, Perturbation, Variant, parameter_sets
from ._verdict import WhatIfReport, variant_verdicts

__all__ = ["BaseState", "Scenario", "TargetStream", "TrajectoryCommand", "run_scenario", "load_scenario"]

_TOP_KEYS = ("name", "robot", "dt", "duration", "samples", "seed", "record_every", "base", "command", "variant")
_BASE_KEYS = ("q", "qd", "std_q", "std_qd", "health")
_COMMAND_KEYS = (
    "trajectory",
    "start",
    "joint_names",
    "waypoint",
    "targets",
    "target_velocities",
    "target_dt",
    "velocity_feedforward",
    "gravity_compensation",
)
_VARIANT_KEYS = (
    "name",
    "speed_scale",
    "payload",
    "kp_scale",
    "kd_scale",
    "damping_scale",
    "friction_scale",
    "damping",
    "friction",
    "latency",
    "perturbation",
    "gravity_compensation",
)
_PAYLOAD_KEYS = ("link", "mass", "com", "inertia", "known_to_controller", "size")
_PERTURBATION_KEYS = ("link", "force", "torque", "point", "start", "duration")


# ---- parts ----------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class BaseState:
    """The state the rollouts start from.

    Attributes:
        q, qd: ``[ndof]`` mean positions (rad|m) and velocities (rad/s|m/s), in the robot's dof order.
        covariance: ``[2 ndof, 2 ndof]`` covariance of ``(q, qd)``, or None (no uncertainty: one sample).
        health: "ok", "stale", "lost" — only "ok" lets a verdict pass.
        age_s: seconds since the last measurement behind the state (inf if unknown).
    """

    q: np.ndarray
    qd: np.ndarray
    covariance: np.ndarray | None = None
    health: str = "ok"
    age_s: float = 0.0

    @classmethod
    def from_snapshot(cls, snapshot: TwinSnapshot) -> BaseState:
        """The estimator's mean, covariance and health from a twin snapshot."""
        health = snapshot.health.value if isinstance(snapshot.health, Health) else str(snapshot.health)
        return cls(
            np.array(snapshot.q, dtype=np.float64),
            np.array(snapshot.qd, dtype=np.float64),
            np.array(snapshot.covariance, dtype=np.float64),
            health,
            float(snapshot.age_s),
        )

    @classmethod
    def from_std(cls, q, qd=None, *, std_q=0.0, std_qd=0.0, health: str = "ok") -> BaseState:
        """A state with independent Gaussian uncertainty: ``std_q`` rad|m, ``std_qd`` rad/s|m/s (scalars or ``[ndof]``)."""
        q = np.asarray(q, dtype=np.float64)
        qd = np.zeros_like(q) if qd is None else np.asarray(qd, dtype=np.float64)
        try:
            sq = np.broadcast_to(np.asarray(std_q, dtype=np.float64), q.shape)
            sqd = np.broadcast_to(np.asarray(std_qd, dtype=np.float64), q.shape)
        except ValueError:
            raise WhatIfError(
                f"std_q and std_qd must be one number or one per joint ({q.shape[0]}), got "
                f"{np.shape(std_q)} and {np.shape(std_qd)}"
            ) from None
        if np.any(sq < 0) or np.any(sqd < 0) or not (np.all(np.isfinite(sq)) and np.all(np.isfinite(sqd))):
            raise WhatIfError("std_q and std_qd must be finite and >= 0")
        cov = np.diag(np.concatenate([sq, sqd]) ** 2) if (np.any(sq > 0) or np.any(sqd > 0)) else None
        return cls(q, qd, cov, health)


@dataclass(frozen=True, eq=False)
class TrajectoryCommand:
    """Follow ``trajectory`` from its time ``start`` (s; None = its first waypoint)."""

    trajectory: JointTrajectory
    start: float | None = None


@dataclass(frozen=True, eq=False)
class TargetStream:
    """A target stream: ``targets [n, k]`` (rad|m) for ``joint_names [k]`` every ``dt`` s, optional
    ``velocities [n, k]`` (rad/s|m/s). Resampled linearly to the rollout step; holds its last row after."""

    joint_names: tuple[str, ...]
    targets: np.ndarray
    dt: float
    velocities: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Scenario:
    """A what-if question: from ``base``, run ``command`` under each of ``variants``.

    Attributes:
        name: label in reports.
        command: `TrajectoryCommand` or `TargetStream`.
        variants: one or more `Variant` (names unique).
        base: `BaseState` or None (the twin's snapshot, or the command's start at rest).
        samples: Monte-Carlo samples per variant (None = ``settings.samples``).
        seed: random seed (None = ``settings.seed``).
        dt: s (None = ``settings.dt``). duration: s (None = the slowest variant's command + ``settle_time``).
        record_every: recording decimation of the rollouts kept in the report (None = ``settings.record_every``).
        velocity_feedforward, gravity_compensation: controller model (None = settings).
        robot: expected robot name ("" = any); a mismatch is an error.
    """

    name: str
    command: TrajectoryCommand | TargetStream
    variants: tuple[Variant, ...] = (Variant(),)
    base: BaseState | None = None
    samples: int | None = None
    seed: int | None = None
    dt: float | None = None
    duration: float | None = None
    record_every: int | None = None
    velocity_feedforward: bool | None = None
    gravity_compensation: bool | None = None
    robot: str = ""
    source: str = field(default="<python>", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "variants", tuple(self.variants))
        if not self.variants:
            raise WhatIfError(f"scenario {self.name!r} has no variants; add at least one [[variant]]")
        seen: set[str] = set()
        dup = sorted({v.name for v in self.variants if v.name in seen or seen.add(v.name)})  # linear: sweeps are big
        if dup:
            raise WhatIfError(f"scenario {self.name!r}: variant names must be unique; repeated: {dup}")
        if not isinstance(self.command, (TrajectoryCommand, TargetStream)):
            raise WhatIfError(f"scenario {self.name!r}: command must be a TrajectoryCommand or TargetStream")
        if self.samples is not None and (not isinstance(self.samples, int) or self.samples < 1):
            raise WhatIfError(f"scenario {self.name!r}: samples must be an integer >= 1, got {self.samples!r}")
        for key in ("dt", "duration"):
            value = getattr(self, key)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise WhatIfError(
                    f"scenario {self.name!r}: {key} must be a finite number of seconds > 0, got {value!r}"
                )

    # ---- TOML / JSON --------------------------------------------------------------------------------
    @classmethod
    def from_mapping(
        cls,
        doc: Mapping[str, Any],
        *,
        source: str = "<mapping>",
        base_dir: Path | None = None,
        trajectory_loader: Callable[[str], JointTrajectory] | None = None,
    ) -> Scenario:
        """Build from a parsed TOML/JSON document (schema: docs/whatif.md). Paths resolve against ``base_dir``.

        ``trajectory_loader`` turns ``[command] trajectory`` into a `JointTrajectory` instead (the remote service
        passes one that reads only its allowed folders); it raises `WhatIfError` with the message to show.
        """
        where = source
        _check_keys(doc, _TOP_KEYS, where)
        base_dir = base_dir or Path.cwd()
        name = doc.get("name", Path(source).stem if source.endswith(".toml") else "scenario")
        if not isinstance(name, str) or not name:
            raise WhatIfError(f"{where}: name must be a non-empty string")
        command = _parse_command(doc.get("command"), f"{where} [command]", base_dir, trajectory_loader)
        cmd_doc = doc.get("command", {})
        variants_doc = doc.get("variant", [{"name": "nominal"}])
        if not isinstance(variants_doc, list) or not variants_doc:
            raise WhatIfError(f"{where}: [[variant]] must be a list of tables (at least one)")
        variants = tuple(_parse_variant(v, f"{where} [[variant]] {i}") for i, v in enumerate(variants_doc))
        base = None
        if "base" in doc:
            base = _parse_base(doc["base"], f"{where} [base]")
        return cls(
            name=name,
            command=command,
            variants=variants,
            base=base,
            samples=_opt_int(doc, "samples", where, minimum=1),
            seed=_opt_int(doc, "seed", where, minimum=0),
            dt=_opt_float(doc, "dt", where),
            duration=_opt_float(doc, "duration", where),
            record_every=_opt_int(doc, "record_every", where, minimum=0),
            velocity_feedforward=_opt_bool(cmd_doc, "velocity_feedforward", f"{where} [command]"),
            gravity_compensation=_opt_bool(cmd_doc, "gravity_compensation", f"{where} [command]"),
            robot=str(doc.get("robot", "")),
            source=source,
        )

    @classmethod
    def from_toml(cls, path: str | Path) -> Scenario:
        """Read a scenario TOML file (paths inside resolve against the file's folder)."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise WhatIfError(f"cannot read scenario file {str(path)!r}: {exc.strerror}") from None
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise WhatIfError(f"{path}: not valid TOML: {exc}") from None
        return cls.from_mapping(doc, source=str(path), base_dir=path.resolve().parent)

    def with_variants(self, variants: Sequence[Variant]) -> Scenario:
        """A copy with other variants."""
        from dataclasses import replace

        return replace(self, variants=tuple(variants))


def load_scenario(name_or_path: str | Path) -> Scenario:
    """A scenario by file path, or by name from the shipped ``config/scenarios/<name>.toml``."""
    path = Path(name_or_path)
    if not path.suffix:
        path = scenarios_dir() / f"{name_or_path}.toml"
        if not path.is_file():
            folder = path.parent
            known = sorted(p.stem for p in folder.glob("*.toml")) if folder.is_dir() else []
            raise WhatIfError(f"no scenario named {str(name_or_path)!r}; shipped scenarios: {known}")
    return Scenario.from_toml(path)


# ---- parsing helpers ----------------------------------------------------------------------------------
def _check_keys(doc, keys: Sequence[str], where: str) -> None:
    if not isinstance(doc, Mapping):
        raise WhatIfError(f"{where}: expected a table, got {type(doc).__name__}")
    check_keys(doc, keys, where=f"{where}:", error=WhatIfError)


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise WhatIfError(f"{what} must be a number, got {value!r}")
    if not math.isfinite(float(value)):
        raise WhatIfError(f"{what} must be finite, got {value!r}")
    return float(value)


def _opt_float(doc, key, where) -> float | None:
    return None if key not in doc else _number(doc[key], f"{where}: {key}")


def _opt_int(doc, key, where, *, minimum: int) -> int | None:
    if key not in doc:
        return None
    v = doc[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
        raise WhatIfError(f"{where}: {key} must be an integer >= {minimum}, got {v!r}")
    return v


def _opt_bool(doc, key, where) -> bool | None:
    if not isinstance(doc, Mapping) or key not in doc:
        return None
    if not isinstance(doc[key], bool):
        raise WhatIfError(f"{where}: {key} must be true or false, got {doc[key]!r}")
    return doc[key]


def _vector(value, n: int | None, what: str) -> tuple[float, ...]:
    if not isinstance(value, (list, tuple)) or (n is not None and len(value) != n):
        raise WhatIfError(f"{what} must be a list of {n if n is not None else 'some'} numbers, got {value!r}")
    return tuple(_number(x, what) for x in value)


def _joint_values(value, what: str):
    if isinstance(value, Mapping):
        return {str(k): _number(v, f"{what}[{k!r}]") for k, v in value.items()}
    return _number(value, what)


def _parse_command(doc, where: str, base_dir: Path, loader=None) -> TrajectoryCommand | TargetStream:
    if doc is None:
        raise WhatIfError(f'{where}: missing; give trajectory = "file.toml", inline [[command.waypoint]]s, or targets')
    _check_keys(doc, _COMMAND_KEYS, where)
    kinds = [k for k in ("trajectory", "waypoint", "targets") if k in doc]
    if len(kinds) != 1:
        raise WhatIfError(
            f"{where}: give exactly one of trajectory (file), waypoint (inline) or targets (stream); got {kinds}"
        )
    start = _opt_float(doc, "start", where)
    try:
        if "trajectory" in doc:
            if not isinstance(doc["trajectory"], str):
                raise WhatIfError(f"{where}: trajectory must be a file path string")
            if loader is not None:
                return TrajectoryCommand(loader(doc["trajectory"]), start)
            path = Path(doc["trajectory"]).expanduser()
            path = path if path.is_absolute() else base_dir / path
            return TrajectoryCommand(JointTrajectory.from_toml(path), start)
        if "waypoint" in doc:
            traj = JointTrajectory.from_mapping(
                {"joint_names": doc.get("joint_names"), "waypoint": doc["waypoint"]}, source=where
            )
            return TrajectoryCommand(traj, start)
    except TrajectoryError as exc:
        raise WhatIfError(f"{where}: {exc}") from None
    names = doc.get("joint_names")
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise WhatIfError(f"{where}: a target stream needs joint_names = [...] naming its columns")
    targets = np.asarray(doc["targets"], dtype=np.float64) if isinstance(doc["targets"], list) else None
    if targets is None or targets.ndim != 2 or targets.shape[1] != len(names):
        raise WhatIfError(f"{where}: targets must be a list of rows of {len(names)} numbers (one per joint_names)")
    velocities = None
    if "target_velocities" in doc:
        velocities = np.asarray(doc["target_velocities"], dtype=np.float64)
        if velocities.shape != targets.shape:
            raise WhatIfError(f"{where}: target_velocities must have the shape of targets {targets.shape}")
    if "target_dt" not in doc:
        raise WhatIfError(f"{where}: a target stream needs target_dt (s between rows)")
    return _stream(tuple(names), targets, _number(doc["target_dt"], f"{where}: target_dt"), velocities, where)


def _stream(names, targets, dt, velocities, where) -> TargetStream:
    if not (dt > 0):
        raise WhatIfError(f"{where}: target_dt must be > 0, got {dt}")
    if not np.all(np.isfinite(targets)) or (velocities is not None and not np.all(np.isfinite(velocities))):
        raise WhatIfError(f"{where}: targets must be finite")
    return TargetStream(names, targets, dt, velocities)


def _parse_base(doc, where: str) -> BaseState:
    _check_keys(doc, _BASE_KEYS, where)
    if "q" not in doc:
        raise WhatIfError(f"{where}: needs q = [...] (rad|m, one per joint in the robot's order)")
    health = doc.get("health", "ok")
    if health not in ("ok", "stale", "lost"):
        raise WhatIfError(f"{where}: health must be ok, stale or lost, got {health!r}")
    q = _vector(doc["q"], None, f"{where}: q")
    qd = _vector(doc["qd"], len(q), f"{where}: qd") if "qd" in doc else None

    def std(key):
        v = doc.get(key, 0.0)
        return _vector(v, len(q), f"{where}: {key}") if isinstance(v, list) else _number(v, f"{where}: {key}")

    sq, sqd = std("std_q"), std("std_qd")
    if np.any(np.asarray(sq) < 0) or np.any(np.asarray(sqd) < 0):
        raise WhatIfError(f"{where}: std_q and std_qd must be >= 0")
    return BaseState.from_std(q, qd, std_q=sq, std_qd=sqd, health=health)


def _parse_variant(doc, where: str) -> Variant:
    _check_keys(doc, _VARIANT_KEYS, where)
    payload_docs = doc.get("payload", [])
    if isinstance(payload_docs, Mapping):
        payload_docs = [payload_docs]
    payloads = []
    for i, p in enumerate(payload_docs):
        w = f"{where} payload {i}"
        _check_keys(p, _PAYLOAD_KEYS, w)
        if "link" not in p or "mass" not in p:
            raise WhatIfError(f"{w}: needs link and mass (kg)")
        payloads.append(
            Payload(
                link=str(p["link"]),
                mass=_number(p["mass"], f"{w}: mass"),
                com=_vector(p.get("com", [0, 0, 0]), 3, f"{w}: com"),
                inertia=_vector(p.get("inertia", [0, 0, 0]), None, f"{w}: inertia"),
                known_to_controller=bool(_opt_bool(p, "known_to_controller", w)),
                size=_vector(p.get("size", [0, 0, 0]), 3, f"{w}: size (m)"),
            )
        )
    perturbation = None
    if "perturbation" in doc:
        p = doc["perturbation"]
        w = f"{where} perturbation"
        _check_keys(p, _PERTURBATION_KEYS, w)
        if "link" not in p:
            raise WhatIfError(f"{w}: needs link")
        perturbation = Perturbation(
            link=str(p["link"]),
            force=_vector(p.get("force", [0, 0, 0]), 3, f"{w}: force"),
            torque=_vector(p.get("torque", [0, 0, 0]), 3, f"{w}: torque"),
            point=_vector(p.get("point", [0, 0, 0]), 3, f"{w}: point"),
            start=_number(p.get("start", 0.0), f"{w}: start"),
            duration=_number(p.get("duration", 0.1), f"{w}: duration"),
        )
    kwargs: dict[str, Any] = {}
    for key in ("kp_scale", "kd_scale", "damping_scale", "friction_scale", "damping", "friction"):
        if key in doc:
            kwargs[key] = _joint_values(doc[key], f"{where}: {key}")
    for key in ("speed_scale", "latency"):
        if key in doc:
            kwargs[key] = _number(doc[key], f"{where}: {key}")
    gc = _opt_bool(doc, "gravity_compensation", where)
    return Variant(
        name=str(doc.get("name", f"variant {where.rsplit(' ', 1)[-1]}")),
        payloads=tuple(payloads),
        perturbation=perturbation,
        gravity_compensation=gc,
        **kwargs,
    )


# ---- running --------------------------------------------------------------------------------------------
def _command_columns(robot: RobotModel, names: Sequence[str], where: str) -> list[int]:
    unknown = [n for n in names if n not in robot.dof_names]
    if unknown:
        raise WhatIfError(
            f"{where} names joint(s) {unknown} that {robot.name} does not have; its joints are {list(robot.dof_names)}"
        )
    return [robot.dof_names.index(n) for n in names]


def _sample_command(
    robot, command, speed: float, steps: int, dt: float, hold: np.ndarray, feedforward: bool, ramp_s: float = 0.0
):
    """Targets ``[steps, ndof]`` and velocities (or None) of ``command`` at ``speed``; other joints hold ``hold``.

    A trajectory joined mid-way (``start`` after its first waypoint: the robot is already running it) changes
    speed over ``ramp_s`` seconds, linearly, as a robot's speed override does; started at its beginning (at
    rest) it runs at ``speed`` from the first step.
    """
    t = np.arange(steps) * dt
    q = np.broadcast_to(hold, (steps, robot.ndof)).copy()
    qd = np.zeros((steps, robot.ndof)) if feedforward else None
    if isinstance(command, TrajectoryCommand):
        traj = command.trajectory
        cols = _command_columns(robot, traj.joint_names, "the command trajectory")
        t0 = traj.start_time
        start = t0 if command.start is None else command.start
        if start > t0 and speed != 1.0 and ramp_s > 0:
            # program time tau(t) with the rate going from 1 to `speed` over ramp_s
            rate = 1.0 + (speed - 1.0) * np.minimum(t / ramp_s, 1.0)
            gained = np.where(t < ramp_s, (speed - 1.0) * t * t / (2.0 * ramp_s), (speed - 1.0) * (t - ramp_s / 2.0))
            tq, tqd, _ = traj.sample(start + t + gained)
            tqd = tqd * rate[:, None]
        else:
            scaled = traj.time_scaled(speed)
            tq, tqd, _ = scaled.sample(t0 + (start - t0) / speed + t)
        q[:, cols] = tq
        if qd is not None:
            qd[:, cols] = tqd
    else:
        cols = _command_columns(robot, command.joint_names, "the command stream")
        n = command.targets.shape[0]
        src_t = np.arange(n) * command.dt / speed
        for j, col in enumerate(cols):
            q[:, col] = np.interp(t, src_t, command.targets[:, j])
            if qd is not None and command.velocities is not None:
                qd[:, col] = np.interp(t, src_t, command.velocities[:, j]) * speed
    return q, qd


def _command_duration(command, speed: float) -> float:
    if isinstance(command, TrajectoryCommand):
        traj = command.trajectory
        start = traj.start_time if command.start is None else command.start
        return max(0.0, traj.end_time - start) / speed
    return (command.targets.shape[0] - 1) * command.dt / speed


def _initial_states(base: BaseState, robot: RobotModel, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    n = robot.ndof
    q = np.asarray(base.q, dtype=np.float64)
    qd = np.asarray(base.qd, dtype=np.float64)
    if q.shape != (n,) or qd.shape != (n,):
        raise WhatIfError(
            f"base state must have {n} positions and velocities ({list(robot.dof_names)}), got {q.shape} and {qd.shape}"
        )
    if not (np.all(np.isfinite(q)) and np.all(np.isfinite(qd))):
        raise WhatIfError("base state q/qd must be finite")
    if base.covariance is None or samples == 1:
        return q[None], qd[None], 1
    cov = np.asarray(base.covariance, dtype=np.float64)
    if cov.shape != (2 * n, 2 * n) or not np.all(np.isfinite(cov)):
        raise WhatIfError(f"base covariance must be a finite [{2 * n}, {2 * n}] matrix, got {cov.shape}")
    cov = 0.5 * (cov + cov.T)
    eigval, eigvec = np.linalg.eigh(cov)
    if eigval.min() < -1e-9 * max(1.0, abs(eigval.max())):
        raise WhatIfError(f"base covariance is not positive semi-definite (smallest eigenvalue {eigval.min():.3g})")
    root = eigvec * np.sqrt(np.clip(eigval, 0.0, None))  # cov = root @ root.T, robust for singular covariances
    z = np.random.default_rng(seed).standard_normal((samples - 1, 2 * n))
    x = np.concatenate([np.zeros((1, 2 * n)), z @ root.T]) + np.concatenate([q, qd])
    lower = np.where(np.isfinite(robot.lower), robot.lower, -np.inf)
    upper = np.where(np.isfinite(robot.upper), robot.upper, np.inf)
    qs = x[:, :n].copy()
    qs[1:] = np.clip(qs[1:], lower, upper)  # hard stops: a sample cannot start beyond them
    return qs, x[:, n:], samples


def run_scenario(
    engine, scenario: Scenario, *, base: TwinSnapshot | BaseState | None = None, progress=None, cancel=None
) -> WhatIfReport:
    """Run ``scenario`` on ``engine`` (see the module docstring) -> `WhatIfReport`.

    Raises:
        WhatIfError: names the scenario part at fault (unknown joint or link, bad base state, budget).
    """
    t_start = time.perf_counter()
    robot, s = engine.robot, engine.settings
    if scenario.robot and scenario.robot != robot.name:
        raise WhatIfError(
            f"scenario {scenario.name!r} is for robot {scenario.robot!r}, but this engine simulates {robot.name!r}"
        )
    dt = engine._check_dt(scenario.dt if scenario.dt is not None else s.dt)
    samples = scenario.samples if scenario.samples is not None else s.samples
    seed = scenario.seed if scenario.seed is not None else s.seed
    feedforward = s.velocity_feedforward if scenario.velocity_feedforward is None else scenario.velocity_feedforward
    gravcomp = s.gravity_compensation if scenario.gravity_compensation is None else scenario.gravity_compensation
    record_every = s.record_every if scenario.record_every is None else scenario.record_every
    if engine.has_clearance:  # the clearance check reads recorded states: record at least every interval
        every = max(1, int(round(s.clearance_interval_s / dt)))
        record_every = every if record_every == 0 or record_every > every else record_every

    if isinstance(base, TwinSnapshot):
        if tuple(base.model.dof_names) != tuple(robot.dof_names):
            raise WhatIfError(
                f"the snapshot's joints {list(base.model.dof_names)} are not this engine's {list(robot.dof_names)}"
            )
        base_state = BaseState.from_snapshot(base)
    elif isinstance(base, BaseState):
        base_state = base
    elif base is None:
        base_state = scenario.base
    else:
        raise WhatIfError(f"base must be a TwinSnapshot or BaseState, got {type(base).__name__}")
    base_label = "given"
    if base_state is None:
        hold = np.asarray(robot.drive_target, dtype=np.float64)
        q_start, _ = _sample_command(robot, scenario.command, 1.0, 1, dt, hold, False)
        base_state = BaseState(q_start[0], np.zeros(robot.ndof), None, "ok")
        base_label = "command start"
    else:
        base_label = base_state.health
    # the budget (memory; ranges) from the scenario's scalars, before any command or initial state is built
    plan_request(scenario, ndof=robot.ndof, settings=s, uncertain=base_state.covariance is not None)
    q0s, qd0s, samples = _initial_states(base_state, robot, samples, seed)

    speeds = sorted({v.speed_scale for v in scenario.variants})
    if scenario.duration is not None:
        duration = float(scenario.duration)
    else:
        duration = max(_command_duration(scenario.command, sp) for sp in speeds) + s.settle_time
    steps = max(1, int(round(duration / dt)))
    hold = base_state.q
    streams_q, streams_qd, outside = [], [], []
    tol = engine._model_arrays["pos_tol"]
    for sp in speeds:
        tq, tqd = _sample_command(robot, scenario.command, sp, steps, dt, hold, feedforward, ramp_s=s.speed_ramp_s)
        streams_q.append(tq)
        streams_qd.append(tqd)
        bad = ((tq < robot.lower - tol) | (tq > robot.upper + tol)).any(axis=0)
        outside.append(tuple(n for n, b in zip(robot.dof_names, bad, strict=False) if b))
    target_q = np.stack(streams_q)
    target_qd = np.stack(streams_qd) if feedforward else None

    nvar = len(scenario.variants)
    nworld = nvar * samples
    world_variant = np.repeat(np.arange(nvar, dtype=np.int32), samples)
    stream_of_variant = np.array([speeds.index(v.speed_scale) for v in scenario.variants], dtype=np.int32)
    sets = parameter_sets(robot, engine.tree, scenario.variants, dt=dt, gravity_compensation=gravcomp)
    t_wait = time.perf_counter()
    engine.wait_ready()  # the request's time excludes waiting for the engine's start-up
    t_start += time.perf_counter() - t_wait
    # with a scene, the recorded states' clearance comes back with the rollout (the workers check what they rolled out)
    result = engine._execute(
        sets,
        world_variant,
        stream_of_variant[world_variant],
        np.tile(q0s, (nvar, 1)),
        np.tile(qd0s, (nvar, 1)),
        target_q,
        target_qd,
        dt=dt,
        steps=steps,
        record_every=record_every,
        mode=kernels.MODE_ROLLOUT,
        progress=progress,
        cancel=cancel,
        clearance_variants=scenario.variants if engine.has_clearance else None,
    )
    rollout, clearance = result if engine.has_clearance else (result, None)
    trusted = base_state.health == "ok"
    age = (
        f" (last measurement {base_state.age_s:.2f} s ago)"
        if math.isfinite(base_state.age_s) and base_state.age_s
        else ""
    )
    untrusted = f"the base state is {base_state.health}{age}: the twin cannot vouch for it, so no verdict can pass"
    peak = None
    if isinstance(scenario.command, TrajectoryCommand):
        traj = scenario.command.trajectory
        peak = dict(zip(traj.joint_names, traj.peak_velocity(), strict=False))
    all_warnings, all_outside = [], []
    for variant in scenario.variants:
        warnings = []
        if not rollout.completed:
            warnings.append("cancelled before the end: statistics cover only the simulated part")
        if peak is not None:
            for joint, p in peak.items():
                lim = robot.velocity_limit[robot.dof_names.index(joint)]
                if p * variant.speed_scale > lim:
                    warnings.append(
                        f"the command itself moves {joint} at {p * variant.speed_scale:.3g} (peak), above its "
                        f"limit {lim:g}"
                    )
        all_warnings.append(warnings)
        all_outside.append(outside[speeds.index(variant.speed_scale)])
    verdicts = variant_verdicts(
        rollout,
        np.arange(nworld).reshape(nvar, samples),
        names=[v.name for v in scenario.variants],
        trusted=trusted,
        untrusted_reason=untrusted,
        confidence=s.confidence,
        max_violation_probability=s.max_violation_probability,
        command_outside_limits=all_outside,
        warnings=all_warnings,
        clearance=clearance,
    )
    if clearance is not None:
        verdicts = _with_first_contacts(
            verdicts, scenario.variants, samples, rollout, clearance, engine.clearance_checker()
        )
    return WhatIfReport(
        scenario=scenario.name,
        robot=robot.name,
        base_health=base_label,
        dt=dt,
        steps=steps,
        variants=tuple(verdicts),
        compute_seconds=rollout.compute_seconds,
        total_seconds=time.perf_counter() - t_start,
        rollout=rollout,
        world_variant=world_variant,
        prismatic=tuple(n for n, t in zip(robot.dof_names, robot.dof_type, strict=False) if t == JointType.PRISMATIC),
        clearance=clearance,
    )


def _with_first_contacts(verdicts, variants, samples: int, rollout, clearance, checker) -> list:
    """Add ``first_contact`` to each colliding variant's ``clearance``: the worst sample's first collision as
    ``{"time" s, "link", "obstacle", "point" [3] m world, "sample", "q" [ndof] rad|m}`` (the ghost's marker)."""
    out = []
    for v_index, v in enumerate(verdicts):
        hit = next((x for x in v.worst if x.kind == "collision"), None)
        if hit is None:
            out.append(v)
            continue
        w = v_index * samples + v.worst_sample
        r = int(np.argmin(np.abs(clearance.t - hit.time)))
        link = clearance.link_names.index(hit.joint)
        obstacle = clearance.obstacles.index(hit.obstacle)
        q = np.asarray(rollout.q[w, r], dtype=np.float64)
        point = checker.contact_point(q, link, obstacle, payloads=variants[v_index].payloads)
        contact = {
            "time": hit.time,
            "link": hit.joint,
            "obstacle": hit.obstacle,
            "point": [float(x) for x in point],
            "sample": v.worst_sample,
            "q": [float(x) for x in q],
        }
        out.append(dataclasses.replace(v, clearance={**v.clearance, "first_contact": contact}))
    return out
