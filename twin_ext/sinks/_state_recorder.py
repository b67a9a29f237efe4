# SPDX-License-Identifier: Apache-2.0
"""`StateRecorderSink`: the twin's displayed state, recorded to MCAP beside the telemetry it came from."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..estimation import TwinSnapshot

__all__ = ["STATE_TOPIC", "StateRecorderSink"]

STATE_TOPIC = "twin/state"
"""MCAP channel of the recorded snapshots."""

_NUMBERS = {"type": "array", "items": {"type": "number"}}
STATE_SCHEMA = {
    "type": "object",
    "properties": {
        "t_ns": {"type": "integer"},
        "health": {"type": "string"},
        "age_s": {"type": ["number", "null"]},
        "names": {"type": "array", "items": {"type": "string"}},
        "position": _NUMBERS,
        "velocity": _NUMBERS,
        "acceleration": _NUMBERS,
        "position_std": _NUMBERS,
        "velocity_std": _NUMBERS,
    },
    "required": ["t_ns", "health", "names", "position", "velocity"],
}


class StateRecorderSink:
    """Writes every ``every``-th snapshot to channel ``twin/state`` of an `McapRecorder` (log time = display
    time on the twin clock, so it lines up with the telemetry's arrival times in the same file).

    Args:
        recorder: a `twin_ext.telemetry.McapRecorder` (shared with the ingest is fine: it is thread-safe).
        every: record one snapshot in ``every`` (1 = all display ticks).
    """

    name = "state_recorder"

    def __init__(self, recorder: Any, *, every: int = 1) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.recorder = recorder
        self.every = int(every)
        self._count = 0
        self.recorded = 0

    def on_snapshot(self, snapshot: TwinSnapshot) -> None:
        self._count += 1
        if (self._count - 1) % self.every:
            return
        n = snapshot.model.ndof
        std = np.sqrt(np.clip(np.diag(snapshot.covariance), 0.0, None))
        obj = {
            "t_ns": int(snapshot.t_ns),
            "health": snapshot.health.value,
            "age_s": float(snapshot.age_s) if np.isfinite(snapshot.age_s) else None,
            "names": list(snapshot.model.dof_names),
            "position": snapshot.q.tolist(),
            "velocity": snapshot.qd.tolist(),
            "acceleration": snapshot.qdd.tolist(),
            "position_std": std[:n].tolist(),
            "velocity_std": std[n:].tolist(),
        }
        self.recorder.record_json(STATE_TOPIC, obj, int(snapshot.t_ns), "twin_ext.TwinState", schema=STATE_SCHEMA)
        self.recorded += 1

    def close(self) -> None:
        pass
