"""underway side of ``bench.jobs_postgres``: one measurement per process, on PostgreSQL.

Usage::

    python bench/_underway_pg.py --db bench_underway_1 --phase throughput --jobs 10000 \
        --concurrency 100
    python bench/_underway_pg.py --db bench_underway_2 --phase latency --samples 200
    python bench/_underway_pg.py --db bench_underway_3 --drop

Every run creates the database ``--db`` on the server of ``--admin-dsn``, applies underway's
migrations, measures, and drops the database again. ``throughput``: ``await
jobs.enqueue_many([noop.new({}) ...])`` of N no-op jobs (timed, building the specs included),
then (unless ``--analyze 0``) ``ANALYZE`` (untimed), then a fresh ``Jobs(url, queues={"bench":
C})`` runs a node (``async with jobs:``), timed until a ``count(*)`` of ``completed`` rows on a
separate connection, every 20 ms, sees N: acks are batched, so a job counts only once it is
durably completed. Finished jobs keep their rows. ``latency``: with a running node, one job at
a time, from just before the enqueue call to the worker's first line; once through the app that
runs the node (its own enqueue wakes its queue in-process) and once through a second app
without a node (the node must learn of the job through the database).

Prints one JSON object as the last line. When underway cannot run on PostgreSQL here (no
``postgres`` extra installed, or no PostgreSQL engine in this version) it prints
``{"unavailable": "<error>"}`` and exits with status 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import statistics
import sys
import time
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from underway.jobs import Jobs

POLL_EVERY = 0.02
TIMEOUT = 300.0
LATENCY_QUEUE_LIMIT = 10
UNAVAILABLE = 3


class Unavailable(Exception):
    """underway cannot use PostgreSQL in this environment."""


def _unavailable(exc: BaseException) -> NoReturn:
    said = str(exc) if isinstance(exc, Unavailable) else f"{type(exc).__name__}: {exc}"
    print(json.dumps({"unavailable": said}), flush=True)
    sys.exit(UNAVAILABLE)


def _db_url(admin_dsn: str, db: str) -> str:
    return f"{admin_dsn.rpartition('/')[0]}/{db}"


def create_database(admin_dsn: str, db: str) -> str:
    """Create ``db`` afresh; returns its URL."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    return _db_url(admin_dsn, db)


def drop_database(admin_dsn: str, db: str) -> None:
    """Drop ``db`` if it exists."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


def summary(ms: list[float]) -> dict[str, float]:
    """p50, p95 (nearest rank) and max of latencies in milliseconds."""
    ordered = sorted(ms)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {
        "p50_ms": round(statistics.median(ordered), 2),
        "p95_ms": round(p95, 2),
        "max_ms": round(ordered[-1], 2),
        "samples": len(ordered),
    }


def _app(url: str, queue: str, concurrency: int) -> Jobs:
    """A ``Jobs`` app on ``url``; a refusal of the URL means no PostgreSQL engine here."""
    from underway.errors import ConfigError
    from underway.jobs import Jobs

    try:
        return Jobs(url, queues={queue: concurrency})
    except (ConfigError, ImportError) as exc:
        raise Unavailable(f"{type(exc).__name__}: {exc}") from exc


async def _migrated(url: str, queue: str, concurrency: int) -> Jobs:
    app = _app(url, queue, concurrency)
    await asyncio.to_thread(app.migrate_sync)
    return app


async def _table(conn: AsyncConnection[Any]) -> str:
    """The qualified name of underway's jobs table in this database."""
    cur = await conn.execute(
        "SELECT quote_ident(table_schema) || '.' || quote_ident(table_name) "
        "FROM information_schema.tables WHERE table_name = 'underway_jobs' "
        "ORDER BY table_schema = ANY(current_schemas(false)) DESC LIMIT 1"
    )
    row = await cur.fetchone()
    if row is None:
        raise SystemExit("no underway_jobs table after migrating")
    return str(row[0])


async def _count(conn: AsyncConnection[Any], table: str, state: str) -> int:
    cur = await conn.execute(f"SELECT count(*) FROM {table} WHERE state = %s", (state,))
    row = await cur.fetchone()
    return int(row[0]) if row else 0


async def throughput(url: str, n: int, concurrency: int, analyze: bool) -> dict[str, Any]:
    """Bulk insert N jobs, then process them with a node of queue limit ``concurrency``."""
    import psycopg

    producer = await _migrated(url, "bench", concurrency)

    @producer.worker(queue="bench", name="bench.noop")
    async def noop(job: Any) -> None:
        return None

    await producer.engine.open()
    t0 = time.perf_counter()
    inserted = await producer.enqueue_many([noop.new({}) for _ in range(n)])
    insert_s = time.perf_counter() - t0
    await producer.engine.close()
    if len(inserted) != n:
        raise SystemExit(f"enqueue_many returned {len(inserted)} of {n} jobs")

    jobs = _app(url, "bench", concurrency)
    handled = 0

    @jobs.worker(queue="bench", name="bench.noop")
    async def noop_run(job: Any) -> None:
        nonlocal handled
        handled += 1

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watch:
        if analyze:
            await watch.execute("ANALYZE")
        table = await _table(watch)
        available = await _count(watch, table, "available")
        if available != n:
            raise SystemExit(f"{available} of {n} jobs available after enqueue_many")
        t1 = time.perf_counter()
        process_s = None
        async with jobs:
            while process_s is None:
                if await _count(watch, table, "completed") >= n:
                    process_s = time.perf_counter() - t1
                elif time.perf_counter() - t1 > TIMEOUT:
                    done = await _count(watch, table, "completed")
                    raise SystemExit(f"only {done} of {n} jobs completed in {TIMEOUT:.0f} s")
                else:
                    await asyncio.sleep(POLL_EVERY)
        completed = await _count(watch, table, "completed")
    return {
        "insert_s": insert_s,
        "process_s": process_s,
        "handled": handled,
        "completed": completed,
    }


async def latency(url: str, samples: int) -> dict[str, Any]:
    """Enqueue-to-start latency on an idle queue, two ways of enqueueing."""
    jobs = await _migrated(url, "latency", LATENCY_QUEUE_LIMIT)
    client = _app(url, "latency", LATENCY_QUEUE_LIMIT)
    started: dict[int, float] = {}
    signals: dict[int, asyncio.Event] = {}

    @jobs.worker(queue="latency", name="bench.ping", max_attempts=1)
    async def ping(job: Any) -> None:
        k = job.args["k"]
        started[k] = time.perf_counter()
        signals[k].set()

    @client.worker(queue="latency", name="bench.ping", max_attempts=1)
    async def ping_from_client(job: Any) -> None:
        raise AssertionError("the client app runs no node")

    await client.engine.open()
    ways: dict[str, list[float]] = {"same": [], "client": []}
    async with jobs:
        await asyncio.sleep(1.0)
        for k in range(2 * samples):
            way = "same" if k % 2 == 0 else "client"
            signals[k] = asyncio.Event()
            t0 = time.perf_counter()
            await (ping if way == "same" else ping_from_client).enqueue({"k": k})
            await asyncio.wait_for(signals[k].wait(), timeout=10)
            ways[way].append((started[k] - t0) * 1000)
            await asyncio.sleep(0.02)
    await client.engine.close()
    return {way: summary(ms) for way, ms in ways.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--db", required=True)
    p.add_argument("--phase", choices=["throughput", "latency"], default="throughput")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--analyze", type=int, choices=[0, 1], default=1, help="ANALYZE after insert")
    p.add_argument("--concurrency", type=int, default=100)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--drop", action="store_true", help="only drop --db")
    args = p.parse_args()
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401

        import underway.jobs  # noqa: F401
    except ImportError as exc:
        _unavailable(exc)
    if args.drop:
        drop_database(args.admin_dsn, args.db)
        return
    url = create_database(args.admin_dsn, args.db)
    try:
        if args.phase == "throughput":
            out = asyncio.run(throughput(url, args.jobs, args.concurrency, args.analyze))
        else:
            out = asyncio.run(latency(url, args.samples))
    except Unavailable as exc:
        _unavailable(exc)
    finally:
        drop_database(args.admin_dsn, args.db)
    out["version"] = version("underway")
    out["python"] = platform.python_version()
    out["loop"] = "asyncio"
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
