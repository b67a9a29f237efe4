# SPDX-License-Identifier: Apache-2.0
"""`HistoryStore`: what every store does (write a batch, query, delete old rows), and `open_store`."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ._records import HistoryRecord
from ._settings import HistoryError, HistorySettings

__all__ = ["HistoryStore", "open_store"]


class HistoryStore(Protocol):
    """A time-series store of `HistoryRecord` rows.

    ``write`` raises on any failure (the writer keeps the batch and retries); ``query`` returns rows as dicts
    (`HistoryRecord.to_row`), oldest first; times are Unix-epoch int ns.
    """

    def write(self, records: list[HistoryRecord]) -> None: ...

    def query(
        self,
        kind: str,
        *,
        robot_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int | None = None,
    ) -> list[dict[str, Any]]: ...

    def delete_before(self, t_ns: int) -> int: ...

    def close(self) -> None: ...


def open_store(settings: HistorySettings, *, base_dir: Path | None = None) -> HistoryStore:
    """The store ``settings`` name (opened lazily: a dead database is found by the first write, not here).

    Raises:
        HistoryError: ``postgres`` without ``postgres_dsn``, or the store's library is not installed.
    """
    if settings.backend == "postgres":
        if not settings.postgres_dsn:
            raise HistoryError(
                "[history] backend = 'postgres' needs postgres_dsn, e.g. 'host=127.0.0.1 port=5432 dbname=twin'"
            )
        from ._postgres import PostgresStore

        return PostgresStore(settings.postgres_dsn)
    from ._parquet import ParquetStore

    path = Path(settings.path)
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return ParquetStore(path)
