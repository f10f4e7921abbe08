"""underway side of ``bench.jobs_postgres``: one measurement per process, on PostgreSQL.

Usage::

    python bench/_underway_pg.py --db bench_underway_1 --phase throughput --jobs 10000 \
        --concurrency 100
    python bench/_underway_pg.py --db bench_underway_2 --phase latency --samples 200
    python bench/_underway_pg.py --db bench_underway_3 --phase sustained --concurrency 64
    python bench/_underway_pg.py --db bench_underway_3 --phase producer
    python bench/_underway_pg.py --db bench_underway_4 --drop

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

``--history N`` first seeds N completed jobs (finish times spread over the past hours) with
``INSERT ... SELECT FROM generate_series`` and runs ``ANALYZE``; the throughput count then
only counts the jobs above the seeded ids. ``sustained``: creates and migrates the database
(and seeds the history), prints ``{"ready": ...}``, waits for ``go`` on stdin, runs a node
``Jobs(url, queues={"bench": C})`` with every other setting at its default (the pruner
included) whose worker sleeps 1 ms, prints ``{"sample": ...}`` every 10 s (see
``_pgcommon.Sampler``) until ``stop`` (or the end of stdin), then drops the database.
``producer``: keeps 4,000 jobs available in the database of a running ``sustained`` phase,
with ``await jobs.enqueue_many(...)`` of the missing ones in one call, until stdin closes.

Runs on the standard asyncio loop, like ``underway start`` (its CLI calls ``asyncio.run``).

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
    HISTORY_HOURS,
    LATENCY_QUEUE_LIMIT,
    WAITING_TARGET,
    Pings,
    Sampler,
    create_database,
    db_url,
    drop_database,
    emit,
    event_loop,
    history_chunks,
    keep_waiting,
    parser,
    progress,
    read_command,
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


async def _count(conn: AsyncConnection[Any], table: str, state: str, above: int = 0) -> int:
    cur = await conn.execute(
        f"SELECT count(*) FROM {table} WHERE state = %s AND id > %s", (state, above)
    )
    row = await cur.fetchone()
    return int(row[0]) if row else 0


# One completed job as a node leaves it: enqueued, started by a node a little later, done a
# few milliseconds after; finish times spread evenly over the past HISTORY_HOURS.
SEED = """
INSERT INTO {table} (state, queue, worker, args, attempt, max_attempts, inserted_at,
                     scheduled_at, attempted_at, attempted_by, completed_at)
SELECT 'completed', 'bench', %(worker)s, jsonb_build_object('t', g), 1, 20,
       f - interval '120 ms', f - interval '120 ms', f - interval '4 ms', 'bench-history-node', f
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       LATERAL (SELECT now() - (%(hours)s * interval '1 hour') * (1 - g::float8 / %(n)s)) AS t(f)
"""


async def seed_history(url: str, n: int, worker: str) -> int:
    """Seed ``n`` completed jobs of ``worker``, then ANALYZE; returns the highest job id."""
    import psycopg

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        table = await _table(conn)
        if n > 0:
            t0 = time.perf_counter()
            for first, last in history_chunks(n):
                await conn.execute(
                    SEED.format(table=table),
                    {
                        "worker": worker,
                        "first": first,
                        "last": last,
                        "n": n,
                        "hours": HISTORY_HOURS,
                    },
                )
                progress(
                    f"  underway history: {last:,} of {n:,} completed jobs seeded "
                    f"({time.perf_counter() - t0:.0f} s)"
                )
            await conn.execute("ANALYZE")
        cur = await conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}")
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def throughput(
    url: str, n: int, concurrency: int, analyze: bool, history: int
) -> dict[str, Any]:
    """Bulk insert N jobs, then process them with a node of queue limit ``concurrency``."""
    import psycopg

    producer = await _migrated(url, "bench", concurrency)
    above = await seed_history(url, history, "bench.noop")

    @producer.worker(queue="bench", name="bench.noop")
    async def noop(job: Any) -> None:
        return None

    await producer.engine.open()
    # The connection the insert goes through is made, and has read the jobs table, before
    # the clock starts, as PgQueuer's (which installed its schema) and the other peers' are:
    # the pool makes its connections in the background, and the first statement would wait.
    await producer.engine.available_sample(["bench"], 1)
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
        available = await _count(watch, table, "available", above)
        if available != n:
            raise SystemExit(f"{available} of {n} jobs available after enqueue_many")
        t1 = time.perf_counter()

        async def completed() -> int:
            return await _count(watch, table, "completed", above)

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


def _sleep_app(url: str, concurrency: int, sampler: Sampler | None) -> Jobs:
    """The sustained app: queue ``bench`` of limit ``concurrency``, a 1 ms job, defaults."""
    jobs = _app(url, "bench", concurrency)

    @jobs.worker(queue="bench", name="bench.sleep")
    async def sleep(job: Any) -> None:
        if sampler is None:
            raise AssertionError("the producer runs no node")
        sampler.started(job.args["t"])
        await asyncio.sleep(0.001)
        sampler.finished()

    return jobs


async def sustained(url: str, concurrency: int, history: int) -> dict[str, Any]:
    """Run a node on the producer's stream of 1 ms jobs, sampling every 10 s, until ``stop``."""
    migrated = await _migrated(url, "bench", concurrency)
    await migrated.engine.close()
    await seed_history(url, history, "bench.sleep")
    emit("ready", {"concurrency": concurrency})
    if await read_command() != "go":
        return {"samples": 0}
    sampler = Sampler()
    jobs = _sleep_app(url, concurrency, sampler)
    async with jobs:
        sampling = asyncio.create_task(sampler.run())
        await read_command()
        sampling.cancel()
    return {"finished_total": sampler.total}


async def producer(url: str) -> dict[str, Any]:
    """Keep 4,000 jobs available: ``enqueue_many`` of the missing ones in one call."""
    import psycopg

    jobs = _sleep_app(url, 1, None)
    sleep = jobs.workers["bench.sleep"]
    await jobs.engine.open()
    inserted = 0
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        table = await _table(conn)
        waiting_sql = (
            f"SELECT count(*) FROM (SELECT 1 FROM {table} WHERE state = 'available' "
            f"LIMIT {WAITING_TARGET}) AS w"
        )

        async def waiting() -> int:
            cur = await conn.execute(waiting_sql)
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        async def enqueue(k: int) -> None:
            nonlocal inserted
            t = time.time()
            await jobs.enqueue_many([sleep.new({"t": t}) for _ in range(k)])
            inserted += k

        await keep_waiting(waiting, enqueue)
    await jobs.engine.close()
    return {"inserted": inserted}


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
    # The loop of `underway start`: its CLI calls asyncio.run, with or without uvloop.
    run, loop = event_loop(uvloop_if_installed=False)
    if args.phase == "producer":
        report(run(producer(db_url(args.admin_dsn, args.db))), "underway", loop)
        return
    url = create_database(args.admin_dsn, args.db)
    try:
        if args.phase == "throughput":
            out = run(throughput(url, args.jobs, args.concurrency, args.analyze, args.history))
        elif args.phase == "sustained":
            out = run(sustained(url, args.concurrency, args.history))
        else:
            out = run(latency(url, args.samples))
    except Unavailable as exc:
        _unavailable(exc)
    finally:
        drop_database(args.admin_dsn, args.db)
    report(out, "underway", loop)


if __name__ == "__main__":
    main()
