# SPDX-License-Identifier: Apache-2.0
"""The sink interface: where each display tick's `TwinSnapshot` goes."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ..estimation import TwinSnapshot

__all__ = ["Sink"]


@runtime_checkable
class Sink(Protocol):
    """Receives every displayed snapshot. Sinks must not modify the snapshot and should be quick (they run
    on the display tick); a sink that raises is reported by the twin and disabled, never crashing it."""

    name: str

    def on_snapshot(self, snapshot: TwinSnapshot) -> None:
        """Consume one snapshot (display time ``snapshot.t_ns``)."""

    def close(self) -> None:
        """Flush and release resources. Called once when the twin stops."""
