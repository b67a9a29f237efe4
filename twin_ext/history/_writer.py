# SPDX-License-Identifier: Apache-2.0
"""`HistoryWriter`: records go into a bounded buffer at once; a background thread writes them in batches.

The live path (the display loop, the fleet's ticks) only appends to a deque under a lock — O(1), never a wait on
the store. The writer thread takes up to ``batch_records`` every ``flush_every_s`` and writes them; when the store
fails (a database restarting, a full disk) the batch goes back to the front of the buffer and is retried with
back-off up to ``retry_max_s``. Nothing is lost until the buffer holds ``buffer_records``; then new records are
dropped and counted (`WriterStats.dropped`). Retention (``retention_days``) and Parquet compaction run on the same
thread, at start and every ``maintain_every_s``.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ._records import HistoryRecord
from ._settings import HistorySettings

__all__ = ["HistoryWriter", "WriterStats"]


@dataclass(frozen=True)
class WriterStats:
    """Counters of a `HistoryWriter` (records unless noted)."""

    offered: int
    """Records handed to the writer (after decimation)."""
    written: int
    buffered: int
    """Records not yet written: waiting in the buffer or in a write under way."""
    dropped: int
    """Records dropped because the buffer was full (the store was down or too slow for too long)."""
    decimated: int
    """States not kept because one of the same robot was kept less than ``state_every_s`` before."""
    write_failures: int
    """Failed write attempts (each batch is retried)."""
    last_error: str
    store_ok: bool


class HistoryWriter:
    """Batches `HistoryRecord` rows into a `HistoryStore` off the caller's thread.

    Args:
        store: the store.
        settings: `HistorySettings` (buffer, flush period, decimation, retention).
        wall_ns: wall clock, Unix-epoch int ns (records are stamped with it).
        maintain_every_s: period of retention and compaction, s.
    """

    def __init__(
        self,
        store: Any,
        settings: HistorySettings | None = None,
        *,
        wall_ns: Callable[[], int] = time.time_ns,
        maintain_every_s: float = 3600.0,
    ) -> None:
        self.store = store
        self.settings = settings or HistorySettings()
        self.wall_ns = wall_ns
        self.maintain_every_s = maintain_every_s
        self._buffer: deque[HistoryRecord] = deque()
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one write at a time (the thread, or `flush`/`stop` on the caller's)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_state: dict[str, int] = {}
        self._last_params: dict[str, int] = {}
        self._inflight = 0  # taken from the buffer by a write still under way (still counted as buffered)
        self._offered = self._written = self._dropped = self._decimated = self._failures = 0
        self._last_error = ""
        self._store_ok = True

    # ---- the live path: never waits -------------------------------------------------------------------------
    def offer(self, record: HistoryRecord) -> bool:
        """Queue one record; False if the buffer is full (the record is dropped and counted)."""
        with self._lock:
            if len(self._buffer) + self._inflight >= self.settings.buffer_records:
                self._dropped += 1
                return False
            self._buffer.append(record)
            self._offered += 1
        return True

    def record_state(
        self,
        robot_id: str,
        q: Sequence[float],
        qd: Sequence[float],
        std_q: Sequence[float],
        health: str,
        *,
        t_ns: int | None = None,
        doc: dict | None = None,
    ) -> bool:
        """Offer an estimated state (``[ndof]`` rad|m, rad/s|m/s, rad|m), kept at most every ``state_every_s``
        per robot. Returns whether it was queued."""
        t = self.wall_ns() if t_ns is None else int(t_ns)
        last = self._last_state.get(robot_id)
        if last is not None and t - last < self.settings.state_every_s * 1e9:
            self._decimated += 1
            return False
        self._last_state[robot_id] = t
        rec = HistoryRecord(
            "state", robot_id, t, str(health), tuple(map(float, q)), tuple(map(float, qd)), tuple(map(float, std_q)),
            doc or {},
        )  # fmt: skip
        return self.offer(rec)

    def record_health_event(self, robot_id: str, event: dict, *, t_ns: int | None = None) -> bool:
        """Offer a health event (`HealthEvent.to_dict` form; ``kind`` becomes the label)."""
        t = self.wall_ns() if t_ns is None else int(t_ns)
        return self.offer(HistoryRecord("health", robot_id, t, str(event.get("kind", "")), doc=dict(event)))

    def record_params(self, robot_id: str, doc: dict, *, t_ns: int | None = None, force: bool = False) -> bool:
        """Offer identified parameters (e.g. `HealthSummary.to_dict`), at most every ``params_every_s`` per robot."""
        t = self.wall_ns() if t_ns is None else int(t_ns)
        last = self._last_params.get(robot_id)
        if not force and last is not None and t - last < self.settings.params_every_s * 1e9:
            return False
        self._last_params[robot_id] = t
        return self.offer(HistoryRecord("params", robot_id, t, "", doc=dict(doc)))

    def record_command(self, robot_id: str, doc: dict, *, t_ns: int | None = None) -> bool:
        """Offer a command sent to the robot or its acknowledgement (``kind`` or ``state`` becomes the label)."""
        t = self.wall_ns() if t_ns is None else int(t_ns)
        label = str(doc.get("kind") or doc.get("state") or "")
        return self.offer(HistoryRecord("commands", robot_id, t, label, doc=dict(doc)))

    # ---- the writer thread ------------------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (idempotent)."""
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="twin_ext-history", daemon=True)
            self._thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Write what is buffered (trying for up to ``timeout_s``), compact, and stop the thread."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s + 1.0)
            self._thread = None
        deadline = time.monotonic() + timeout_s
        while self.stats().buffered and time.monotonic() < deadline and self.flush():
            pass
        self._maintain(compact_only=True)
        try:
            self.store.close()
        except Exception:  # noqa: BLE001 - closing: nothing left to save
            pass

    def flush(self) -> bool:
        """Write one batch now (on the caller's thread); False if the store failed (the batch stays buffered)."""
        with self._flush_lock:
            return self._flush()

    def _flush(self) -> bool:
        with self._lock:
            n = min(len(self._buffer), self.settings.batch_records)
            batch = [self._buffer.popleft() for _ in range(n)]
            self._inflight = n
        if not batch:
            return True
        try:
            self.store.write(batch)
        except Exception as exc:  # noqa: BLE001 - any store trouble: keep the batch, retry later
            with self._lock:
                self._buffer.extendleft(reversed(batch))
                self._inflight = 0
                self._failures += 1
                self._last_error = str(exc)[:500]
                self._store_ok = False
            return False
        with self._lock:
            self._written += len(batch)
            self._inflight = 0
            self._store_ok = True
        return True

    def _run(self) -> None:
        delay = self.settings.flush_every_s
        next_maintain = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_maintain:
                next_maintain = time.monotonic() + self.maintain_every_s
                self._maintain()
            ok = True
            while ok and self.stats().buffered and not self._stop.is_set():
                ok = self.flush()
                if ok and self.stats().buffered < self.settings.batch_records:
                    break  # a part batch: wait for more
            delay = self.settings.flush_every_s if ok else min(delay * 2, self.settings.retry_max_s)
            self._wake.wait(delay)
            self._wake.clear()

    def _maintain(self, *, compact_only: bool = False) -> None:
        try:
            compact = getattr(self.store, "compact", None)
            if compact is not None:
                compact()
            if not compact_only and self.settings.retention_days > 0:
                self.store.delete_before(self.wall_ns() - int(self.settings.retention_days * 86_400e9))
        except Exception as exc:  # noqa: BLE001 - maintenance trouble must not stop writing
            with self._lock:
                self._last_error = f"retention/compaction failed: {exc}"[:500]

    def stats(self) -> WriterStats:
        with self._lock:
            return WriterStats(
                self._offered,
                self._written,
                len(self._buffer) + self._inflight,
                self._dropped,
                self._decimated,
                self._failures,
                self._last_error,
                self._store_ok,
            )
