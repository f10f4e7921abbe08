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

import asyncio
import json
import sys
import time
from typing import TYPE_CHECKING, Any, NoReturn

from _pgcommon import (
    LATENCY_QUEUE_LIMIT,
    Pings,
    create_database,
    drop_database,
    event_loop,
    parser,
    report,
    wait_for_count,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection

    from underway.jobs import Jobs

UNAVAILABLE = 3


class Unavailable(Exception):
    """underway cannot use PostgreSQL in this environment."""


def _unavailable(exc: BaseException) -> NoReturn:
    said = str(exc) if isinstance(exc, Unavailable) else f"{type(exc).__name__}: {exc}"
    print(json.dumps({"unavailable": said}), flush=True)
    sys.exit(UNAVAILABLE)


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

        async def completed() -> int:
            return await _count(watch, table, "completed")

        async with jobs:
            process_s = await wait_for_count(completed, n, t1)
        done = await completed()
    return {"insert_s": insert_s, "process_s": process_s, "handled": handled, "completed": done}


async def latency(url: str, samples: int) -> dict[str, Any]:
    """Enqueue-to-start latency on an idle queue, two ways of enqueueing."""
    jobs = await _migrated(url, "latency", LATENCY_QUEUE_LIMIT)
    client = _app(url, "latency", LATENCY_QUEUE_LIMIT)
    pings = Pings()

    @jobs.worker(queue="latency", name="bench.ping", max_attempts=1)
    async def ping(job: Any) -> None:
        pings.arrived(job.args["k"])

    @client.worker(queue="latency", name="bench.ping", max_attempts=1)
    async def ping_from_client(job: Any) -> None:
        raise AssertionError("the client app runs no node")

    async def enqueue(way: str, k: int) -> None:
        await (ping if way == "same" else ping_from_client).enqueue({"k": k})

    await client.engine.open()
    async with jobs:
        await asyncio.sleep(1.0)
        figures = await pings.measure(samples, enqueue)
    await client.engine.close()
    return figures


def main() -> None:
    args = parser(concurrency=100).parse_args()
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
    run, loop = event_loop()
    try:
        if args.phase == "throughput":
            out = run(throughput(url, args.jobs, args.concurrency, args.analyze))
        else:
            out = run(latency(url, args.samples))
    except Unavailable as exc:
        _unavailable(exc)
    finally:
        drop_database(args.admin_dsn, args.db)
    report(out, "underway", loop)


if __name__ == "__main__":
    main()
