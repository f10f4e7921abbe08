"""The SQLite pruner with a large history: index-backed short batches, pages given back."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from underway.jobs.config import Pruning
from underway.jobs.engines._sql import query
from underway.jobs.engines.sqlite import PRUNE_BATCH, SQLiteEngine
from underway.jobs.engines.sqlite import _engine as sqlite_engine
from underway.jobs.engines.sqlite._thread import migrate_schema
from underway.jobs.job import FINISHED_STATES, JobState

DAY = 86_400.0
NOW = time.time()
MAX_AGE = Pruning().max_age


def seed(conn: sqlite3.Connection, *, old: int, recent: int, payload: int = 0) -> None:
    """``old`` finished jobs past every retention, then ``recent`` within it, states mixed.

    One INSERT ... SELECT from a recursive CTE: 100k rows take well under a second.
    """
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :total)
        INSERT INTO underway_jobs (state, queue, worker, args, inserted_at, scheduled_at,
                                   completed_at, cancelled_at, discarded_at)
        SELECT s, 'default', 'w', '{"pad": "' || hex(zeroblob(:payload)) || '"}', t, t,
               CASE s WHEN 'completed' THEN t END, CASE s WHEN 'cancelled' THEN t END,
               CASE s WHEN 'discarded' THEN t END
          FROM (SELECT i,
                       CASE i % 10 WHEN 0 THEN 'cancelled' WHEN 1 THEN 'discarded'
                                   ELSE 'completed' END AS s,
                       CASE WHEN i <= :old THEN :now - 30 * :day ELSE :now - 60 END + i * 1e-6
                         AS t
                  FROM n)
        """,
        {"total": old + recent, "old": old, "now": NOW, "day": DAY, "payload": payload},
    )


def pragma(path: Path, name: str) -> int:
    """A pragma's value read on a new connection (one open since before a VACUUM that
    changed the file's mode may go on reporting the old mode)."""
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute(f"PRAGMA {name}").fetchone()[0])
    finally:
        conn.close()


def plan(conn: sqlite3.Connection, sql: str, params: dict[str, Any]) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


async def test_prune_statements_use_the_finished_jobs_index_with_a_large_history(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    conn = raw_db()
    seed(conn, old=1_000, recent=100_000)
    conn.execute("ANALYZE")  # statistics must not tempt the planner into a scan either

    for state in FINISHED_STATES:
        params = {"state": state.value, "before": NOW - DAY, "limit": PRUNE_BATCH}
        steps = plan(conn, query("sqlite", "prune"), params)
        assert any("USING INDEX underway_jobs_finished" in step for step in steps), steps
        assert not any(step.startswith("SCAN underway_jobs") for step in steps), steps


async def test_prune_deletes_at_most_limit_old_jobs_in_short_committed_batches(
    sqlite_engines: Callable[[str], SQLiteEngine],
    raw_db: Callable[[], sqlite3.Connection],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    conn = raw_db()
    seed(conn, old=3_000, recent=50_000)
    batches: list[tuple[int, bool]] = []
    run_batch = sqlite_engine._prune_batch

    def recorded(c: sqlite3.Connection, params: dict[str, Any]) -> int:
        deleted = run_batch(c, params)
        batches.append((deleted, c.in_transaction))
        return deleted

    monkeypatch.setattr(sqlite_engine, "_prune_batch", recorded)

    assert await engine.prune(MAX_AGE, NOW, 1_200) == 1_200
    assert all(n <= PRUNE_BATCH and not open_tx for n, open_tx in batches), batches
    assert len(batches) >= 1_200 // PRUNE_BATCH

    assert await engine.prune(MAX_AGE, NOW, 10_000) == 1_800  # the rest of the old ones
    assert await engine.prune(MAX_AGE, NOW, 10_000) == 0
    (left,) = conn.execute("SELECT COUNT(*) FROM underway_jobs").fetchone()
    assert left == 50_000


async def test_a_new_file_gives_the_pages_of_pruned_jobs_back(
    db_path: Path,
    sqlite_engines: Callable[[str], SQLiteEngine],
    raw_db: Callable[[], sqlite3.Connection],
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    conn = raw_db()
    assert pragma(db_path, "auto_vacuum") == 2  # INCREMENTAL, set before the first table
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    seed(conn, old=20_000, recent=5_000, payload=100)
    pages = pragma(db_path, "page_count")

    deleted = await engine.prune(MAX_AGE, NOW, 100_000)

    assert deleted == 20_000
    assert pragma(db_path, "freelist_count") == 0
    assert pragma(db_path, "page_count") < pages * 0.5


async def test_a_small_file_made_without_auto_vacuum_is_switched_by_the_pruner(
    db_path: Path,
    sqlite_engines: Callable[[str], SQLiteEngine],
    raw_db: Callable[[], sqlite3.Connection],
) -> None:
    conn = raw_db()  # as an older underway made it: WAL, schema, no auto-vacuum
    conn.execute("PRAGMA journal_mode=WAL")
    migrate_schema(conn)
    seed(conn, old=5_000, recent=1_000, payload=100)
    assert pragma(db_path, "auto_vacuum") == 0
    pages = pragma(db_path, "page_count")
    engine = sqlite_engines("")

    assert await engine.prune(MAX_AGE, NOW, 100_000) == 5_000

    assert pragma(db_path, "auto_vacuum") == 2
    assert pragma(db_path, "freelist_count") == 0
    assert pragma(db_path, "page_count") < pages * 0.5
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


async def test_a_large_file_is_left_with_a_warning_until_the_one_time_step(
    db_path: Path,
    sqlite_engines: Callable[[str], SQLiteEngine],
    raw_db: Callable[[], sqlite3.Connection],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    conn = raw_db()
    conn.execute("PRAGMA journal_mode=WAL")
    migrate_schema(conn)
    seed(conn, old=2_000, recent=1_000)
    monkeypatch.setattr(sqlite_engine, "AUTO_SWITCH_MAX_BYTES", 4096)  # "large"
    engine = sqlite_engines("")

    with caplog.at_level(logging.WARNING, logger="underway.jobs"):
        assert await engine.prune(MAX_AGE, NOW, 1_000) == 1_000
        assert await engine.prune(MAX_AGE, NOW, 1_000) == 1_000
    warnings = [r for r in caplog.records if "enable_incremental_vacuum" in r.getMessage()]
    assert len(warnings) == 1
    assert pragma(db_path, "auto_vacuum") == 0
    assert pragma(db_path, "freelist_count") > 0

    assert engine.enable_incremental_vacuum() is True
    assert pragma(db_path, "auto_vacuum") == 2
    assert pragma(db_path, "freelist_count") == 0  # VACUUM rewrote the file without them
    assert engine.enable_incremental_vacuum() is False


async def test_prune_keeps_jobs_of_unfinished_states_and_recent_ones(
    sqlite_engines: Callable[[str], SQLiteEngine], raw_db: Callable[[], sqlite3.Connection]
) -> None:
    engine = sqlite_engines("")
    await engine.open()
    conn = raw_db()
    seed(conn, old=100, recent=100)
    conn.execute(
        "INSERT INTO underway_jobs (state, queue, worker, inserted_at, scheduled_at) "
        "VALUES ('available', 'default', 'w', 0, 0)"
    )
    ages = {**MAX_AGE, JobState.AVAILABLE: 1.0}

    assert await engine.prune(ages, NOW, 1_000) == 100

    rows = dict(conn.execute("SELECT state, COUNT(*) FROM underway_jobs GROUP BY state"))
    assert rows == {"available": 1, "completed": 80, "cancelled": 10, "discarded": 10}
