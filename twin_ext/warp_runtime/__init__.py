# SPDX-License-Identifier: Apache-2.0
"""Warp, initialised once per process for every package that launches kernels (what-if, estimation).

`init_warp` imports and initialises Warp under one lock, with the kernel cache in `kernel_cache_dir`
(``$TWIN_EXT_CACHE_DIR/warp``) unless the host (Kit) already chose one. `BackgroundKernel` builds one kernel
once per process on a daemon thread, for users that keep a NumPy path until it is ready.
"""

from .. import lazy_exports

_EXPORTS = {
    "BackgroundKernel": "._background",
    "init_warp": "._runtime",
    "kernel_cache_dir": "._runtime",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
