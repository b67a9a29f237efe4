# SPDX-License-Identifier: Apache-2.0
"""Reading TOML settings files with errors that name the file and the fix."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from ._validate import ConfigError

__all__ = ["load_toml"]


def load_toml(path: str | Path, *, what: str = "config file", error: type[Exception] = ConfigError) -> dict[str, Any]:
    """The parsed TOML document at ``path``.

    Args:
        path: the file.
        what: what the file is, for messages ("config file", "impairment profile", "scenario").
        error: the exception type to raise.

    Raises:
        ``error``: the file is missing, unreadable or not valid TOML (the message names the file and the fix).
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise error(f"{what} not found: {path}; fix: pass an existing file") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a folder; fix: pass a .toml file") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{what} {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError:
        raise error(f"{what} {path} is not UTF-8 text") from None
