# SPDX-License-Identifier: Apache-2.0
"""Every setting has one definition (its dataclass), the same default in extension.toml and config/twin.toml,
and a row in docs/SETTINGS.md — so docs, Kit and headless runs can never disagree silently."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from twin_ext.kit.settings import kit_sections
from twin_ext.live import load_config

REPO = Path(__file__).resolve().parents[1]


def _doc_sections() -> dict[str, str]:
    text = (REPO / "docs" / "SETTINGS.md").read_text()
    parts = re.split(r"^## ", text, flags=re.M)
    return {p.split("\n", 1)[0].split()[0]: p for p in parts[1:]}


def test_extension_toml_settings_are_generated_from_the_dataclasses():
    """tools/sync_settings.py --check: extension.toml carries every key with its dataclass default."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "sync_settings.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    with open(REPO / "extension.toml", "rb") as fh:
        settings = tomllib.load(fh)["settings"]["exts"]["twin_ext"]
    for section, cls in kit_sections().items():
        for f in dataclasses.fields(cls):
            expected = list(f.default) if isinstance(f.default, tuple) else f.default  # TOML arrays are lists
            assert settings[section][f.name] == expected, (section, f.name)


@pytest.mark.parametrize("section", list(kit_sections()))
def test_every_setting_is_documented_in_its_section_of_settings_md(section):
    """docs/SETTINGS.md has a table row `| `key` | default | unit | meaning |` for every key of the section."""
    docs = _doc_sections()
    assert section in docs, f"docs/SETTINGS.md has no '## {section}' section"
    for f in dataclasses.fields(kit_sections()[section]):
        assert re.search(rf"^\| `{f.name}` \|", docs[section], flags=re.M), f"[{section}] {f.name} is not documented"


def test_config_twin_toml_parses_and_states_the_defaults():
    """config/twin.toml is valid for every section and its values are the documented defaults."""
    load_config()  # raises on any bad key or value
    with open(REPO / "config" / "twin.toml", "rb") as fh:
        raw = tomllib.load(fh)
    sections = kit_sections()
    for section, values in raw.items():
        if section not in sections:
            continue
        defaults = {f.name: f.default for f in dataclasses.fields(sections[section])}
        for key, value in values.items():
            default = list(defaults[key]) if isinstance(defaults[key], tuple) else defaults[key]
            assert value == default, f"config/twin.toml [{section}] {key} = {value!r}, default {defaults[key]!r}"
    from twin_ext.emulator import EmulatorSettings

    EmulatorSettings.from_mapping(raw["emulator"])
