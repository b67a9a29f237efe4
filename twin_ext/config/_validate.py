# SPDX-License-Identifier: Apache-2.0
"""`ConfigError`, the unknown-key validator and the settings-dataclass builder."""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from .. import TwinExtError

__all__ = ["ConfigError", "check_keys", "section_from_mapping"]

T = TypeVar("T")
_MAX_LISTED = 5
_MAX_NAME = 40


class ConfigError(TwinExtError, ValueError):
    """A setting, section or settings file that cannot be used; the message names the key and the fix."""


def check_keys(
    given: Iterable[str],
    valid: Iterable[str],
    *,
    where: str,
    error: Callable[[str], Exception] = ConfigError,
    what: str = "key",
) -> None:
    """Raise ``error(message)`` if ``given`` holds a name not in ``valid``.

    The message names each unknown name with the closest valid one ("did you mean") and lists the valid
    names, e.g. ``[whatif] unknown key 'sample' (did you mean 'samples'?); valid keys: [...]``. This is the
    one check behind every table twin_ext reads (settings, scenarios, trajectories, impairment profiles,
    remote requests, commands), so all of them answer a typo the same way.

    Args:
        given: the names the user wrote.
        valid: the names that are understood, in the order to list them.
        where: how the user finds the place, e.g. ``"[whatif]"`` or ``"scenario.toml: variant 2"``.
        error: the exception type (or factory) to raise; a module passes its own error class.
        what: the noun for one name ("key", "section").
    """
    valid = list(valid)
    unknown = sorted(set(given) - set(valid), key=str)
    if not unknown:
        return
    parts = []
    # Names may come from untrusted input (remote requests, commands): list a few, each cut short, and only
    # look for a close match among short names (difflib is quadratic in the name length).
    for name in unknown[:_MAX_LISTED]:
        text = str(name)
        shown = repr(text if len(text) <= _MAX_NAME else text[:_MAX_NAME] + "...")
        close = difflib.get_close_matches(text, [str(v) for v in valid], n=1, cutoff=0.6) if len(text) <= 64 else []
        parts.append(f"{shown} (did you mean {close[0]!r}?)" if close else shown)
    if len(unknown) > _MAX_LISTED:
        parts.append(f"and {len(unknown) - _MAX_LISTED} more")
    plural = "s" if len(unknown) > 1 else ""
    raise error(f"{where} unknown {what}{plural} {', '.join(parts)}; valid {what}s: {valid}")


def section_from_mapping(
    cls: type[T],
    mapping: Mapping[str, Any] | None,
    *,
    section: str,
    error: Callable[[str], Exception] = ConfigError,
) -> T:
    """Build the settings dataclass ``cls`` from ``mapping`` (a TOML table or a Kit settings subtree).

    Unknown keys are refused by `check_keys`. Types must match the field's default exactly (a bool is not an
    int), except that an int is accepted for a float and a list for a tuple (TOML and carb produce them), and an empty
    dict for an empty tuple (carb's form of ``[]``).
    A ``ValueError`` from the dataclass's own checks (``__post_init__``) is re-raised as ``error`` prefixed
    with ``[section]``, so every message names the section and the key the user wrote.

    Args:
        cls: a dataclass whose fields all have defaults.
        mapping: ``{key: value}``; None or {} gives the defaults.
        section: the section's name as the user writes it (``"whatif"`` -> messages say ``[whatif]``).
        error: the exception type to raise (default `ConfigError`).
    """
    mapping = dict(mapping or {})
    known = {f.name: f for f in dataclasses.fields(cls)}
    where = f"[{section}]"
    check_keys(mapping, known, where=where, error=error)
    values = {}
    for name, value in mapping.items():
        default = known[name].default
        expected = type(default) if default is not dataclasses.MISSING and default is not None else None
        if expected is float and type(value) is int:
            value = float(value)
        elif expected is tuple and isinstance(value, list):
            value = tuple(value)
        elif expected is tuple and isinstance(value, dict) and not value:
            # carb's settings store an empty TOML array (``joints = []`` in extension.toml) as an empty
            # dictionary, so inside Kit an empty list arrives as {}.
            value = ()
        if expected is not None and type(value) is not expected:
            raise error(f"{where} {name} must be {expected.__name__}, got {type(value).__name__} {value!r}")
        values[name] = value
    try:
        return cls(**values)
    except TwinExtError as exc:
        if str(exc).startswith(where):
            raise
        raise error(f"{where} {exc}") from None
    except (TypeError, ValueError) as exc:
        raise error(f"{where} {exc}") from None
