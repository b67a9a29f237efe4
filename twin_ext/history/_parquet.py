# SPDX-License-Identifier: Apache-2.0
"""`ParquetStore`: the embedded history store — Parquet files partitioned by kind, day and robot (pyarrow).

Layout under ``root`` (days are UTC)::

    <kind>/day=2026-12-02/fresh/part-<t_ns>-<id>.parquet      one file per flush, every robot in it
    <kind>/day=2026-12-02/robot=panda-03/part-<t_ns>-<id>.parquet   per robot, after `compact`

A flush writes one file per kind and day for all robots (a fleet of 100 flushing every second would otherwise
make 100 files a second); `compact` (run by the writer every ``compact_every_s`` and on close) rewrites the fresh
files into one file per robot, so a query for one robot over days reads that robot's files only. Every file is
written to a temporary name and renamed, so a reader (``python -m twin_ext history query`` in another process,
while the twin runs) never sees half a file. Retention deletes whole days.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

from ._records import HistoryRecord, check_kind
from ._settings import HistoryError

__all__ = ["ParquetStore"]

_DAY_NS = 86_400 * 10**9


def _pa():
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise HistoryError(
            "the Parquet history store needs pyarrow: pip install 'twin-ext[history]' (or 'pyarrow>=20,<27')"
        ) from None
    return pa, pq


def _day(t_ns: int) -> str:
    return time.strftime("%Y-%m-%d", time.gmtime(t_ns // 10**9))


def _day_start_ns(day: str) -> int:
    import calendar

    return calendar.timegm(time.strptime(day, "%Y-%m-%d")) * 10**9


class ParquetStore:
    """History as Parquet files under ``root`` (created on the first write).

    Args:
        root: the store's folder.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        _pa()

    # ---- writing ---------------------------------------------------------------------------------------------
    def write(self, records: list[HistoryRecord]) -> None:
        """Write ``records`` (any kinds, robots, days): one file per kind and day. Raises OSError on disk trouble."""
        groups: dict[tuple[str, str], list[HistoryRecord]] = defaultdict(list)
        for r in records:
            groups[(r.kind, _day(r.t_ns))].append(r)
        for (kind, day), rows in groups.items():
            rows.sort(key=lambda r: (r.robot_id, r.t_ns))
            self._write_file(self.root / kind / f"day={day}" / "fresh", rows)

    def _write_file(self, folder: Path, rows: list[HistoryRecord]) -> None:
        pa, pq = _pa()
        table = pa.table(
            {
                "robot_id": pa.array([r.robot_id for r in rows], pa.string()),
                "t_ns": pa.array([r.t_ns for r in rows], pa.int64()),
                "label": pa.array([r.label for r in rows], pa.string()),
                "q": pa.array([list(r.q) for r in rows], pa.list_(pa.float64())),
                "qd": pa.array([list(r.qd) for r in rows], pa.list_(pa.float64())),
                "std_q": pa.array([list(r.std_q) for r in rows], pa.list_(pa.float64())),
                "doc": pa.array([r.doc_json() for r in rows], pa.string()),
            }
        )
        folder.mkdir(parents=True, exist_ok=True)
        name = f"part-{rows[0].t_ns:020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = folder / f".{name}.tmp"
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, folder / name)

    def compact(self) -> int:
        """Rewrite the fresh files of every kind and day as one file per robot; returns the files merged."""
        pa, pq = _pa()
        merged = 0
        for fresh in sorted(self.root.glob("*/day=*/fresh")):
            files = sorted(p for p in fresh.glob("part-*.parquet"))
            if not files:
                continue
            table = pa.concat_tables([pq.read_table(p) for p in files])
            for robot in sorted(set(table.column("robot_id").to_pylist())):
                part = table.filter(pa.compute.equal(table.column("robot_id"), robot))
                part = part.sort_by("t_ns")
                folder = fresh.parent / f"robot={robot}"
                folder.mkdir(parents=True, exist_ok=True)
                name = f"part-{part.column('t_ns')[0].as_py():020d}-{uuid.uuid4().hex[:8]}.parquet"
                tmp = folder / f".{name}.tmp"
                pq.write_table(part, tmp, compression="zstd")
                os.replace(tmp, folder / name)
            for p in files:  # a crash before this line leaves rows twice (found by `query`'s de-duplication)
                p.unlink()
            merged += len(files)
        return merged

    # ---- reading ---------------------------------------------------------------------------------------------
    def query(
        self,
        kind: str,
        *,
        robot_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of ``kind`` (oldest first, at most ``limit``, the newest kept) in ``[since_ns, until_ns)``."""
        check_kind(kind)
        pa, pq = _pa()
        files = []
        for day_dir in sorted((self.root / kind).glob("day=*")):
            start = _day_start_ns(day_dir.name[4:])
            if since_ns is not None and start + _DAY_NS <= since_ns:
                continue
            if until_ns is not None and start >= until_ns:
                continue
            folders = [day_dir / "fresh"]
            folders += [day_dir / f"robot={robot_id}"] if robot_id else sorted(day_dir.glob("robot=*"))
            for folder in folders:
                files += sorted(folder.glob("part-*.parquet"))
        tables = []
        for path in files:
            try:
                table = pq.read_table(path)
            except FileNotFoundError:  # compacted meanwhile: its rows are in a robot file now
                continue
            mask = None
            if robot_id:
                mask = pa.compute.equal(table.column("robot_id"), robot_id)
            for op, bound in ((pa.compute.greater_equal, since_ns), (pa.compute.less, until_ns)):
                if bound is not None:
                    m = op(table.column("t_ns"), bound)
                    mask = m if mask is None else pa.compute.and_(mask, m)
            tables.append(table if mask is None else table.filter(mask))
        if not tables:
            return []
        table = pa.concat_tables(tables).sort_by([("t_ns", "ascending"), ("robot_id", "ascending")])
        rows, seen = [], set()
        for row in table.to_pylist():
            key = (row["robot_id"], row["t_ns"], row["label"], row["doc"])
            if key in seen:
                continue  # the same row twice: a compaction interrupted between writing and deleting
            seen.add(key)
            row["kind"] = kind
            row["doc"] = json.loads(row["doc"]) if row["doc"] else {}
            rows.append(row)
        if limit is not None:
            rows = rows[-limit:]
        return rows

    # ---- retention ---------------------------------------------------------------------------------------------
    def delete_before(self, t_ns: int) -> int:
        """Delete whole days that end before ``t_ns`` (retention has day granularity); returns days deleted."""
        deleted = 0
        for day_dir in sorted(self.root.glob("*/day=*")):
            try:
                start = _day_start_ns(day_dir.name[4:])
            except ValueError:
                continue
            if start + _DAY_NS <= t_ns:
                shutil.rmtree(day_dir, ignore_errors=True)
                deleted += 1
        return deleted

    def close(self) -> None:
        """Nothing is held open between writes."""
