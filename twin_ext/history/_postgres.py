# SPDX-License-Identifier: Apache-2.0
"""`PostgresStore`: history in PostgreSQL (psycopg 3) — one table per kind, indexed by robot and time.

Tables ``twin_history_<kind>`` (``robot_id text, t_ns bigint, label text, q/qd/std_q float8[], doc jsonb``),
created on first use, with an index on ``(robot_id, t_ns)``. Batches go in with ``COPY`` in one transaction.
A lost connection is closed and reopened by the next call; its batch raises, and the writer keeps and retries it.
"""

from __future__ import annotations

import json
from typing import Any

from ._records import HISTORY_KINDS, HistoryRecord, check_kind
from ._settings import HistoryError

__all__ = ["PostgresStore"]

_COLUMNS = "robot_id, t_ns, label, q, qd, std_q, doc"


def _psycopg():
    try:
        import psycopg
    except ImportError:
        raise HistoryError(
            "the PostgreSQL history store needs psycopg 3: pip install 'twin-ext[history]' (or 'psycopg[binary]>=3.2,<4')"
        ) from None
    return psycopg


class PostgresStore:
    """History in the PostgreSQL database ``dsn`` (a libpq connection string).

    Args:
        dsn: e.g. ``"host=127.0.0.1 port=5432 dbname=twin user=twin"``.
        connect_timeout_s: how long one connection attempt may take, s.
    """

    def __init__(self, dsn: str, *, connect_timeout_s: float = 3.0) -> None:
        self.dsn = dsn
        self.connect_timeout_s = connect_timeout_s
        self._conn = None
        self._psycopg = _psycopg()

    def _connection(self):
        if self._conn is not None and not self._conn.closed:
            return self._conn
        try:
            conn = self._psycopg.connect(self.dsn, connect_timeout=max(1, round(self.connect_timeout_s)))
        except self._psycopg.Error as exc:
            raise HistoryError(f"cannot reach PostgreSQL ({_redact(self.dsn)}): {str(exc).strip()}") from None
        with conn.transaction():
            for kind in HISTORY_KINDS:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS twin_history_{kind} (robot_id text NOT NULL, t_ns bigint NOT NULL, "
                    "label text NOT NULL DEFAULT '', q float8[], qd float8[], std_q float8[], doc jsonb)"
                )
                conn.execute(
                    f"CREATE INDEX IF NOT EXISTS twin_history_{kind}_robot_t ON twin_history_{kind} (robot_id, t_ns)"
                )
        self._conn = conn
        return conn

    def _run(self, fn):
        conn = self._connection()
        try:
            return fn(conn)
        except self._psycopg.Error as exc:
            self._drop()
            raise HistoryError(f"PostgreSQL ({_redact(self.dsn)}) failed: {str(exc).strip()}") from None

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # noqa: BLE001 - the connection is gone either way
                pass

    def write(self, records: list[HistoryRecord]) -> None:
        """Insert ``records`` in one transaction (all or nothing). Raises `HistoryError`."""
        by_kind: dict[str, list[HistoryRecord]] = {}
        for r in records:
            by_kind.setdefault(r.kind, []).append(r)

        def insert(conn):
            with conn.transaction(), conn.cursor() as cur:
                for kind, rows in by_kind.items():
                    with cur.copy(f"COPY twin_history_{kind} ({_COLUMNS}) FROM STDIN") as copy:
                        for r in rows:
                            copy.write_row(
                                (r.robot_id, r.t_ns, r.label, list(r.q), list(r.qd), list(r.std_q), r.doc_json())
                            )

        self._run(insert)

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
        where, params = [], []
        for clause, value in (("robot_id = %s", robot_id), ("t_ns >= %s", since_ns), ("t_ns < %s", until_ns)):
            if value is not None:
                where.append(clause)
                params.append(value)
        sql = f"SELECT {_COLUMNS} FROM twin_history_{kind}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY t_ns DESC, robot_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"

        def select(conn):
            with conn.cursor() as cur:
                cur.execute(sql, params)
                return cur.fetchall()

        rows = self._run(select)
        self._conn.commit()
        out = []
        for robot, t_ns, label, q, qd, std_q, doc in reversed(rows):
            if isinstance(doc, str):
                doc = json.loads(doc)
            out.append(
                {
                    "kind": kind,
                    "robot_id": robot,
                    "t_ns": t_ns,
                    "label": label,
                    "q": q or [],
                    "qd": qd or [],
                    "std_q": std_q or [],
                    "doc": doc or {},
                }
            )
        return out

    def delete_before(self, t_ns: int) -> int:
        """Delete rows older than ``t_ns`` (every kind); returns the rows deleted."""

        def delete(conn):
            n = 0
            with conn.transaction():
                for kind in HISTORY_KINDS:
                    n += conn.execute(f"DELETE FROM twin_history_{kind} WHERE t_ns < %s", (t_ns,)).rowcount
            return n

        return self._run(delete)

    def close(self) -> None:
        self._drop()


def _redact(dsn: str) -> str:
    return " ".join("password=***" if part.startswith("password=") else part for part in dsn.split())
