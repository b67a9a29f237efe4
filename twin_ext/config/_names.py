# SPDX-License-Identifier: Apache-2.0
"""The robot-id rule and the topic-prefix rule: one definition, used by settings, messages and the emulator."""

from __future__ import annotations

import re

from ._validate import ConfigError

__all__ = ["ROBOT_ID_RULE", "check_robot_id", "check_topic_prefix", "robot_id_problem"]

ROBOT_ID_RULE = "1-64 characters of [A-Za-z0-9_.-]"
"""What a robot id may be: it is one MQTT topic level (``twin/v1/<robot_id>/...``) and a file-name part."""
_ROBOT_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")


def robot_id_problem(value: object) -> str | None:
    """None if ``value`` is a valid robot id, else what is wrong with it (for the caller's own error)."""
    if type(value) is not str:
        return f"must be a string, got {type(value).__name__}"
    if not _ROBOT_ID.match(value):
        return f"{value[:80]!r} is not {ROBOT_ID_RULE}"
    return None


def check_robot_id(value: object, *, key: str, allow_empty: bool = False) -> str:
    """Return ``value`` if it is a robot id, else raise `ConfigError` naming ``key`` (e.g. ``"[robot] robot_id"``).

    ``allow_empty``: "" is accepted (settings where it means "any robot").
    """
    if allow_empty and value == "":
        return value
    problem = robot_id_problem(value)
    if problem is not None:
        empty = ' (or "" for any robot)' if allow_empty else ""
        raise ConfigError(f"{key} {problem}; fix: use {ROBOT_ID_RULE}{empty}, e.g. 'panda-01'")
    return value  # type: ignore[return-value]


def check_topic_prefix(value: object, *, key: str) -> str:
    """Return ``value`` if it is a usable MQTT topic prefix (``twin/v1``), else raise `ConfigError` naming ``key``."""
    if (
        type(value) is not str
        or not value
        or any(c in value for c in "+#")
        or value.startswith("/")
        or value.endswith("/")
    ):
        raise ConfigError(
            f"{key} {value!r} must be a non-empty topic without wildcards (+, #) or a leading/trailing '/', "
            f"e.g. 'twin/v1'"
        )
    return value
