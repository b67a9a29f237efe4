# SPDX-License-Identifier: Apache-2.0
"""Import and initialise Warp once per process (`init_warp`); where our kernels are cached (`kernel_cache_dir`)."""

from __future__ import annotations

import threading
from pathlib import Path

from .._paths import user_cache_dir

__all__ = ["init_warp", "kernel_cache_dir"]

_lock = threading.Lock()
_initialised = False


def kernel_cache_dir() -> Path:
    """Folder of Warp's kernel cache: ``$TWIN_EXT_CACHE_DIR/warp`` or ``~/.cache/twin_ext/warp``."""
    return user_cache_dir("warp")


def init_warp():
    """Import and initialise Warp once; returns the ``warp`` module. Thread-safe: the what-if engine and the
    estimator's Kalman kernel may both start Warp, from different threads.

    When this process initialises Warp, its kernel cache goes to `kernel_cache_dir` and info logging is off. When
    the host already did (Kit initialises ``omni.warp.core`` itself) or chose Warp's kernel cache, the host's
    settings are left alone and the kernels use the host's cache. Backward code is never generated for our
    kernels (``enable_backward=False`` per kernel), whatever the global setting.
    """
    import warp as wp

    global _initialised
    with _lock:
        if not _initialised:
            # Public state only: ``warp.config.kernel_cache_dir`` is None until someone chooses a cache, and
            # ``wp.init()`` always sets it (to the resolved folder), so None means nobody initialised Warp yet.
            if wp.config.kernel_cache_dir is None:
                path = kernel_cache_dir()
                path.mkdir(parents=True, exist_ok=True)
                wp.config.kernel_cache_dir = str(path)
                wp.config.enable_backward = False
                wp.config.log_level = wp.LOG_WARNING
            wp.init()  # a no-op when the host already initialised Warp
            _initialised = True
    return wp
