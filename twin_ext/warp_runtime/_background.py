# SPDX-License-Identifier: Apache-2.0
"""`BackgroundKernel`: a Warp kernel compiled and loaded once per process on a daemon thread.

A cold kernel cache costs ~2 s of compiling, which no display or network thread may wait for: the users of a
kernel start its build early (`start`), keep their NumPy path until it is `ready`, and may `wait` a bounded time.
Warp itself is initialised in the caller's thread (`init_warp`, ~0.35 s), not in the build thread, so two builds
never race one ``wp.init``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ._runtime import init_warp

__all__ = ["BackgroundKernel"]


class BackgroundKernel:
    """One kernel, built once per process by ``build(wp) -> kernel`` on a daemon thread named ``thread_name``.

    Attributes:
        wp: the Warp module once `ready` (else None). kernel: what ``build`` returned (else None).
        error: why there is no kernel (no Warp, no compiler, a build error), or None.
    """

    def __init__(self, build: Callable[[Any], Any], thread_name: str) -> None:
        self._build = build
        self._thread_name = thread_name
        self._lock = threading.Lock()
        self._started = False
        self._done = threading.Event()
        self.wp: Any = None
        self.kernel: Any = None
        self.error: BaseException | None = None

    def start(self) -> None:
        """Initialise Warp here and start the build thread, once (later calls do nothing)."""
        with self._lock:
            if self._started:
                return
            self._started = True
            try:
                wp = init_warp()
            except Exception as error:  # noqa: BLE001 - no Warp: the callers' NumPy paths stay in use
                self.error = error
                self._done.set()
                return
            thread = threading.Thread(target=self._run, args=(wp,), name=self._thread_name, daemon=True)
        thread.start()

    def _run(self, wp: Any) -> None:
        try:
            kernel = self._build(wp)
            with self._lock:
                self.wp, self.kernel = wp, kernel
        except Exception as error:  # noqa: BLE001 - no compiler / a build error: the NumPy paths stay in use
            with self._lock:
                self.error = error
        finally:
            self._done.set()

    def ready(self) -> bool:
        """True once the kernel is built and loaded (never waits)."""
        return self._done.is_set() and self.kernel is not None

    def wait(self, timeout_s: float | None = None) -> bool:
        """`start`, then wait at most ``timeout_s`` s (None: until done) for the build; True if it is ready."""
        self.start()
        self._done.wait(timeout_s)
        return self.ready()
