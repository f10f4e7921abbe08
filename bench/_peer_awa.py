"""awa side of ``bench.jobs_postgres``; runs in its own venv (awa-pg 0.6.9, Rust core).

Usage::

    python _peer_awa.py --db bench_awa_1 --phase throughput --jobs 10000 --concurrency 200
    python _peer_awa.py --db bench_awa_2 --phase latency --samples 200
    python _peer_awa.py --db bench_awa_3 --drop

Every run creates the database ``--db`` on the server of ``--admin-dsn``, runs
``awa.migrate()`` and activates awa's queue storage (``awa.storage_auto_finalize_if_fresh``),
measures, and drops the database again. ``throughput``: ``AsyncClient.enqueue_many_copy`` of N
no-op jobs in one call (COPY, timed), then (unless ``--analyze 0``) ``ANALYZE`` (untimed), then
one ``AsyncClient`` with an ``async def`` no-op handler is started with ``[("bench", C)]`` and
timed until the database counts N completed jobs. Queue storage does not keep one row per
finished job: completions are written as compact receipt batches and finished segments are
truncated with their counts folded into rollups, so the count adds those up. ``latency``: with
a running client, one job at a time, from just before ``insert`` to the handler's first line;
once through the client that runs the worker, once through a second client. Prints one JSON
object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import dataclass
from typing import Any

import awa
import psycopg

from _pgcommon import (
    LATENCY_QUEUE_LIMIT,
    Pings,
    create_database,
    drop_database,
    parser,
    report,
    wait_for_count,
)

POOL_SIZE = 10

COUNT_COMPLETED = """
SELECT (
    (SELECT coalesce(sum(completed_count), 0)
       FROM awa.receipt_completion_batches WHERE queue = %(q)s)
  + (SELECT count(*) FROM awa.done_entries WHERE queue = %(q)s AND state = 'completed')
  + (SELECT coalesce(sum(pruned_completed_count), 0)
       FROM awa.queue_terminal_rollups WHERE queue = %(q)s)
  - (SELECT count(*) FROM awa.receipt_completion_tombstones WHERE queue = %(q)s)
)::bigint
"""


@dataclass
class Noop:
    """Arguments of the no-op job."""

    i: int


@dataclass
class Ping:
    """Arguments of the latency job."""

    k: int


async def prepare_database(admin_dsn: str, db: str) -> str:
    """Create ``db`` afresh, migrate it and activate queue storage; returns its URL."""
    url = create_database(admin_dsn, db)
    await awa.migrate(url)
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT awa.storage_auto_finalize_if_fresh('awa')").fetchone()
    if not row or not row[0]:
        raise SystemExit("awa queue storage did not activate on a fresh database")
    return url


async def throughput(url: str, n: int, concurrency: int, analyze: bool) -> dict[str, Any]:
    """Bulk insert N jobs with COPY, then process them with one client."""
    queue = "bench"
    producer = awa.AsyncClient(url, max_connections=POOL_SIZE)
    # Connected before the clock starts, as every system's inserting connection is.
    await producer.health_check()
    t0 = time.perf_counter()
    inserted = await producer.enqueue_many_copy([Noop(i) for i in range(n)], queue=queue)
    insert_s = time.perf_counter() - t0
    await producer.close()
    if inserted != n:
        raise SystemExit(f"enqueue_many_copy inserted {inserted} of {n} jobs")

    client = awa.AsyncClient(url, max_connections=POOL_SIZE)
    handled = 0

    @client.task(Noop, queue=queue)
    async def noop(job: Any) -> None:
        nonlocal handled
        handled += 1

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watch:
        if analyze:
            await watch.execute("ANALYZE")

        async def completed() -> int:
            cur = await watch.execute(COUNT_COMPLETED, {"q": queue})
            row = await cur.fetchone()
            return int(row[0]) if row else 0

        t1 = time.perf_counter()
        await client.start([(queue, concurrency)])
        process_s = await wait_for_count(completed, n, t1)
        await client.shutdown()
        await client.close()
        done = await completed()
    return {"insert_s": insert_s, "process_s": process_s, "handled": handled, "completed": done}


async def latency(url: str, samples: int) -> dict[str, Any]:
    """Enqueue-to-start latency on an idle queue, two ways of enqueueing."""
    client = awa.AsyncClient(url, max_connections=POOL_SIZE)
    other = awa.AsyncClient(url, max_connections=POOL_SIZE)
    pings = Pings()

    @client.task(Ping, queue="latency")
    async def ping(job: Any) -> None:
        pings.arrived(job.args.k)

    async def enqueue(way: str, k: int) -> None:
        await (client if way == "same" else other).insert(Ping(k), queue="latency")

    await client.start([("latency", LATENCY_QUEUE_LIMIT)])
    await asyncio.sleep(1.0)
    figures = await pings.measure(samples, enqueue)
    await client.shutdown()
    await client.close()
    await other.close()
    return figures


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    url = await prepare_database(args.admin_dsn, args.db)
    if args.phase == "throughput":
        return await throughput(url, args.jobs, args.concurrency, args.analyze)
    return await latency(url, args.samples)


def main() -> None:
    args = parser(concurrency=200).parse_args()
    if args.drop:
        drop_database(args.admin_dsn, args.db)
        return
    try:
        out = asyncio.run(_measure(args))
    finally:
        drop_database(args.admin_dsn, args.db)
    report(out, "awa-pg", "asyncio")


if __name__ == "__main__":
    main()
