"""Twin configuration: one frozen dataclass per section, loaded from TOML or from Kit's settings tree.

Standalone runs read ``config/twin.toml``; inside Kit the same keys live under ``/exts/twin_ext/<section>/``
(see extension.toml) and `twin_ext.kit` passes that subtree to `TwinConfig.from_mapping`. Every key is
documented in docs/SETTINGS.md. Unknown sections or keys are errors that name the valid ones — a typo in
a config file must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

__all__ = [
    "ConfigError",
    "RobotSettings",
    "TwinConfig",
    "section_from_mapping",
    "load_config",
    "default_config_path",
    "settings_sections",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key that cannot be used; the message names it and the valid choices."""


def section_from_mapping(
    cls: type[T], mapping: Mapping[str, Any] | None, *, section: str, error: type[Exception] = ConfigError
) -> T:
    """Build the settings dataclass ``cls`` from ``mapping``, rejecting unknown keys and wrong types.

    Types must match the field's default exactly (a bool is not an int), except that an int is accepted for a
    float and a list for a tuple (TOML and carb produce them). Problems raise ``error`` (e.g. a module's own
    settings error) with a message naming the section, the key and the valid keys.
    """
    mapping = dict(mapping or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(mapping) - set(known))
    if unknown:
        raise error(f"[{section}] has unknown key(s) {unknown}; valid keys: {list(known)}")
    values = {}
    for name, value in mapping.items():
        default = known[name].default
        expected = type(default) if default is not dataclasses.MISSING and default is not None else None
        if expected is float and type(value) is int:
            value = float(value)
        elif expected is tuple and isinstance(value, list):
            value = tuple(value)
        if expected is not None and type(value) is not expected:
            raise error(f"[{section}] {name} must be {expected.__name__}, got {type(value).__name__} {value!r}")
        values[name] = value
    try:
        return cls(**values)
    except error:
        raise
    except (TypeError, ValueError) as exc:
        raise error(f"[{section}] {exc}") from None


@dataclasses.dataclass(frozen=True)
class RobotSettings:
    """``[robot]``: which robot the twin mirrors."""

    usd: str = ""
    """Robot USD file; "" means the shipped Franka Panda (usd/franka_panda/panda.usda)."""
    prim_path: str = ""
    """Articulation root to read when the file holds several robots; "" = the only one."""
    robot_id: str = "panda"
    """Robot id in MQTT topics ``twin/v1/<robot_id>/...``; "" = follow the first robot heard from."""

    def __post_init__(self) -> None:
        if any(c in self.robot_id for c in "/+# "):
            raise ValueError(f"robot_id {self.robot_id!r} must be free of '/', '+', '#' and spaces")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> RobotSettings:
        return section_from_mapping(cls, mapping, section="robot")

    def resolved_usd(self, base: Path | None = None) -> str:
        """Absolute robot USD path (relative paths resolve against ``base``, default the repository)."""
        from .robot import default_robot_path

        if not self.usd:
            return default_robot_path()
        path = Path(self.usd).expanduser()
        if not path.is_absolute():
            path = (base or Path(__file__).resolve().parents[1]) / path
        return str(path)


@dataclasses.dataclass(frozen=True)
class TwinConfig:
    """All sections. Sections owned by other modules are kept as raw mappings here and parsed by them."""

    robot: RobotSettings = dataclasses.field(default_factory=RobotSettings)
    sections: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """The other sections (broker, telemetry, clock, estimator, twin, whatif, kit, emulator) as given."""

    KNOWN_SECTIONS = ("robot", "broker", "telemetry", "clock", "estimator", "twin", "whatif", "kit", "emulator")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> TwinConfig:
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - set(cls.KNOWN_SECTIONS))
        if unknown:
            raise ConfigError(f"unknown config section(s) {unknown}; valid sections: {list(cls.KNOWN_SECTIONS)}")
        for name, value in mapping.items():
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{name}] must be a table of settings, got {type(value).__name__}")
        robot = RobotSettings.from_mapping(mapping.pop("robot", None))
        return cls(robot=robot, sections={k: dict(v) for k, v in mapping.items()})

    def section(self, name: str) -> Mapping[str, Any]:
        """The raw mapping of section ``name`` ({} if absent)."""
        if name not in self.KNOWN_SECTIONS:
            raise ConfigError(f"unknown config section {name!r}; valid sections: {list(self.KNOWN_SECTIONS)}")
        return self.sections.get(name, {})


def default_config_path() -> Path:
    """``config/twin.toml`` in the extension folder."""
    return Path(__file__).resolve().parents[1] / "config" / "twin.toml"


def load_config(path: str | Path | None = None) -> TwinConfig:
    """Read a twin TOML config (default `default_config_path`)."""
    path = Path(path) if path else default_config_path()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"config file not found: {path}; fix: pass an existing file or omit it for defaults"
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}") from None
    return TwinConfig.from_mapping(data)


def settings_sections() -> dict[str, type]:
    """``{section: settings dataclass}`` of every section Kit exposes under ``exts."twin_ext"``, in order.

    The dataclasses are the single source of truth for names, types and defaults; extension.toml's
    ``[settings]`` block is generated from them (tools/sync_settings.py) and docs/SETTINGS.md documents them.
    """
    from .estimation import EstimatorSettings
    from .kit.controller import KitSettings
    from .telemetry import BrokerSettings, ClockSettings, TelemetrySettings
    from .twin import TwinSettings
    from .whatif import WhatIfSettings

    return {
        "robot": RobotSettings,
        "broker": BrokerSettings,
        "telemetry": TelemetrySettings,
        "clock": ClockSettings,
        "estimator": EstimatorSettings,
        "twin": TwinSettings,
        "whatif": WhatIfSettings,
        "kit": KitSettings,
    }
