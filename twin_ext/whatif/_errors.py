# SPDX-License-Identifier: Apache-2.0
"""`WhatIfError`: a what-if request that cannot run; raised before any kernel launch."""

from __future__ import annotations

from .. import TwinExtError

__all__ = ["WhatIfError", "WorkerError"]


class WhatIfError(TwinExtError, ValueError):
    """Bad input to the what-if engine (shape, value, name, budget); the message names the problem and the fix."""


class WorkerError(TwinExtError, RuntimeError):
    """A rollout worker process failed or died; the message carries the worker's own error."""
