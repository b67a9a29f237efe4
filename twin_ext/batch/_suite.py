# SPDX-License-Identifier: Apache-2.0
"""A suite file (TOML) and its expansion into jobs: recordings x robots, impairment x fault profiles, scenarios.

The format is documented in docs/batch.md. Paths in a suite are relative to the suite file; names without a
``.toml``/``.usda`` suffix are looked up among the shipped files (``config/impairments``, ``config/faults``,
``config/scenarios``). A ``[[sweep]]`` is one job whose grid of variants runs in batches (`twin_ext.batch._sweep`).
"""

from __future__ import annotations

import glob
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import TwinExtError, __version__
from .._paths import config_dir, impairments_dir, scenarios_dir
from ..config import check_keys, load_toml

__all__ = ["CHECK_KEYS", "Job", "Suite", "SuiteError", "load_suite"]


class SuiteError(TwinExtError, ValueError):
    """A suite file that cannot be expanded; the message names the key or file and the fix."""


CHECK_KEYS = {
    "max_fidelity_ratio": "twin RMS / last-sample-hold RMS against the plant's truth must be at most this",
    "max_twin_rms_mrad": "the twin's RMS error against the plant's truth must be at most this, mrad",
    "expect_events": 'health event kinds that must be raised (e.g. ["collision"])',
    "forbid_events": "health event kinds that must not be raised",
    "expect_verdict": "the what-if verdict every job of the group must reach: pass | fail | unknown",
    "verdicts": 'expected what-if verdict per scenario name, e.g. {speed_payload_check = "pass"}',
    "max_warnings": "most replay warnings (ROS 2 joint matching, skipped channels) allowed",
    "max_fail_fraction": "largest fraction of the what-if variants allowed to fail (sweeps: e.g. 0.25)",
    "clearance": "[[checks.clearance]] tables: scenario, variant, min_distance_m, collision (true/false), link, obstacle",
}
CLEARANCE_KEYS = {
    "scenario": "only jobs of this scenario (its file name without .toml); default every job of the group",
    "variant": "only this variant (its name); default every variant",
    "min_distance_m": "the closest approach over the samples must be at least this, m",
    "collision": "true: a collision must be predicted; false: none may be",
    "link": "with collision: of this link (e.g. hand)",
    "obstacle": "with collision: with this prim (a scene collider, e.g. /Cell/Fixture, or another link's prim)",
}
_GROUP_KEYS = {
    "replay": (
        "recordings", "whatif", "whatif_at_s", "samples", "scene", "joint_map", "config", "ros2_topic", "robot_id",
        "checks",
    ),
    "emulate": ("impairments", "faults", "duration_s", "seeds", "whatif", "whatif_at_s", "samples", "scene", "checks"),
    "whatif": ("scenarios", "samples", "seed", "scene", "checks"),
    "sweep": (
        "scenario", "grid", "batch", "samples", "seed", "duration", "payload_link", "payload_com", "scene", "checks",
    ),
}  # fmt: skip
_MAX_SWEEP = 1_000_000
_SUITE_KEYS = ("name", "description", "robots", *_GROUP_KEYS)


@dataclass(frozen=True)
class Job:
    """One unit of a suite: what to run (``kind`` and ``params``, JSON-able) and the checks that judge it.

    ``inputs`` are the files the job reads; their contents go into `key`, so an edited recording or
    scenario is run again on resume while an unchanged job is taken from the cache.
    """

    kind: str
    name: str
    params: dict[str, Any]
    checks: dict[str, Any]
    inputs: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "params": self.params, "checks": self.checks}

    @property
    def key(self) -> str:
        """Hex digest of what decides the result: the job, its input files' bytes and the twin_ext version."""
        h = hashlib.sha256(json.dumps([self.to_dict(), __version__], sort_keys=True).encode())
        for path in self.inputs:
            try:
                h.update(Path(path).read_bytes())
            except OSError:
                h.update(b"<missing>" + path.encode())
        return h.hexdigest()[:20]


@dataclass
class Suite:
    """A parsed suite: its name, source file and jobs."""

    name: str
    path: Path
    description: str
    jobs: list[Job] = field(default_factory=list)


def _list(value: Any, where: str) -> list:
    if isinstance(value, (str, int, float)):
        return [value]
    if not isinstance(value, list):
        raise SuiteError(f"{where} must be a list (or one value), got {type(value).__name__}")
    return value


def _shipped_or_path(value: str, base: Path, folder: Path, where: str) -> Path:
    """``value`` as a path relative to the suite, or the shipped ``folder/<value>.toml``."""
    candidate = (base / value).resolve()
    if candidate.is_file():
        return candidate
    shipped = folder / f"{value}.toml"
    if shipped.is_file():
        return shipped
    names = sorted(p.stem for p in folder.glob("*.toml"))
    raise SuiteError(f"{where}: {value!r} is neither a file (relative to the suite) nor one of the shipped {names}")


def _lenient(value: str, base: Path, folder: Path, where: str) -> str:
    """Like `_shipped_or_path`, but a missing file stays a path: the job that needs it fails with the reason,
    the rest of the suite runs."""
    try:
        return str(_shipped_or_path(value, base, folder, where))
    except SuiteError:
        return value


def _checks(group: dict, where: str) -> dict[str, Any]:
    checks = group.get("checks", {})
    if not isinstance(checks, dict):
        raise SuiteError(f"{where}.checks must be a table of checks ({sorted(CHECK_KEYS)})")
    check_keys(checks, CHECK_KEYS, where=f"{where}.checks", error=SuiteError)
    for key in ("expect_events", "forbid_events"):
        if key in checks:
            checks[key] = [str(x) for x in _list(checks[key], f"{where}.checks.{key}")]
    if "clearance" in checks:
        specs = checks["clearance"]
        specs = [specs] if isinstance(specs, dict) else specs
        if not isinstance(specs, list) or not all(isinstance(x, dict) for x in specs):
            raise SuiteError(
                f"{where}.checks.clearance must be [[...checks.clearance]] tables ({sorted(CLEARANCE_KEYS)})"
            )
        out = []
        for i, spec in enumerate(specs):
            w = f"{where}.checks.clearance {i + 1}"
            check_keys(spec, CLEARANCE_KEYS, where=w, error=SuiteError)
            if "min_distance_m" not in spec and "collision" not in spec:
                raise SuiteError(f"{w}: says nothing to check; fix: give min_distance_m (m) or collision = true/false")
            if "collision" in spec and not isinstance(spec["collision"], bool):
                raise SuiteError(f"{w}.collision must be true or false")
            if ("link" in spec or "obstacle" in spec) and "collision" not in spec:
                raise SuiteError(f"{w}: link/obstacle qualify a collision check; fix: add collision = true (or false)")
            if "min_distance_m" in spec:
                spec["min_distance_m"] = _number(spec["min_distance_m"], f"{w}.min_distance_m")
            out.append(
                {k: (str(v) if k in ("scenario", "variant", "link", "obstacle") else v) for k, v in spec.items()}
            )
        checks["clearance"] = out
    if "max_fail_fraction" in checks:
        value = _number(checks["max_fail_fraction"], f"{where}.checks.max_fail_fraction")
        if not 0.0 <= value <= 1.0:
            raise SuiteError(f"{where}.checks.max_fail_fraction {value} must be in [0, 1]")
    return checks


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise SuiteError(f"{where} must be a number, got {value!r}")
    return float(value)


def _scene_param(group: dict, base: Path) -> dict[str, str]:
    """``{"scene": path}`` when the group names a scene (a USD file relative to the suite), else ``{}`` (so jobs
    without one keep their parameters, and their cache keys)."""
    value = str(group.get("scene", ""))
    if not value:
        return {}
    return {"scene": str((base / value).resolve())}


def _robots(doc: dict, base: Path) -> list[str]:
    robots = []
    for value in _list(doc.get("robots", ["default"]), "robots"):
        if value in ("default", ""):
            robots.append("")
            continue
        path = (base / str(value)).resolve()
        if not path.is_file():
            raise SuiteError(f'robots: {value!r} is not a file (paths are relative to the suite); use "default"')
        robots.append(str(path))
    return robots


def _label(robot: str) -> str:
    return Path(robot).stem if robot else "default"


def _scenario(value: str, base: Path, where: str) -> tuple[str, tuple[str, ...]]:
    """A scenario given by name (shipped) or path -> (what load_scenario takes, input files)."""
    if value == "none":
        return "none", ()
    path = _lenient(value, base, scenarios_dir(), where)
    return path, (path,)


def load_suite(path: str | Path) -> Suite:
    """Parse a suite file and expand it into jobs.

    Raises:
        SuiteError: an unknown key (with "did you mean"), a glob that matches nothing, a missing profile or
            scenario; each names the place in the file and the fix.
    """
    path = Path(path)
    if not path.is_file():
        raise SuiteError(f"suite file not found: {path}; fix: give a TOML file (examples in config/suites/)")
    try:
        doc = load_toml(path, what="suite file")
    except TwinExtError as exc:
        raise SuiteError(str(exc)) from None
    check_keys(doc, _SUITE_KEYS, where=path.name, error=SuiteError)
    base = path.parent.resolve()
    name = str(doc.get("name") or path.stem)
    if not name.replace("-", "").replace("_", "").isalnum():
        raise SuiteError(f"{path.name}: name {name!r} must be letters, digits, '-' and '_' (it names a folder)")
    robots = _robots(doc, base)
    jobs: list[Job] = []
    for kind in _GROUP_KEYS:
        groups = doc.get(kind, [])
        if isinstance(groups, dict):
            groups = [groups]
        for gi, group in enumerate(_list(groups, kind)):
            where = f"{path.name}: [[{kind}]] {gi + 1}"
            if not isinstance(group, dict):
                raise SuiteError(f"{where} must be a table")
            check_keys(group, _GROUP_KEYS[kind], where=where, error=SuiteError)
            checks = _checks(dict(group), where)
            jobs.extend(_EXPAND[kind](group, checks, robots, base, where))
    if not jobs:
        raise SuiteError(
            f"{path.name} expands to no jobs; fix: add a [[replay]], [[emulate]], [[whatif]] or [[sweep]] table"
        )
    seen: dict[str, str] = {}
    keys: set[str] = set()
    unique = []
    for job in jobs:
        key = job.key
        if key in keys:  # the same job (params and checks) listed twice runs once
            continue
        keys.add(key)
        if job.name in seen:  # same inputs, other checks: a name of its own
            job = Job(job.kind, f"{job.name}~{key[:6]}", job.params, job.checks, job.inputs)
        seen[job.name] = key
        unique.append(job)
    return Suite(name=name, path=path, description=str(doc.get("description", "")), jobs=unique)


def _config_joint_map(value: str, base: Path, where: str) -> tuple[str, dict[str, str]]:
    """A twin config file (relative to the suite) -> (its path, its ``[telemetry] ros2_joint_map`` as a dict)."""
    from .. import TwinExtError
    from ..live import load_config
    from ..runs import parse_joint_map

    path = (base / value).resolve()
    if not path.is_file():
        raise SuiteError(f"{where}: {value!r} is not a file (relative to the suite); fix: a twin config TOML")
    try:
        return str(path), parse_joint_map(load_config(path).telemetry.ros2_joint_map)
    except TwinExtError as exc:
        raise SuiteError(f"{where}: {exc}") from None


def _expand_replay(group, checks, robots, base, where) -> list[Job]:
    files: list[str] = []
    for pattern in _list(group.get("recordings", []), f"{where}.recordings"):
        full = str(base / str(pattern))
        matched = sorted(glob.glob(full, recursive=True))
        if not matched and not glob.has_magic(full):
            matched = [str(Path(full).resolve())]  # a missing file becomes a failed job, not a refused suite
        if not matched:
            raise SuiteError(f"{where}: recordings pattern {pattern!r} matches no file (relative to the suite)")
        files.extend(str(Path(m).resolve()) for m in matched)
    if not files:
        raise SuiteError(f"{where}: recordings is empty; fix: list files or globs of MCAP recordings / ROS 2 bags")
    scenario, scenario_inputs = _scenario(str(group.get("whatif", "none")), base, f"{where}.whatif")
    joint_map = group.get("joint_map", {})
    if not isinstance(joint_map, dict):
        raise SuiteError(f'{where}.joint_map must be a table {{bag_name = "model_name"}}')
    config_inputs: tuple[str, ...] = ()
    if group.get("config"):  # a twin config: its [telemetry] ros2_joint_map, under the group's joint_map
        config_path, config_map = _config_joint_map(str(group["config"]), base, f"{where}.config")
        joint_map = {**config_map, **joint_map}
        config_inputs = (config_path,)
    scene = _scene_param(group, base)
    jobs = []
    for robot in robots:
        for f in files:
            params = {
                **scene,
                "recording": f,
                "robot": robot,
                "whatif": scenario,
                "whatif_at_s": group.get("whatif_at_s"),
                "samples": int(group.get("samples", 8)),
                "joint_map": {str(k): str(v) for k, v in joint_map.items()},
                "ros2_topic": str(group.get("ros2_topic", "")),
                "robot_id": str(group.get("robot_id", "")),
            }
            name = f"replay/{Path(f).name}@{_label(robot)}" + (f"+{Path(scenario).stem}" if scenario != "none" else "")
            inputs = (f, *scenario_inputs, *scene.values(), *config_inputs, *([robot] if robot else []))
            jobs.append(Job("replay", name, params, checks, inputs))
    return jobs


def _expand_emulate(group, checks, robots, base, where) -> list[Job]:
    imps = [
        _lenient(str(v), base, impairments_dir(), f"{where}.impairments")
        for v in _list(group.get("impairments", ["standard"]), f"{where}.impairments")
    ]
    faults = [
        "none" if v == "none" else _lenient(str(v), base, config_dir() / "faults", f"{where}.faults")
        for v in _list(group.get("faults", ["none"]), f"{where}.faults")
    ]
    seeds = [int(s) for s in _list(group.get("seeds", [0]), f"{where}.seeds")]
    duration = float(group.get("duration_s", 10.0))
    if not 1.0 <= duration <= 3600.0:
        raise SuiteError(f"{where}.duration_s {duration} must be in [1, 3600] s")
    scenario, scenario_inputs = _scenario(str(group.get("whatif", "none")), base, f"{where}.whatif")
    scene = _scene_param(group, base)
    jobs = []
    for robot in robots:
        for imp in imps:
            for fault in faults:
                for seed in seeds:
                    params = {
                        **scene,
                        "robot": robot,
                        "impairments": imp,
                        "faults": fault,
                        "duration_s": duration,
                        "seed": seed,
                        "whatif": scenario,
                        "whatif_at_s": group.get("whatif_at_s"),
                        "samples": int(group.get("samples", 8)),
                    }
                    name = f"emulate/{Path(imp).stem}+{Path(fault).stem}@{_label(robot)}#seed{seed}"
                    inputs = (imp, *([fault] if fault != "none" else []), *scenario_inputs, *scene.values())
                    inputs = (*inputs, *([robot] if robot else []))
                    jobs.append(Job("emulate", name, params, checks, inputs))
    return jobs


def _check_clearance_scenarios(checks, stems: list[str], where: str) -> None:
    for spec in checks.get("clearance", []):
        if spec.get("scenario") and spec["scenario"] not in stems:
            raise SuiteError(
                f"{where}.checks.clearance: scenario {spec['scenario']!r} is not one of this group's {stems}"
            )


def _expand_whatif(group, checks, robots, base, where) -> list[Job]:
    scene = _scene_param(group, base)
    values = [str(v) for v in _list(group.get("scenarios", []), f"{where}.scenarios")]
    _check_clearance_scenarios(checks, [Path(v).stem for v in values], where)
    jobs = []
    for value in values:
        scenario, inputs = _scenario(value, base, f"{where}.scenarios")
        for robot in robots:
            params = {
                **scene,
                "scenario": scenario,
                "robot": robot,
                "samples": group.get("samples"),
                "seed": group.get("seed"),
            }
            name = f"whatif/{Path(value).stem}@{_label(robot)}"
            jobs.append(Job("whatif", name, params, checks, (*inputs, *scene.values(), *([robot] if robot else []))))
    return jobs


def _expand_sweep(group, checks, robots, base, where) -> list[Job]:
    from ._sweep import DEFAULT_BATCH, GRID_KEYS, grid_size

    if "scenario" not in group:
        raise SuiteError(f"{where}: a sweep needs scenario = <name or file>: its command, base state and dt")
    value = str(group["scenario"])
    _check_clearance_scenarios(checks, [Path(value).stem], where)
    scenario, inputs = _scenario(value, base, f"{where}.scenario")
    doc = group.get("grid")
    if not isinstance(doc, dict) or not doc:
        raise SuiteError(f"{where}: a sweep needs a [sweep.grid] table of lists ({sorted(GRID_KEYS)})")
    check_keys(doc, GRID_KEYS, where=f"{where}.grid", error=SuiteError)
    grid = {}
    for key in GRID_KEYS:
        if key not in doc:
            continue
        values = [_number(x, f"{where}.grid.{key}") for x in _list(doc[key], f"{where}.grid.{key}")]
        if not values or len(set(values)) != len(values):
            raise SuiteError(f"{where}.grid.{key} must list distinct numbers, got {doc[key]!r}")
        if min(values) < 0 or (key == "speed_scale" and min(values) <= 0):
            raise SuiteError(f"{where}.grid.{key} must be {'> 0' if key == 'speed_scale' else '>= 0'}: {values}")
        grid[key] = values
    n = grid_size(grid)
    if n > _MAX_SWEEP:
        raise SuiteError(f"{where}: the grid has {n} variants, more than {_MAX_SWEEP}; fix: fewer values per key")
    batch = group.get("batch", DEFAULT_BATCH)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise SuiteError(f"{where}.batch must be an integer >= 1 (variants per task), got {batch!r}")
    com = [
        _number(x, f"{where}.payload_com")
        for x in _list(group.get("payload_com", [0.0, 0.0, 0.0]), f"{where}.payload_com")
    ]
    if len(com) != 3:
        raise SuiteError(f"{where}.payload_com must be [x, y, z] m in the link frame")
    duration = group.get("duration")
    if duration is not None and not _number(duration, f"{where}.duration") > 0:
        raise SuiteError(f"{where}.duration must be > 0 s (simulated time), got {duration!r}")
    scene = _scene_param(group, base)
    jobs = []
    for robot in robots:
        params = {
            **scene,
            "scenario": scenario,
            "robot": robot,
            "grid": grid,
            "batch": int(batch),
            "samples": group.get("samples"),
            "seed": group.get("seed"),
            "duration": duration,
            "payload_link": str(group.get("payload_link", "hand")),
            "payload_com": com,
        }
        name = f"sweep/{Path(value).stem}x{n}@{_label(robot)}"
        jobs.append(Job("sweep", name, params, checks, (*inputs, *scene.values(), *([robot] if robot else []))))
    return jobs


_EXPAND = {"replay": _expand_replay, "emulate": _expand_emulate, "whatif": _expand_whatif, "sweep": _expand_sweep}
