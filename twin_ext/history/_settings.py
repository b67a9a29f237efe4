# SPDX-License-Identifier: Apache-2.0
"""``[history]``: where the history goes, how often state is kept, how much is buffered, how long it is kept."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import TwinExtError
from ..config import section_from_mapping

__all__ = ["HistoryError", "HistorySettings"]

BACKENDS = ("parquet", "postgres")


class HistoryError(TwinExtError, RuntimeError):
    """A history store cannot be opened or queried; the message names the problem and the fix."""


@dataclass(frozen=True)
class HistorySettings:
    """``[history]``: the time-series store of a twin (docs/SETTINGS.md)."""

    enabled: bool = False
    """Write history (state, health events, identified parameters, commands)."""
    backend: str = "parquet"
    """``parquet`` (embedded: files under ``path``, no server) or ``postgres`` (``postgres_dsn``)."""
    path: str = "out/history"
    """Folder of the Parquet store (relative: to the working directory)."""
    postgres_dsn: str = ""
    """libpq connection string of the PostgreSQL store, e.g. ``host=127.0.0.1 port=5432 dbname=twin user=twin``."""
    state_every_s: float = 0.1
    """Least time between two stored states of one robot (decimation), s; 0 = every state offered."""
    params_every_s: float = 10.0
    """Least time between two stored identified-parameter documents of one robot, s."""
    buffer_records: int = 200_000
    """Records held in memory while the store is slow or down (~300 B each for a 7-dof state: ~60 MB); past that,
    new records are dropped and counted (``dropped`` in the writer's stats)."""
    flush_every_s: float = 1.0
    """Longest a record waits in the buffer before it is written, s."""
    batch_records: int = 20_000
    """Most records written in one store transaction."""
    retry_max_s: float = 10.0
    """Longest back-off between two attempts to reach a store that failed, s."""
    retention_days: float = 30.0
    """History older than this is deleted (at start and hourly), days; 0 = keep forever."""

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {list(BACKENDS)}, got {self.backend!r}")
        for name in ("state_every_s", "params_every_s", "retention_days"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        for name in ("flush_every_s", "retry_max_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0 s, got {value}")
        if self.buffer_records < 1 or self.batch_records < 1:
            raise ValueError("buffer_records and batch_records must be >= 1")

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any] | None) -> HistorySettings:
        return section_from_mapping(cls, mapping, section="history")
