"""How long the SQLite pruner holds the write lock, with a large history of finished jobs.

Usage::

    python -m bench.sqlite_prune                 # 1,000,000 finished jobs, 20,000 old
    python -m bench.sqlite_prune --rows 200000 --old 50000 --limit 5000

A fresh database file (created by the engine, so with the engine's schema and pragmas) is
seeded with ``--rows`` completed jobs: the first ``--old`` of them (the lowest ids, as in
a real table) finished two days ago, past the default retention of one day, the others
within it; and 1,000 available jobs. Then one tick of the node's
:class:`~underway.jobs._runtime.pruner.Pruner` runs (``prune(max_age, now, limit)`` calls with
the default ``Pruning().max_age``: one tick of the node's pruner), while another
thread claims with its own connection, as a node of another process would: it takes the
write lock (``BEGIN IMMEDIATE``) and commits, over and over. Reported:

- ``lock_ms``: every statement the prune ran on the engine's database thread (a delete
  batch, an incremental-vacuum step), timed from start to commit: the longest and the
  median. Each one holds the write lock for its whole duration.
- ``claim_wait_ms``: how long the other connection waited for the write lock (longest,
  99th percentile): what a claim of another process is delayed by.
- ``file``: the file's size, pages and free pages before and after the prune.

Timed figures live here, never in the test suite. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
DAY = 86_400.0


def _seed(path: str, rows: int, old_rows: int) -> float:
    """Insert ``rows`` completed jobs (``old_rows`` of them two days old), 1,000 available."""
    conn = sqlite3.connect(path, isolation_level=None)
    t0 = time.perf_counter()
    now = time.time()
    conn.execute("BEGIN")
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :rows)
        INSERT INTO underway_jobs
            (state, queue, worker, args, inserted_at, scheduled_at, attempt,
             attempted_at, attempted_by, completed_at)
        SELECT 'completed', 'default', 'bench.noop', '{"n": ' || i || '}', t, t, 1,
               t, 'node', t
          FROM (SELECT i, CASE WHEN i <= :old_rows THEN :now - 2 * :day + i * 1e-3
                               ELSE :now - 3600 + i * 1e-3 END AS t FROM n)
        """,
        {"rows": rows, "old_rows": old_rows, "now": now, "day": DAY},
    )
    conn.execute(
        """
        WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000)
        INSERT INTO underway_jobs (state, queue, worker, inserted_at, scheduled_at)
        SELECT 'available', 'default', 'bench.noop', :now, :now FROM n
        """,
        {"now": now},
    )
    conn.execute("COMMIT")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return time.perf_counter() - t0


def _file(path: str) -> dict[str, Any]:
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        free = conn.execute("PRAGMA freelist_count").fetchone()[0]
        auto_vacuum = conn.execute("PRAGMA auto_vacuum").fetchone()[0]
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    return {
        "bytes": os.path.getsize(path),
        "pages": pages,
        "free_pages": free,
        "page_size": page_size,
        "auto_vacuum": {0: "none", 1: "full", 2: "incremental"}.get(auto_vacuum, auto_vacuum),
    }


class Claimer(threading.Thread):
    """Takes and releases the write lock on its own connection, timing each wait."""

    def __init__(self, path: str) -> None:
        super().__init__(name="claimer", daemon=True)
        self.path = path
        self.waits: list[float] = []
        self.halt = threading.Event()

    def run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        try:
            while not self.halt.is_set():
                t0 = time.perf_counter()
                conn.execute("BEGIN IMMEDIATE")
                self.waits.append(time.perf_counter() - t0)
                conn.execute("COMMIT")
                time.sleep(0.0005)
        finally:
            conn.close()


def _timed_calls(engine: Any, spans: list[float]) -> None:
    """Time every function the engine runs on its database thread."""
    db = engine._db
    run = db.run

    def timed(fn: Callable[[sqlite3.Connection], T]) -> T:
        t0 = time.perf_counter()
        try:
            return run(fn)
        finally:
            spans.append(time.perf_counter() - t0)

    db.run = timed


async def _measure(path: str, limit: int) -> dict[str, Any]:
    from underway.jobs._runtime.pruner import Pruner
    from underway.jobs.config import Pruning
    from underway.jobs.engines.sqlite import SQLiteEngine

    engine = SQLiteEngine(f"sqlite:///{path}")
    await engine.open()
    spans: list[float] = []
    _timed_calls(engine, spans)
    claimer = Claimer(path)
    claimer.start()
    await asyncio.sleep(0.2)
    prune = engine.prune
    deleted, calls = 0, 0

    async def counted(*args: Any) -> int:
        nonlocal deleted, calls
        calls += 1
        n: int = await prune(*args)
        deleted += n
        return n

    engine.prune = counted
    pruner = Pruner(engine, interval=60.0, max_age=Pruning().max_age, limit=limit, node="b")
    t0 = time.perf_counter()
    await pruner.tick()
    elapsed = time.perf_counter() - t0
    await asyncio.sleep(0.2)
    claimer.halt.set()
    await asyncio.to_thread(claimer.join)
    await engine.close()
    waits = sorted(claimer.waits)
    return {
        "deleted": deleted,
        "prune_calls": calls,
        "prune_s": round(elapsed, 3),
        "statements": len(spans),
        "lock_ms": {
            "max": round(max(spans) * 1e3, 2),
            "median": round(statistics.median(spans) * 1e3, 2),
            "longest": [round(x * 1e3, 2) for x in sorted(spans)[-5:]],
        },
        "claim_wait_ms": {
            "max": round(waits[-1] * 1e3, 2),
            "p99": round(waits[int(0.99 * (len(waits) - 1))] * 1e3, 2),
            "claims": len(waits),
        },
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.sqlite_prune``."""
    p = argparse.ArgumentParser(prog="python -m bench.sqlite_prune", description=__doc__)
    p.add_argument("--rows", type=int, default=1_000_000, help="finished jobs to seed")
    p.add_argument("--old", type=int, default=20_000, help="of which past the retention")
    p.add_argument("--limit", type=int, default=10_000, help="the pruner's Pruning.limit")
    p.add_argument("--db", help="database file to create (default: in a temporary folder)")
    args = p.parse_args(argv)
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
    from underway.jobs.engines.sqlite import SQLiteEngine

    with tempfile.TemporaryDirectory(prefix="underway-prune-") as tmp:
        path = args.db or str(Path(tmp) / "prune.db")
        SQLiteEngine(f"sqlite:///{path}").close_sync()  # create: schema and pragmas
        engine = SQLiteEngine(f"sqlite:///{path}")
        engine.migrate()
        engine.close_sync()
        seed_s = _seed(path, args.rows, args.old)
        before = _file(path)
        print(f"seeded {args.rows:,} finished jobs in {seed_s:.1f}s: {before}", flush=True)
        result = asyncio.run(_measure(path, args.limit))
        after = _file(path)
        print(
            f"a pruner tick (limit={args.limit:,}, {result['prune_calls']} prune calls) deleted "
            f"{result['deleted']:,} in {result['prune_s']}s over {result['statements']} "
            "statements; write lock held "
            f"at most {result['lock_ms']['max']} ms (median {result['lock_ms']['median']} "
            f"ms); another connection waited at most {result['claim_wait_ms']['max']} ms "
            f"for it",
            flush=True,
        )
        print(f"file after: {after}", flush=True)
        figures = {"rows": args.rows, "old": args.old, "limit": args.limit, **result}
        print(json.dumps({**figures, "file_before": before, "file_after": after}), flush=True)


if __name__ == "__main__":
    main()
