# SPDX-License-Identifier: Apache-2.0
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

from .._paths import default_program_file, resolve_shipped
from ..config import ConfigError, check_robot_id, check_topic_prefix, section_from_mapping

__all__ = ["EmulatorSettings"]

_TOKEN = re.compile(r"[\x21-\x7e]{1,64}\Z")


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
    outage_buffer: int = 60000
    accept_commands: bool = False
    max_speed_override: float = 1.0
    ramp_time: float = 0.3
    timestep: float = 0.001
    gravity_compensation: bool = True
    velocity_feedforward: bool = True
    publish_velocity: bool = True
    publish_effort: bool = True
    publish_reference: bool = False
    truth_rate_hz: float = 1000.0

    def __post_init__(self) -> None:
        _check(self)

    @classmethod
    def keys(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, object] | None, *, section: str = "emulator") -> EmulatorSettings:
        """Settings from a table (``[emulator]`` of config/twin.toml); unknown keys and wrong types raise
        `twin_ext.config.ConfigError` naming the key and the valid ones."""
        if mapping is not None and not isinstance(mapping, Mapping):
            raise ConfigError(f"[{section}] must be a table of settings, got {type(mapping).__name__}")
        return section_from_mapping(cls, mapping, section=section)

    def replace(self, **changes: object) -> EmulatorSettings:
        return dataclasses.replace(self, **changes)

    @property
    def mjcf_path(self) -> Path | None:
        """The plant's MJCF (None: the Panda default); relative paths are from the working directory if the file is there, else from the extension folder."""
        return resolve_shipped(self.mjcf, prefer_cwd=True) if self.mjcf else None

    @property
    def program_path(self) -> Path:
        """The program trajectory TOML; relative paths are from the working directory if the file is there, else from the extension folder."""
        return resolve_shipped(self.program, prefer_cwd=True) if self.program else default_program_file()

    @property
    def mqtt_client_id(self) -> str:
        return self.client_id or f"twin-emulator-{self.robot_id}"


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
            raise ConfigError(f"{name} must be {kind}, got {value!r}")
    check_robot_id(s.robot_id, key="robot_id")
    if not _TOKEN.match(s.model_id):
        raise ConfigError(f"model_id {s.model_id!r} must be 1-64 printable ASCII characters without spaces")
    if s.codec not in ("json", "binary"):
        raise ConfigError(f"codec must be 'json' or 'binary', got {s.codec!r}")
    if s.qos not in (0, 1, 2):
        raise ConfigError(f"qos must be 0, 1 or 2, got {s.qos!r}")
    check_topic_prefix(s.topic_prefix, key="topic_prefix")
    if not 1 <= s.keepalive <= 3600:
        raise ConfigError(f"keepalive must be in [1, 3600] s, got {s.keepalive}")
    if not 1 <= s.outage_buffer <= 65000:
        raise ConfigError(
            f"outage_buffer must be in [1, 65000] messages (MQTT packet ids are 16-bit), got {s.outage_buffer}"
        )
    if not 0.0 < s.max_speed_override <= 2.0:
        raise ConfigError(f"max_speed_override must be in (0, 2], got {s.max_speed_override:g}")
    if not 0.0 < s.ramp_time <= 10.0:
        raise ConfigError(f"ramp_time must be in (0, 10] s, got {s.ramp_time:g}")
    if not 1e-5 <= s.timestep <= 1e-2:
        raise ConfigError(f"timestep must be in [1e-5, 1e-2] s, got {s.timestep:g} (the Panda's loop is 1e-3)")
    if not 0.0 <= s.truth_rate_hz <= 1.0 / s.timestep + 1e-9:
        raise ConfigError(
            f"truth_rate_hz must be in [0, {1.0 / s.timestep:g}] Hz (0 = no recorded truth), got {s.truth_rate_hz:g}"
        )
