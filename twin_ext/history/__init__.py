# SPDX-License-Identifier: Apache-2.0
"""History you can query: estimated state (decimated), health events, identified parameters and command logs.

    store = open_store(HistorySettings(backend="parquet", path="history"))   # or backend="postgres", postgres_dsn=...
    writer = HistoryWriter(store, HistorySettings())
    writer.start()                                    # a background thread batches writes off the live path
    writer.record_state("panda-03", t_unix_ns, q, qd, std_q, "ok")     # [ndof] arrays; decimated per robot
    writer.record_health_event("panda-03", event.to_dict())
    rows = store.query("health", robot_id="panda-03", since_ns=now - 3600 * 10**9)

Two stores with one interface (`HistoryStore`): Parquet files partitioned by kind, day and robot (embedded,
no server; pyarrow) and PostgreSQL (psycopg 3). The writer never blocks the caller: records go to a bounded
buffer (``buffer_records``) that survives a dead database; past that size new records are dropped and counted.
Settings ``[history]``: docs/SETTINGS.md; design and sizes: docs/fleet.md.
"""

from .. import lazy_exports

_EXPORTS = {
    "HISTORY_KINDS": "._records",
    "HistoryRecord": "._records",
    "HistorySettings": "._settings",
    "HistoryError": "._settings",
    "HistoryStore": "._store",
    "open_store": "._store",
    "ParquetStore": "._parquet",
    "PostgresStore": "._postgres",
    "HistoryWriter": "._writer",
    "WriterStats": "._writer",
    "parse_since": "._query",
    "format_table": "._query",
    "plot_rows": "._query",
    "run_history_command": "._query",
    "add_history_arguments": "._query",
}

__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
