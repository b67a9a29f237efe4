# SPDX-License-Identifier: Apache-2.0
"""Settings of [broker], [telemetry], [clock]: strict parsing, defaults in config/twin.toml, every key documented."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from twin_ext.config import ConfigError
from twin_ext.telemetry import BrokerSettings, ClockSettings, TelemetrySettings

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"broker": BrokerSettings, "telemetry": TelemetrySettings, "clock": ClockSettings}


def test_unknown_keys_are_refused_with_the_valid_ones_listed():
    """A typo is an error that names the unknown key and lists the valid ones."""
    with pytest.raises(ConfigError) as info:
        BrokerSettings.from_mapping({"url": "mqtt://h:1", "keep_alive": 5})
    message = str(info.value)
    assert "keep_alive" in message and "keepalive_s" in message and "[broker]" in message


@pytest.mark.parametrize(
    "cls,mapping,fragment",
    [
        (BrokerSettings, {"qos": True}, "must be int"),
        (BrokerSettings, {"qos": 2}, "qos 2"),
        (BrokerSettings, {"url": "http://x"}, "mqtt://"),
        (BrokerSettings, {"url": "mqtt://:1883"}, "no host"),
        (BrokerSettings, {"protocol": "3"}, "'3.1.1' or '5'"),
        (BrokerSettings, {"tls_cert_file": "a.pem"}, "go together"),
        (TelemetrySettings, {"robot_id": "a/b"}, "robot_id"),
        (TelemetrySettings, {"state_buffer": 0}, "latest wins"),
        (TelemetrySettings, {"topic_prefix": "twin/#"}, "wildcards"),
        (ClockSettings, {"block_ms": 60_000.0}, "block_ms"),
        (ClockSettings, {"min_latency_ms": "5"}, "must be float"),
    ],
)
def test_bad_values_are_refused_naming_the_key(cls, mapping, fragment):
    """Wrong types and impossible values raise ConfigError naming the key."""
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        cls.from_mapping(mapping)


def test_integers_are_accepted_for_float_settings():
    """TOML writes 30 for 30.0: an int is fine where a float is expected."""
    assert ClockSettings.from_mapping({"window_s": 30}).window_s == 30.0


def test_broker_url_parts_and_credentials():
    """The URL gives host/port/TLS (default ports per scheme); the password may come from an environment variable."""
    s = BrokerSettings.from_mapping(
        {"url": "mqtts://broker.example:8884", "password": "x", "password_env": "TWIN_TEST_NOPE"}
    )
    assert (s.host, s.port, s.use_tls) == ("broker.example", 8884, True)
    assert BrokerSettings(url="mqtt://10.0.0.5").port == 1883 and BrokerSettings(url="mqtts://h").port == 8883
    assert s.resolved_password() == "x"
    with pytest.raises(ConfigError, match="credentials"):
        BrokerSettings(url="mqtt://user:secret@h:1")
    assert BrokerSettings().resolved_client_id("panda").endswith("-panda")


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_config_file_holds_the_defaults(section):
    """config/twin.toml's section parses with from_mapping and states exactly the dataclass defaults."""
    table = tomllib.loads((ROOT / "config" / "twin.toml").read_text())[section]
    cls = SECTIONS[section]
    assert cls.from_mapping(table) == cls()
    assert set(table) == {f.name for f in dataclasses.fields(cls)}, "every key appears in config/twin.toml"


@pytest.mark.parametrize("section", sorted(SECTIONS))
def test_every_key_is_documented_with_its_default(section):
    """docs/SETTINGS.md's section has one row per key, with the default the code uses."""
    text = (ROOT / "docs" / "SETTINGS.md").read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| `([a-z_0-9]+)` \| `([^`]*)` \|", body, re.M)}
    cls = SECTIONS[section]
    assert set(rows) == {f.name for f in dataclasses.fields(cls)}
    for f in dataclasses.fields(cls):
        default = getattr(cls(), f.name)
        expected = (
            f'"{default}"'
            if isinstance(default, str)
            else str(default).lower()
            if isinstance(default, bool)
            else repr(default)
        )
        assert rows[f.name] == expected, f"{section}.{f.name}: documented {rows[f.name]}, code {expected}"


def test_an_empty_list_read_back_from_kit_settings_as_a_dict_is_an_empty_tuple():
    """carb returns `joints = []` from extension.toml as {}: that must configure "every joint", not fail."""
    from twin_ext.config import section_from_mapping
    from twin_ext.health import HealthSettings

    assert section_from_mapping(HealthSettings, {"joints": {}}, section="health").joints == ()
    with pytest.raises(ConfigError, match=r"\[health\] joints must be tuple"):
        section_from_mapping(HealthSettings, {"joints": {"a": 1}}, section="health")
