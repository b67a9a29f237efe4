# SPDX-License-Identifier: Apache-2.0
"""`TwinConfig`: every section a live twin reads, parsed and checked, and the registry of those sections.

Standalone runs read ``config/twin.toml``; inside Kit the same keys live under ``/exts/twin_ext/<section>/``
(extension.toml) and the Kit skin passes that subtree, with its own ``[kit]`` section added through
``extra_sections``. Every key is documented in docs/SETTINGS.md. Unknown sections or keys are errors that
name the valid ones: a typo in a config file must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .._paths import default_config_file
from ..config import ConfigError, check_keys, load_toml
from ..control import ControlSettings
from ..estimation import EstimatorSettings
from ..health import HealthSettings
from ..robot import RobotSettings
from ..telemetry import BrokerSettings, ClockSettings, TelemetrySettings
from ..whatif import WhatIfSettings
from ._remote_whatif import RemoteWhatIfSettings
from ._twin import TwinSettings

__all__ = ["OTHER_PROGRAM_SECTIONS", "TWIN_SECTIONS", "TwinConfig", "load_config"]

TWIN_SECTIONS: Mapping[str, type] = MappingProxyType(
    {
        "robot": RobotSettings,
        "broker": BrokerSettings,
        "telemetry": TelemetrySettings,
        "clock": ClockSettings,
        "estimator": EstimatorSettings,
        "twin": TwinSettings,
        "whatif": WhatIfSettings,
        "remote_whatif": RemoteWhatIfSettings,
        "health": HealthSettings,
        "control": ControlSettings,
    }
)
"""``{section: settings dataclass}`` of every section the live twin reads, in documentation order. The
dataclasses are the single source of names, types and defaults (extension.toml's ``[settings]`` block is
generated from them; the Kit skin adds ``kit``)."""

OTHER_PROGRAM_SECTIONS = ("emulator", "history", "fleet")
"""Sections a twin config file may carry for other programs (``python -m twin_ext.emulator --config``
reads ``[emulator]``; the fleet twin, `twin_ext.fleet`, reads ``[history]`` and ``[fleet]``); the twin keeps them
unparsed in `TwinConfig.other`."""


@dataclasses.dataclass(frozen=True)
class TwinConfig:
    """The parsed configuration of one live twin (one attribute per section of `TWIN_SECTIONS`).

    ``telemetry.robot_id`` is ``robot.robot_id`` unless ``[telemetry] robot_id`` is set: ``[robot]`` is where
    users name the robot, ``[telemetry]`` only overrides which robot's topics are followed.
    """

    robot: RobotSettings = dataclasses.field(default_factory=RobotSettings)
    broker: BrokerSettings = dataclasses.field(default_factory=BrokerSettings)
    telemetry: TelemetrySettings = dataclasses.field(default_factory=TelemetrySettings)
    clock: ClockSettings = dataclasses.field(default_factory=ClockSettings)
    estimator: EstimatorSettings = dataclasses.field(default_factory=EstimatorSettings)
    twin: TwinSettings = dataclasses.field(default_factory=TwinSettings)
    whatif: WhatIfSettings = dataclasses.field(default_factory=WhatIfSettings)
    remote_whatif: RemoteWhatIfSettings = dataclasses.field(default_factory=RemoteWhatIfSettings)
    health: HealthSettings = dataclasses.field(default_factory=HealthSettings)
    control: ControlSettings = dataclasses.field(default_factory=ControlSettings)
    extra: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    """Sections registered by the host through ``extra_sections`` (e.g. Kit's ``kit``), parsed."""
    other: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    """Sections of `OTHER_PROGRAM_SECTIONS` present in the source, as given."""

    def __post_init__(self) -> None:
        if not self.telemetry.robot_id and self.robot.robot_id:
            object.__setattr__(self, "telemetry", dataclasses.replace(self.telemetry, robot_id=self.robot.robot_id))

    @classmethod
    def from_mapping(
        cls, mapping: Mapping[str, Any] | None, *, extra_sections: Mapping[str, type] | None = None
    ) -> TwinConfig:
        """Parse ``{section: {key: value}}`` (a TOML document or Kit's ``/exts/twin_ext`` tree).

        Args:
            mapping: the sections; missing sections and keys take their defaults.
            extra_sections: ``{section: settings dataclass}`` the host adds (the Kit skin passes ``kit``).

        Raises:
            ConfigError: an unknown section or key, a wrong type or value — the message names the section
                and key as the user wrote them, and the fix.
        """
        mapping = dict(mapping or {})
        parsers = {**TWIN_SECTIONS, **dict(extra_sections or {})}
        check_keys(mapping, [*parsers, *OTHER_PROGRAM_SECTIONS], where="config:", what="section")
        for name, value in mapping.items():
            if not isinstance(value, Mapping):
                raise ConfigError(f"[{name}] must be a table of settings, got {type(value).__name__} {value!r}")
        parsed = {name: parser.from_mapping(mapping.get(name)) for name, parser in parsers.items()}
        own = {name: parsed.pop(name) for name in TWIN_SECTIONS}
        other = {name: dict(mapping[name]) for name in OTHER_PROGRAM_SECTIONS if name in mapping}
        return cls(**own, extra=parsed, other=other)

    def section(self, name: str) -> Any:
        """The parsed settings of section ``name`` (a `TWIN_SECTIONS` name or an extra section)."""
        if name in TWIN_SECTIONS:
            return getattr(self, name)
        if name in self.extra:
            return self.extra[name]
        check_keys([name], [*TWIN_SECTIONS, *self.extra], where="config:", what="section")
        raise AssertionError  # unreachable: check_keys raised


def load_config(path: str | Path | None = None, *, extra_sections: Mapping[str, type] | None = None) -> TwinConfig:
    """Read and parse a twin TOML config (default: the shipped ``config/twin.toml``).

    Raises:
        ConfigError: the file is missing or not TOML, or a section is bad; the message names the file.
    """
    path = Path(path) if path else default_config_file()
    document = load_toml(path, what="twin config file")
    try:
        return TwinConfig.from_mapping(document, extra_sections=extra_sections)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
