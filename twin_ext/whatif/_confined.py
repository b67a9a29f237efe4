# SPDX-License-Identifier: Apache-2.0
"""Scenario and trajectory files for requests from elsewhere: names inside configured folders, read safely.

A what-if request that arrives over the network names files on the twin's host. `ConfinedFiles` lets it
name only files in two folders (scenarios, trajectories), and reads them so that nothing on the host can
stall or flood the twin:

* **names, not paths**: a scenario is a name (``pick_place_payload``), a trajectory a name or a relative path
  below the trajectory folder (``pick_place``, ``cell2/pick.toml``); absolute paths, ``..``, ``~``, backslashes
  and hidden names are refused. A scenario file from the scenario folder may refer to its trajectory by a
  relative path (the shipped ones do: ``../../data/scenarios/pick_place.toml``), which must still land in one
  of the two folders.
* **the real path** (symlinks resolved) must lie inside the folder, before the file is opened and again
  after (``/proc/self/fd``), so a symlink pointing out of the folder is refused;
* **regular files only**: the file is opened non-blocking and checked with ``fstat`` before a byte is read,
  so a FIFO, a device (``/dev/zero``), a socket or a folder never blocks or streams;
* **size-capped reads with a deadline** (``max_bytes``, ``timeout_s``), in chunks.

Errors say only what the requester may know: a name that cannot be used for any reason (missing, outside,
not a regular file) gets the same answer, "not among the allowed trajectories: [names]"; a file inside the
folder that does not parse is "not a valid trajectory file" — its content and the parser's message (line,
column, key names) go to the twin's log (logger ``twin_ext.whatif``), not to the requester.
"""

from __future__ import annotations

import logging
import os
import re
import stat
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..robot import JointTrajectory, TrajectoryError
from ._errors import WhatIfError
from ._scenario import Scenario

__all__ = ["ConfinedFiles", "FileNotAllowed"]

_log = logging.getLogger("twin_ext.whatif")
_PART = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,99}")
_MAX_DEPTH = 4
_MAX_LISTED = 40
_SINGULAR = {"scenarios": "scenario", "trajectories": "trajectory"}


class FileNotAllowed(WhatIfError):
    """A request named a scenario or trajectory file it may not read (or one that cannot be read safely).

    The message lists the names that are allowed and never reveals anything about files outside the folders.
    """


def _shown(name: Any) -> str:
    text = str(name)
    return repr(text if len(text) <= 64 else text[:61] + "...")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


@dataclass(frozen=True)
class ConfinedFiles:
    """The folders remote requests may read, and the limits of a read.

    Args:
        scenario_dir: scenarios a request may name (``<name>.toml``).
        trajectory_dir: trajectories a request may name (``<name>.toml``, subfolders allowed).
        max_bytes: largest file read, bytes.
        timeout_s: longest one file may take to read, s.
    """

    scenario_dir: Path
    trajectory_dir: Path
    max_bytes: int = 262144
    timeout_s: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "scenario_dir", Path(os.path.realpath(self.scenario_dir)))
        object.__setattr__(self, "trajectory_dir", Path(os.path.realpath(self.trajectory_dir)))

    # ---- listing ------------------------------------------------------------------------------------------
    def scenario_names(self) -> list[str]:
        """Names of the scenarios in the scenario folder."""
        return _names(self.scenario_dir)

    def trajectory_names(self) -> list[str]:
        """Names of the trajectories at the top of the trajectory folder."""
        return _names(self.trajectory_dir)

    # ---- loading ------------------------------------------------------------------------------------------
    def load_scenario(self, name: Any) -> Scenario:
        """The scenario ``name`` from the scenario folder; its trajectory must lie in one of the two folders.

        Raises:
            FileNotAllowed: not a plain name of a regular file in the scenario folder (or too big, too slow).
            WhatIfError: the file is not a valid scenario (no detail of its content is given).
        """
        what = "scenarios"
        path = self._relative(name, self.scenario_dir, what, allow_subfolders=False)
        text = self._read(path, (self.scenario_dir,), name, what)
        try:
            doc = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            _log.warning("what-if scenario %s is not valid TOML: %s", path, exc)
            raise WhatIfError(
                f"scenario {_shown(name)} is not a valid scenario file (details in the twin's log); fix: check it "
                "on the twin's host (python -m twin_ext.whatif run <file>)"
            ) from None
        folder = path.parent
        source = f"scenario {PurePosixPath(str(name)).stem}"

        def trajectory(ref: str) -> JointTrajectory:
            p = Path(ref)
            if p.is_absolute() or ref.startswith("~") or "\\" in ref or "\x00" in ref:
                raise FileNotAllowed(
                    f"{source} refers to its trajectory by an absolute path; fix (on the twin's host): a path "
                    "relative to the scenario file, inside the trajectory or scenario folder"
                )
            target = folder / p
            return self._trajectory_at(target, (self.trajectory_dir, self.scenario_dir), ref, source)

        try:
            return Scenario.from_mapping(doc, source=source, base_dir=folder, trajectory_loader=trajectory)
        except FileNotAllowed:
            raise
        except WhatIfError as exc:
            _log.warning("what-if scenario %s is not valid: %s", path, exc)
            raise WhatIfError(
                f"scenario {_shown(name)} is not a valid scenario file (details in the twin's log); fix: check it "
                "on the twin's host (python -m twin_ext.whatif run <file>)"
            ) from None

    def scenario_from_mapping(self, doc: Any, *, source: str = "whatif/request") -> Scenario:
        """A scenario given in a request; ``[command] trajectory`` names a file in the trajectory folder.

        Raises:
            FileNotAllowed: the trajectory is not among the allowed ones.
            WhatIfError: the document does not follow the schema (the message names the part, as locally).
        """
        return Scenario.from_mapping(
            doc, source=source, base_dir=self.trajectory_dir, trajectory_loader=self.trajectory
        )

    def trajectory(self, name: Any) -> JointTrajectory:
        """The trajectory ``name`` (``pick_place``, ``pick_place.toml`` or ``sub/x.toml``) from the trajectory folder.

        Raises:
            FileNotAllowed: not the name of a regular file in the folder, too big, or too slow to read.
            WhatIfError: the file is not a valid trajectory (no detail of its content is given).
        """
        path = self._relative(name, self.trajectory_dir, "trajectories", allow_subfolders=True)
        return self._trajectory_at(path, (self.trajectory_dir,), name, "trajectory")

    # ---- internals ------------------------------------------------------------------------------------------
    def _refuse(self, name: Any, what: str) -> FileNotAllowed:
        folder = self.scenario_dir if what == "scenarios" else self.trajectory_dir
        names = _names(folder)
        listed = names[:_MAX_LISTED] + ([f"... {len(names) - _MAX_LISTED} more"] if len(names) > _MAX_LISTED else [])
        key = "scenario_dir" if what == "scenarios" else "trajectory_dir"
        return FileNotAllowed(
            f"{_shown(name)} is not among the allowed {what}: {listed}; fix: name one of them (the operator adds "
            f"files to the twin's [remote_whatif] {key})"
        )

    def _relative(self, name: Any, root: Path, what: str, *, allow_subfolders: bool) -> Path:
        if not isinstance(name, str) or not name or len(name) > 200:
            raise self._refuse(name, what)
        parts = name.split("/")
        if len(parts) > (_MAX_DEPTH if allow_subfolders else 1) or not all(_PART.fullmatch(p) for p in parts):
            raise self._refuse(name, what)  # absolute, "..", "~", "\", hidden, empty parts, odd characters
        rel = PurePosixPath(*parts)
        if rel.suffix != ".toml":
            rel = rel.with_name(rel.name + ".toml")
        return root.joinpath(*rel.parts)

    def _trajectory_at(self, path: Path, roots: tuple[Path, ...], name: Any, source: str) -> JointTrajectory:
        text = self._read(path, roots, name, "trajectories")
        try:
            return JointTrajectory.from_toml_text(text, source=str(path))
        except TrajectoryError as exc:
            _log.warning("what-if trajectory %s is not valid: %s", path, exc)
            raise WhatIfError(
                f"{source}: {_shown(name)} is not a valid trajectory file (details in the twin's log); fix: check it "
                "on the twin's host"
            ) from None

    def _read(self, path: Path, roots: tuple[Path, ...], name: Any, what: str) -> str:
        """The text of ``path`` if it is a regular file inside one of ``roots``; never blocks on special files."""
        real_roots = [str(r) for r in roots]
        real = os.path.realpath(path)  # resolves symlinks without opening anything
        if not any(_inside(real, r) for r in real_roots):
            raise self._refuse(name, what)
        flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
        flags |= getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
        try:
            fd = os.open(real, flags)
        except OSError:
            raise self._refuse(name, what) from None  # missing, a symlink swapped in, no permission: all alike
        try:
            try:
                opened = os.readlink(f"/proc/self/fd/{fd}")  # what was really opened (parents may have changed)
            except OSError:
                opened = real
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or not any(_inside(opened, r) for r in real_roots):
                raise self._refuse(name, what)
            limit = f"[remote_whatif] max_file_bytes = {self.max_bytes}"
            if st.st_size > self.max_bytes:
                raise FileNotAllowed(f"{_shown(name)} is larger than {limit}; fix: a smaller file")
            chunks, total = [], 0
            deadline = time.monotonic() + self.timeout_s
            while True:
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    chunk = None
                if chunk == b"":
                    break
                if chunk:
                    chunks.append(chunk)
                    total += len(chunk)
                    if total > self.max_bytes:  # the file grew while being read
                        raise FileNotAllowed(f"{_shown(name)} is larger than {limit}; fix: a smaller file")
                if time.monotonic() > deadline:
                    raise FileNotAllowed(
                        f"reading {_shown(name)} took longer than [remote_whatif] file_timeout_s = "
                        f"{self.timeout_s:g} s; fix: keep the twin's {what} on a local disk"
                    )
                if chunk is None:
                    time.sleep(0.005)
        finally:
            os.close(fd)
        try:
            return b"".join(chunks).decode("utf-8")
        except UnicodeDecodeError:
            _log.warning("what-if file %s is not UTF-8 text", path)
            raise WhatIfError(f"{_shown(name)} is not a valid {_SINGULAR[what]} file (not UTF-8 text)") from None


def _names(folder: Path) -> list[str]:
    """Stems of the regular ``*.toml`` files at the top of ``folder`` (not following symlinks), sorted."""
    try:
        with os.scandir(folder) as entries:
            return sorted(
                e.name[:-5]
                for e in entries
                if e.name.endswith(".toml") and not e.name.startswith(".") and e.is_file(follow_symlinks=False)
            )
    except OSError:
        return []
