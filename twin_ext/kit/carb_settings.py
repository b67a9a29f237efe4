# SPDX-License-Identifier: Apache-2.0
"""Adapter: Kit's carb settings tree ``/exts/twin_ext/...`` -> the plain mapping the core's config reads."""

from __future__ import annotations

from typing import Any

import carb.settings

SETTINGS_ROOT = "/exts/twin_ext"

__all__ = ["SETTINGS_ROOT", "read_settings"]


def read_settings() -> dict[str, Any]:
    """The extension's settings as nested plain dicts (one per section)."""
    tree = carb.settings.get_settings().get(SETTINGS_ROOT) or {}
    return {k: dict(v) for k, v in tree.items() if isinstance(v, dict)}
