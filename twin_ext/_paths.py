# SPDX-License-Identifier: Apache-2.0
"""Where the shipped files are: robots (USD, MJCF), config, scenarios, impairment profiles, recordings.

The one module that knows the layout. Two layouts exist:

* the **extension folder** (a source checkout, an editable install, Isaac Sim / Kit loading the folder as
  ``<exts>/twin_ext``): the files sit beside the package, in ``config/``, ``usd/`` and ``data/``;
* an **installed wheel** (``pip install twin-ext``): the same three folders are package data in
  ``twin_ext/_shipped/`` (pyproject.toml maps them there), without ``data/wheels/``.

Relative paths in settings (``[robot] usd = "usd/ur5e/ur5e.usda"``) resolve against `shipped_root`, so they
mean the same file in both layouts.
"""

from __future__ import annotations

import os
from pathlib import Path

from . import TwinExtError

__all__ = [
    "config_dir",
    "default_config_file",
    "default_program_file",
    "default_robot_mjcf",
    "default_robot_usd",
    "demo_scene_usd",
    "impairments_dir",
    "package_import_root",
    "recordings_dir",
    "resolve_shipped",
    "robot_sources_dir",
    "sample_recording",
    "scenarios_dir",
    "shipped_root",
    "user_cache_dir",
    "wheels_dir",
]

_PACKAGE = Path(__file__).resolve().parent


def shipped_root() -> Path:
    """The folder holding ``config/``, ``usd/`` and ``data/`` (the extension folder, or the wheel's data)."""
    for root in (_PACKAGE.parent, _PACKAGE / "_shipped"):
        if (root / "config" / "twin.toml").is_file() and (root / "usd").is_dir():
            return root
    raise TwinExtError(
        f"the shipped files (config/, usd/, data/) are missing next to {_PACKAGE}; fix: reinstall twin-ext, or "
        f"run from the extension folder (a checkout of the repository)"
    )


def resolve_shipped(path: str | Path, *, prefer_cwd: bool = False) -> Path:
    """``path`` itself if absolute (``~`` expanded), else relative to `shipped_root`.

    ``prefer_cwd``: a relative path that exists in the working directory means that file (command-line
    arguments), otherwise the shipped file of that name.
    """
    p = Path(path).expanduser()
    if p.is_absolute() or (prefer_cwd and p.exists()):
        return p
    return shipped_root() / p


def config_dir() -> Path:
    """``config/``: what users edit — twin.toml, impairment profiles, what-if scenarios."""
    return shipped_root() / "config"


def default_config_file() -> Path:
    """``config/twin.toml``: every setting at its default."""
    return config_dir() / "twin.toml"


def scenarios_dir() -> Path:
    """``config/scenarios/``: shipped what-if scenarios (``<name>.toml``)."""
    return config_dir() / "scenarios"


def impairments_dir() -> Path:
    """``config/impairments/``: shipped network/sensor impairment profiles."""
    return config_dir() / "impairments"


def default_robot_usd() -> Path:
    """``usd/franka_panda/panda.usda``: the shipped Franka Panda (meshes, collision, drives)."""
    return shipped_root() / "usd" / "franka_panda" / "panda.usda"


def demo_scene_usd() -> Path:
    """The demo work cell's obstacles (table, fixture) as USD colliders: ``usd/scenes/pick_place_cell.usda``."""
    return shipped_root() / "usd" / "scenes" / "pick_place_cell.usda"


def robot_sources_dir() -> Path:
    """``data/robots/``: MJCF sources of the shipped robots, with their licenses."""
    return shipped_root() / "data" / "robots"


def default_robot_mjcf() -> Path:
    """The emulator's default plant: the Panda MJCF without meshes (every inertial explicit)."""
    return robot_sources_dir() / "franka_emika_panda" / "panda_nomesh.xml"


def default_program_file() -> Path:
    """``data/scenarios/pick_place.toml``: the emulated robot's default program."""
    return shipped_root() / "data" / "scenarios" / "pick_place.toml"


def recordings_dir() -> Path:
    """``data/recordings/``: sample MCAP recordings."""
    return shipped_root() / "data" / "recordings"


def sample_recording() -> Path:
    """The shipped sample recording of the emulated Panda (standard impairment profile)."""
    return recordings_dir() / "panda_pick_place_standard.mcap"


def user_cache_dir(area: str) -> Path:
    """This user's cache folder for ``area`` (e.g. ``"warp"``, ``"collision"``): ``$TWIN_EXT_CACHE_DIR/<area>``, or
    ``~/.cache/twin_ext/<area>``. Not created here; nothing in it is needed, it only makes reruns faster."""
    root = os.environ.get("TWIN_EXT_CACHE_DIR") or str(Path.home() / ".cache" / "twin_ext")
    return Path(root).expanduser() / area


def package_import_root() -> Path:
    """The folder ``twin_ext`` is imported from (put on a worker process's ``PYTHONPATH``)."""
    return _PACKAGE.parent


def wheels_dir() -> Path:
    """``data/wheels/``: the paho-mqtt wheel Kit installs offline (extension.toml ``[python.pipapi]``).

    Only in the extension folder: a wheel leaves it out (pip installs paho-mqtt as a dependency).
    """
    return shipped_root() / "data" / "wheels"
