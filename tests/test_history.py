# SPDX-License-Identifier: Apache-2.0
"""History: both stores keep and return what the twin wrote; the writer never blocks and survives a dead database."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import threading
import time
import tomllib
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")

from twin_ext.history import (  # noqa: E402
    HistoryRecord,
    HistorySettings,
    HistoryWriter,
    ParquetStore,
    format_table,
    open_store,
    parse_since,
)

REPO = Path(__file__).resolve().parents[1]
H = 3600 * 10**9


def _event(kind: str, joint: str = "panda_joint2", magnitude: float = 7.5) -> dict:
    return {"version": 1, "kind": kind, "joints": [joint], "magnitude": magnitude, "unit": "N·m",
            "message": f"{kind} on {joint}", "confidence": float("nan")}  # fmt: skip


def _fill(writer: HistoryWriter, now: int, robots=("panda-03", "panda-04"), n: int = 50) -> None:
    for r in robots:
        for k in range(n):
            t = now - (n - k) * 10**9
            writer.record_state(r, [0.1 * k, -0.2], [0.0, 0.1], [1e-3, 1e-3], "ok", t_ns=t)
            if k % 10 == 0:
                writer.record_health_event(r, _event("collision" if k else "friction_rise"), t_ns=t)
        writer.record_params(r, {"state": "ok", "joints": [{"name": "panda_joint2", "friction_ratio": 1.3}]}, t_ns=now)
        writer.record_command(r, {"kind": "stop", "command_id": "c1"}, t_ns=now)


def test_parquet_store_returns_what_was_written_by_robot_and_time_window(tmp_path):
    """Rows come back per robot, kind and [since, until), oldest first; compaction and a second query agree."""
    now = time.time_ns()
    store = ParquetStore(tmp_path / "h")
    writer = HistoryWriter(store, HistorySettings(state_every_s=0.0))
    _fill(writer, now)
    assert writer.flush()
    health = store.query("health", robot_id="panda-03", since_ns=now - H)
    assert [r["label"] for r in health] == ["friction_rise", "collision", "collision", "collision", "collision"]
    assert all(r["robot_id"] == "panda-03" for r in health)
    assert health[1]["doc"]["confidence"] is None  # NaN is stored as null (JSON/jsonb have no NaN)
    assert len(store.query("state", since_ns=now - 20 * 10**9)) == 2 * 20
    state = store.query("state", robot_id="panda-04", since_ns=now - H)
    assert [r["t_ns"] for r in state] == sorted(r["t_ns"] for r in state) and len(state) == 50
    assert state[3]["q"] == pytest.approx([0.3, -0.2])
    assert store.compact() >= 1
    assert list((tmp_path / "h" / "state").glob("day=*/robot=panda-04/part-*.parquet"))
    assert store.query("state", robot_id="panda-04", since_ns=now - H) == state
    assert len(store.query("commands")) == 2 and len(store.query("params", robot_id="panda-03")) == 1


def test_retention_deletes_old_days_and_keeps_recent_ones(tmp_path):
    """delete_before removes whole days older than the cutoff (Parquet) and nothing newer."""
    now = time.time_ns()
    store = ParquetStore(tmp_path / "h")
    old = now - 40 * 86_400 * 10**9
    store.write([HistoryRecord("health", "r1", old, "collision"), HistoryRecord("health", "r1", now, "collision")])
    assert len(store.query("health")) == 2
    assert store.delete_before(now - 30 * 86_400 * 10**9) == 1
    assert [r["t_ns"] for r in store.query("health")] == [now]


def test_writer_decimates_state_per_robot():
    """state_every_s keeps at most one state per robot per interval; other robots are not affected."""
    writer = HistoryWriter(_MemoryStore(), HistorySettings(state_every_s=0.1))
    for k in range(100):  # 1 kHz for 0.1 s... x10: 100 offers over 99 ms per robot
        for r in ("a", "b"):
            writer.record_state(r, [0.0], [0.0], [0.0], "ok", t_ns=k * 10**6)
    stats = writer.stats()
    assert stats.offered == 2 and stats.decimated == 198


class _MemoryStore:
    def __init__(self):
        self.rows, self.up, self.entered, self.release = [], True, threading.Event(), threading.Event()
        self.block = False

    def write(self, records):
        if self.block:
            self.entered.set()
            self.release.wait(10)
        if not self.up:
            raise ConnectionError("database is down")
        self.rows += records

    def delete_before(self, t_ns):
        return 0

    def close(self):
        pass


def test_offering_never_waits_for_a_store_that_is_stuck_in_a_write():
    """While the writer thread is blocked inside store.write, offering records still returns at once."""
    store = _MemoryStore()
    store.block = True
    writer = HistoryWriter(store, HistorySettings(flush_every_s=0.01))
    writer.offer(HistoryRecord("health", "r", 1, "x"))
    writer.start()
    assert store.entered.wait(10)  # the thread is inside write() and will stay there until released
    for k in range(1000):
        assert writer.offer(HistoryRecord("health", "r", 2 + k, "x"))
    assert writer.stats().buffered == 1001  # 1000 waiting + 1 in the stuck write
    store.release.set()
    store.block = False
    writer.stop()
    assert len(store.rows) == 1001 and writer.stats().dropped == 0


def test_a_dead_store_loses_nothing_up_to_the_buffer_then_counts_drops():
    """With the store down, buffer_records records are kept and written once it is back; the rest are counted."""
    store = _MemoryStore()
    store.up = False
    writer = HistoryWriter(store, HistorySettings(buffer_records=500, batch_records=100))
    for k in range(700):
        writer.offer(HistoryRecord("health", "r", k, "x"))
    assert not writer.flush()
    stats = writer.stats()
    assert (stats.buffered, stats.dropped, stats.write_failures, stats.store_ok) == (500, 200, 1, False)
    assert "database is down" in stats.last_error
    store.up = True
    while writer.stats().buffered:
        assert writer.flush()
    assert [r.t_ns for r in store.rows] == list(range(500))  # in order, none lost, none twice


def test_postgres_store_survives_a_database_restart(tmp_path):
    """A real PostgreSQL: rows offered while it is down are buffered, retried, and all arrive once it is back."""
    pytest.importorskip("psycopg")
    from postgres import Postgres, require_postgres

    require_postgres()
    now = time.time_ns()
    with Postgres(tmp_path / "pg") as pg:
        settings = HistorySettings(backend="postgres", postgres_dsn=pg.dsn, state_every_s=0.0, flush_every_s=0.05,
                                   retry_max_s=0.2)  # fmt: skip
        writer = HistoryWriter(open_store(settings), settings)
        writer.start()
        _fill(writer, now, n=20)
        _wait(lambda: writer.stats().buffered == 0)
        before = writer.stats().written
        pg.stop()
        _fill(writer, now + 100 * 10**9, n=20)  # the database is down: these wait in the buffer
        _wait(lambda: writer.stats().write_failures > 0)
        assert writer.stats().buffered > 0
        pg.start()
        _wait(lambda: writer.stats().buffered == 0)
        stats = writer.stats()
        assert stats.written == stats.offered == 2 * before and stats.dropped == 0 and stats.store_ok
        writer.stop()
        store = open_store(settings)
        assert len(store.query("health", robot_id="panda-03", since_ns=now - H, until_ns=now + H)) == 4
        assert len(store.query("state", robot_id="panda-04")) == 40
        store.close()
        out = _cli("history", "query", "--dsn", pg.dsn, "--robot", "panda-03", "--since", "1h", "--what", "health")
        assert out.returncode == 0, out.stderr
        assert "friction_rise" in out.stdout and "panda-03" in out.stdout and "panda-04" not in out.stdout


def test_history_query_command_prints_a_table_and_plots(tmp_path):
    """`python -m twin_ext history query` reads the Parquet store, prints a table and writes a plot."""
    now = time.time_ns()
    store = ParquetStore(tmp_path / "h")
    writer = HistoryWriter(store, HistorySettings(state_every_s=0.0))
    _fill(writer, now)
    writer.flush()
    out = _cli("history", "query", "--path", str(tmp_path / "h"), "--robot", "panda-03", "--since", "1h",
               "--what", "health")  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert re.search(r"panda-03\s+collision\s+panda_joint2 7.5 N·m", out.stdout), out.stdout
    assert "(5 rows)" in out.stdout
    png = tmp_path / "q.png"
    out = _cli("history", "query", "--path", str(tmp_path / "h"), "--robot", "panda-04", "--since", "10m",
               "--what", "state", "--plot", str(png))  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert png.stat().st_size > 1000
    params = _cli("history", "query", "--path", str(tmp_path / "h"), "--robot", "panda-03", "--what", "params")
    assert params.returncode == 0 and "state ok; panda_joint2 friction x1.30" in params.stdout, params.stderr
    bad = _cli("history", "query", "--path", str(tmp_path / "h"), "--since", "yesterday")
    assert bad.returncode == 2 and "90s, 30m, 1h" in bad.stderr


def test_parse_since_and_table_formats():
    """Durations and ISO times both work; an empty result says so."""
    assert parse_since("1h", now_ns=10 * H) == 9 * H
    assert parse_since("2026-12-02T00:00:00") == 1796169600 * 10**9
    assert format_table([]) == "(no rows)"


def test_history_settings_are_in_twin_toml_and_documented():
    """[history] in config/twin.toml states the defaults, and docs/SETTINGS.md has a row for every key."""
    with open(REPO / "config" / "twin.toml", "rb") as fh:
        raw = tomllib.load(fh)["history"]
    defaults = {f.name: f.default for f in dataclasses.fields(HistorySettings)}
    assert raw == defaults
    docs = (REPO / "docs" / "SETTINGS.md").read_text().split("\n## history\n", 1)[1].split("\n## ", 1)[0]
    for name in defaults:
        assert re.search(rf"^\| `{name}` \|", docs, flags=re.M), name
    with pytest.raises(Exception, match=r"\[history\] unknown key 'backnd'"):
        HistorySettings.from_mapping({"backnd": "parquet"})


def _wait(predicate, timeout_s: float = 30.0) -> None:
    end = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < end, "condition not reached in time"
        time.sleep(0.02)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "twin_ext", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)  # fmt: skip
