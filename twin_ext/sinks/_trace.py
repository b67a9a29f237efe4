# SPDX-License-Identifier: Apache-2.0
"""`TraceSink`: keeps the displayed estimate (and the newest measurement beside it) as arrays for reports."""

from __future__ import annotations

import numpy as np

from ..estimation import Health, TwinSnapshot

__all__ = ["TraceSink"]

_HEALTH_CODE = {Health.OK: 0, Health.STALE: 1, Health.LOST: 2}


class TraceSink:
    """Records, per display tick: time, estimated q/qd and 1-sigma, health, and the newest measured q.

    Args:
        latest_measurement: callable returning the newest accepted sample (``ingest.latest``: a
            ``Received`` or None); its positions are stored in model order (NaN for joints it lacks).
        max_ticks: memory bound (ticks beyond it are not kept).
    """

    name = "trace"

    def __init__(self, model, *, latest_measurement=None, max_ticks: int = 60 * 60 * 10) -> None:
        self.model = model
        self._latest = latest_measurement
        self.max_ticks = int(max_ticks)
        self._lookup = {n: i for i, n in enumerate(model.dof_names)}
        self._t: list[int] = []
        self._q: list[np.ndarray] = []
        self._qd: list[np.ndarray] = []
        self._std: list[np.ndarray] = []
        self._health: list[int] = []
        self._measured: list[np.ndarray] = []
        self._measured_stamp: list[int] = []

    def on_snapshot(self, snapshot: TwinSnapshot) -> None:
        if len(self._t) >= self.max_ticks:
            return
        self._t.append(snapshot.t_ns)
        self._q.append(np.array(snapshot.q))
        self._qd.append(np.array(snapshot.qd))
        self._std.append(snapshot.std_q.copy())
        self._health.append(_HEALTH_CODE[snapshot.health])
        measured = np.full(self.model.ndof, np.nan)
        stamp = -1
        received = self._latest() if self._latest is not None else None
        if received is not None:
            msg = received.message
            stamp = msg.stamp_ns
            for k, name in enumerate(msg.names):
                i = self._lookup.get(name)
                if i is not None:
                    measured[i] = msg.position[k]
        self._measured.append(measured)
        self._measured_stamp.append(stamp)

    def arrays(self) -> dict[str, np.ndarray]:
        """``t_ns [T]``, ``q/qd/std_q/measured_q [T, ndof]``, ``health [T]`` (0 ok, 1 stale, 2 lost)."""
        n = self.model.ndof
        shape = (len(self._t), n)
        return {
            "t_ns": np.array(self._t, dtype=np.int64),
            "q": np.array(self._q).reshape(shape),
            "qd": np.array(self._qd).reshape(shape),
            "std_q": np.array(self._std).reshape(shape),
            "health": np.array(self._health, dtype=np.int8),
            "measured_q": np.array(self._measured).reshape(shape),
            "measured_stamp_ns": np.array(self._measured_stamp, dtype=np.int64),
        }

    def close(self) -> None:
        pass
