# SPDX-License-Identifier: Apache-2.0
"""File-backed shared memory for requests: the parent writes inputs, workers write results in place.

An `Arena` is one memory-mapped file (in ``/dev/shm`` when it exists, so it never touches a disk)
holding named, 64-byte aligned NumPy arrays described by a *layout* ``{name: (offset, shape, dtype)}``
that is small enough to send to a worker with each request. A plain mapped file (not
``multiprocessing.shared_memory``) keeps Python 3.12's resource tracker from unlinking the parent's
memory when a worker exits.
"""

from __future__ import annotations

import mmap
import os
import tempfile
import uuid
from collections.abc import Mapping

import numpy as np

__all__ = ["Arena", "attach_arena", "plan_layout", "remove_stale_arenas"]

_ALIGN = 64
_PREFIX = "twin_ext_whatif_"


def plan_layout(
    specs: Mapping[str, tuple[tuple[int, ...], str]],
) -> tuple[dict[str, tuple[int, tuple[int, ...], str]], int]:
    """Offsets for arrays ``{name: (shape, dtype)}``; returns ``(layout, total bytes)``."""
    layout: dict[str, tuple[int, tuple[int, ...], str]] = {}
    offset = 0
    for name, (shape, dtype) in specs.items():
        shape = tuple(int(x) for x in shape)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        layout[name] = (offset, shape, np.dtype(dtype).str)
        offset += (nbytes + _ALIGN - 1) // _ALIGN * _ALIGN
    return layout, max(offset, _ALIGN)


class Arena:
    """A mapped file of ``size`` bytes. Create with `Arena.create`, open in another process with `attach_arena`."""

    def __init__(self, path: str, size: int, fd: int, owner: bool) -> None:
        self.path = path
        self.size = size
        self._owner = owner
        self._mmap = mmap.mmap(fd, size)
        os.close(fd)

    @classmethod
    def create(cls, size: int) -> Arena:
        """A new arena of ``size`` bytes, its memory reserved up front.

        ``/dev/shm`` first; when it is missing or too small (containers often give it 64 MiB) the system
        temporary folder, whose page cache makes a mapped file nearly as fast. Reserving the space now turns
        "out of shared memory" into an error here instead of a SIGBUS when a worker writes.
        """
        folders = [f for f in ("/dev/shm",) if os.path.isdir(f) and os.access(f, os.W_OK)] + [tempfile.gettempdir()]
        last_error: OSError | None = None
        for folder in folders:
            path = os.path.join(folder, f"{_PREFIX}{os.getpid()}_{uuid.uuid4().hex[:12]}")
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                if hasattr(os, "posix_fallocate"):
                    # reserve now (measured: also faster overall than faulting pages in from the workers)
                    os.posix_fallocate(fd, 0, size)
                else:  # pragma: no cover - macOS
                    os.ftruncate(fd, size)
                return cls(path, size, fd, owner=True)
            except OSError as exc:
                os.close(fd)
                os.unlink(path)
                last_error = exc
        raise OSError(
            f"cannot reserve {size / 2**20:.0f} MiB of shared memory for a what-if request in {folders}: "
            f"{last_error}; fix: free space there, or lower [whatif] memory_budget_mb / record less"
        )

    def views(self, layout: Mapping[str, tuple[int, tuple[int, ...], str]]) -> dict[str, np.ndarray]:
        """NumPy arrays over the mapped memory for every entry of ``layout``."""
        return {
            name: np.ndarray(shape, dtype=np.dtype(dtype), buffer=self._mmap, offset=offset)
            for name, (offset, shape, dtype) in layout.items()
        }

    def unlink(self) -> None:
        """Delete the backing file but keep the mapping: it lives as long as any array made by `views` does
        (NumPy keeps the mapping object alive, not a buffer export, so `close` would pull the memory away)."""
        if self._owner:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self._owner = False

    def close(self) -> None:
        """Unmap (and, for the creator, delete the file). Only when no array made by `views` is alive."""
        try:
            self._mmap.close()
        except BufferError:
            pass
        if self._owner:
            try:
                os.unlink(self.path)
            except FileNotFoundError:
                pass
            self._owner = False


def attach_arena(path: str) -> Arena:
    """Map an existing arena file (in a worker)."""
    fd = os.open(path, os.O_RDWR)
    size = os.fstat(fd).st_size
    return Arena(path, size, fd, owner=False)


def remove_stale_arenas() -> int:
    """Delete arena files left behind by processes that no longer exist; returns how many.

    A process that ends without running its exit handlers (``os._exit``, as Kit hosts do; a kill) cannot
    delete its arenas, and files in ``/dev/shm`` hold RAM until deleted. The file name carries the creator's
    pid, so the next pool start cleans up after it.
    """
    removed = 0
    for folder in ("/dev/shm", tempfile.gettempdir()):
        try:
            names = [n for n in os.listdir(folder) if n.startswith(_PREFIX)]
        except OSError:
            continue
        for name in names:
            try:
                pid = int(name[len(_PREFIX) :].split("_", 1)[0])
            except ValueError:
                continue
            if pid == os.getpid():
                continue
            try:
                os.kill(pid, 0)
                continue  # alive
            except ProcessLookupError:
                pass
            except PermissionError:
                continue  # alive, someone else's
            try:
                os.unlink(os.path.join(folder, name))
                removed += 1
            except OSError:
                pass
    return removed
