# SPDX-License-Identifier: Apache-2.0
"""A suite file (TOML) and its expansion into jobs: recordings x robots, impairment x fault profiles, scenarios.

The format is documented in docs/batch.md. Paths in a suite are relative to the suite file; names without a
``.toml``/``.usda`` suffix are looked up among the shipped files (``config/impairments``, ``config/faults``,
``config/scenarios``).
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
}
_GROUP_KEYS = {
    "replay": ("recordings", "whatif", "whatif_at_s", "samples", "joint_map", "ros2_topic", "robot_id", "checks"),
    "emulate": ("impairments", "faults", "duration_s", "seeds", "whatif", "whatif_at_s", "samples", "checks"),
    "whatif": ("scenarios", "samples", "seed", "checks"),
}
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
    return checks


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
        raise SuiteError(f"{path.name} expands to no jobs; fix: add a [[replay]], [[emulate]] or [[whatif]] table")
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
    jobs = []
    for robot in robots:
        for f in files:
            params = {
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
            jobs.append(Job("replay", name, params, checks, (f, *scenario_inputs, *([robot] if robot else []))))
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
    jobs = []
    for robot in robots:
        for imp in imps:
            for fault in faults:
                for seed in seeds:
                    params = {
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
                    inputs = (imp, *([fault] if fault != "none" else []), *scenario_inputs, *([robot] if robot else []))
                    jobs.append(Job("emulate", name, params, checks, inputs))
    return jobs


def _expand_whatif(group, checks, robots, base, where) -> list[Job]:
    jobs = []
    for value in _list(group.get("scenarios", []), f"{where}.scenarios"):
        scenario, inputs = _scenario(str(value), base, f"{where}.scenarios")
        for robot in robots:
            params = {"scenario": scenario, "robot": robot, "samples": group.get("samples"), "seed": group.get("seed")}
            name = f"whatif/{Path(str(value)).stem}@{_label(robot)}"
            jobs.append(Job("whatif", name, params, checks, (*inputs, *([robot] if robot else []))))
    return jobs


_EXPAND = {"replay": _expand_replay, "emulate": _expand_emulate, "whatif": _expand_whatif}
