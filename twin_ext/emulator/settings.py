"""`EmulatorSettings`: how the emulated robot is built and how it talks (``[emulator]`` in config/twin.toml).

Every key is documented in docs/SETTINGS.md, section "Emulator". Network and sensor impairments are a
separate profile (`ImpairmentProfile`, ``config/impairments/*.toml``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_PROGRAM", "EmulatorSettings", "EmulatorSettingsError", "REPO_ROOT"]

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PROGRAM = REPO_ROOT / "data" / "scenarios" / "pick_place.toml"
_ROBOT_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
_TOKEN = re.compile(r"[\x21-\x7e]{1,64}\Z")


class EmulatorSettingsError(ValueError):
    """A setting with a bad value or an unknown key; the message names it and the valid ones."""


@dataclass(frozen=True)
class EmulatorSettings:
    """Settings of the emulated robot (SI units unless the name says otherwise)."""

    robot_id: str = "panda"
    model_id: str = "franka_panda"
    mjcf: str = ""
    program: str = ""
    loop: bool = True
    codec: str = "json"
    qos: int = 0
    topic_prefix: str = "twin/v1"
    client_id: str = ""
    keepalive: int = 5
    accept_commands: bool = False
    max_speed_override: float = 1.0
    ramp_time: float = 0.3
    timestep: float = 0.001
    gravity_compensation: bool = True
    velocity_feedforward: bool = True
    publish_velocity: bool = True
    publish_effort: bool = True
    truth_rate_hz: float = 1000.0

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object], *, source: str = "[emulator]") -> EmulatorSettings:
        """Settings from a table (e.g. ``[emulator]`` of config/twin.toml); unknown keys are rejected."""
        if not isinstance(mapping, Mapping):
            raise EmulatorSettingsError(f"{source}: expected a table, got {type(mapping).__name__}")
        unknown = sorted(set(mapping) - set(cls.keys()))
        if unknown:
            raise EmulatorSettingsError(f"{source}: unknown key(s) {unknown}; valid keys are {list(cls.keys())}")
        kwargs: dict[str, object] = {}
        for f in dataclasses.fields(cls):
            if f.name not in mapping:
                continue
            value = mapping[f.name]
            if f.type == "float" and isinstance(value, int) and not isinstance(value, bool):
                value = float(value)
            kwargs[f.name] = value
        try:
            return cls(**kwargs)
        except EmulatorSettingsError as exc:
            raise EmulatorSettingsError(f"{source}: {exc}") from None

    def replace(self, **changes: object) -> EmulatorSettings:
        return dataclasses.replace(self, **changes)

    @property
    def mjcf_path(self) -> Path | None:
        """The plant's MJCF (None: the Panda default); relative paths are from the repository root."""
        return _resolve(self.mjcf) if self.mjcf else None

    @property
    def program_path(self) -> Path:
        """The program trajectory TOML; relative paths are from the repository root."""
        return _resolve(self.program) if self.program else DEFAULT_PROGRAM

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"twin-emulator-{self.robot_id}"


def _resolve(path: str) -> Path:
    p = Path(path).expanduser()
    if p.is_absolute() or p.exists():
        return p
    return REPO_ROOT / p


def _check(s: EmulatorSettings) -> None:
    types = {f.name: f.type for f in dataclasses.fields(s)}
    for name, typ in types.items():
        value = getattr(s, name)
        ok = {
            "str": isinstance(value, str),
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value),
        }[typ]
        if not ok:
            kind = {"str": "a string", "bool": "true or false", "int": "an integer", "float": "a finite number"}[typ]
            raise EmulatorSettingsError(f"{name} must be {kind}, got {value!r}")
    if not _ROBOT_ID.match(s.robot_id):
        raise EmulatorSettingsError(
            f"robot_id {s.robot_id!r} must be 1-64 characters of [A-Za-z0-9_.-] (it is a topic level)"
        )
    if not _TOKEN.match(s.model_id):
        raise EmulatorSettingsError(f"model_id {s.model_id!r} must be 1-64 printable ASCII characters without spaces")
    if s.codec not in ("json", "binary"):
        raise EmulatorSettingsError(f"codec must be 'json' or 'binary', got {s.codec!r}")
    if s.qos not in (0, 1, 2):
        raise EmulatorSettingsError(f"qos must be 0, 1 or 2, got {s.qos!r}")
    if (
        not s.topic_prefix
        or any(c in s.topic_prefix for c in "+#")
        or s.topic_prefix.startswith("/")
        or s.topic_prefix.endswith("/")
    ):
        raise EmulatorSettingsError(
            f"topic_prefix {s.topic_prefix!r} must be non-empty, without + or #, and not start/end with /"
        )
    if not 1 <= s.keepalive <= 3600:
        raise EmulatorSettingsError(f"keepalive must be in [1, 3600] s, got {s.keepalive}")
    if not 0.0 < s.max_speed_override <= 2.0:
        raise EmulatorSettingsError(f"max_speed_override must be in (0, 2], got {s.max_speed_override:g}")
    if not 0.0 < s.ramp_time <= 10.0:
        raise EmulatorSettingsError(f"ramp_time must be in (0, 10] s, got {s.ramp_time:g}")
    if not 1e-5 <= s.timestep <= 1e-2:
        raise EmulatorSettingsError(
            f"timestep must be in [1e-5, 1e-2] s, got {s.timestep:g} (the Panda's loop is 1e-3)"
        )
    if not 0.0 <= s.truth_rate_hz <= 1.0 / s.timestep + 1e-9:
        raise EmulatorSettingsError(
            f"truth_rate_hz must be in [0, {1.0 / s.timestep:g}] Hz (0 = no recorded truth), got {s.truth_rate_hz:g}"
        )
