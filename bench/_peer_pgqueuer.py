"""PgQueuer side of ``bench.jobs_postgres``; runs in its own venv (pgqueuer 1.6, asyncpg).

Usage::

    python _peer_pgqueuer.py --db bench_pgqueuer_1 --phase throughput --jobs 10000 --batch-size 100
    python _peer_pgqueuer.py --db bench_pgqueuer_2 --phase latency --samples 200
    python _peer_pgqueuer.py --db bench_pgqueuer_3 --drop

Every run creates the database ``--db`` on the server of ``--admin-dsn``, installs PgQueuer's
schema, measures, and drops the database again. ``throughput``: the list form of
``Queries.enqueue`` (one statement per ``--chunk`` jobs, timed), then (unless ``--analyze 0``)
``ANALYZE`` (untimed), then one ``QueueManager`` (``batch_size`` jobs per fetch, no cap on
concurrent tasks) is run and timed until ``pgqueuer_log`` holds N ``successful`` entries.
PgQueuer deletes a job's row from its queue table when the job finishes and appends a slim row
(id, status, entrypoint) to its log. ``latency``: with a running manager, one job at a time
through a separate connection, from just before the enqueue call to the entrypoint's first
line. Runs on uvloop, as PgQueuer's own CLI does. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.domain.types import QueueExecutionMode
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from _pgcommon import db_url, event_loop, parser, report, summary, wait_for_count

COUNT_SUCCESSFUL = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful'"


async def create_database(admin_dsn: str, db: str) -> str:
    """Create ``db`` afresh; returns its URL."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{db}"')
    finally:
        await conn.close()
    return db_url(admin_dsn, db)


async def drop_database(admin_dsn: str, db: str) -> None:
    """Drop ``db`` if it exists."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await conn.close()


async def throughput(
    url: str, n: int, batch_size: int, chunk: int, analyze: bool
) -> dict[str, Any]:
    """Bulk insert N jobs, then process them with one queue manager."""
    setup = await asyncpg.connect(url)
    worker_conn = await asyncpg.connect(url)
    try:
        await Queries(AsyncpgDriver(setup)).install()
        producer = Queries(AsyncpgDriver(setup))
        t0 = time.perf_counter()
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            await producer.enqueue(["noop"] * size, [None] * size, [0] * size)
        insert_s = time.perf_counter() - t0
        queued = await setup.fetchval("SELECT count(*) FROM pgqueuer")
        if queued != n:
            raise SystemExit(f"{queued} of {n} jobs queued after enqueue")

        if analyze:
            await setup.execute("ANALYZE")
        qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
        handled = 0

        @qm.entrypoint("noop")
        async def noop(job: Job) -> None:
            nonlocal handled
            handled += 1

        t1 = time.perf_counter()
        runner = asyncio.create_task(
            qm.run(batch_size=batch_size, mode=QueueExecutionMode.continuous)
        )

        async def completed() -> int:
            return int(await setup.fetchval(COUNT_SUCCESSFUL))

        process_s = await wait_for_count(completed, n, t1, runner)
        qm.shutdown.set()
        await asyncio.wait_for(runner, 30)
        return {
            "insert_s": insert_s,
            "process_s": process_s,
            "handled": handled,
            "completed": await setup.fetchval(COUNT_SUCCESSFUL),
            "left_in_queue_table": await setup.fetchval("SELECT count(*) FROM pgqueuer"),
        }
    finally:
        await setup.close()
        if not worker_conn.is_closed():
            await worker_conn.close()


async def latency(url: str, samples: int) -> dict[str, Any]:
    """Enqueue-to-start latency on an idle queue (enqueue through another connection)."""
    setup = await asyncpg.connect(url)
    worker_conn = await asyncpg.connect(url)
    try:
        await Queries(AsyncpgDriver(setup)).install()
        producer = Queries(AsyncpgDriver(setup))
        qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
        started: list[float] = []
        signal = asyncio.Event()

        @qm.entrypoint("ping")
        async def ping(job: Job) -> None:
            started.append(time.perf_counter())
            signal.set()

        runner = asyncio.create_task(qm.run(mode=QueueExecutionMode.continuous))
        await asyncio.sleep(1.0)
        ms: list[float] = []
        for _ in range(samples):
            signal.clear()
            t0 = time.perf_counter()
            await producer.enqueue("ping", None)
            await asyncio.wait_for(signal.wait(), timeout=10)
            ms.append((started[-1] - t0) * 1000)
            await asyncio.sleep(0.02)
        qm.shutdown.set()
        await asyncio.wait_for(runner, 30)
        return {"client": summary(ms)}
    finally:
        await setup.close()
        if not worker_conn.is_closed():
            await worker_conn.close()


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    url = await create_database(args.admin_dsn, args.db)
    try:
        if args.phase == "throughput":
            return await throughput(url, args.jobs, args.batch_size, args.chunk, args.analyze)
        return await latency(url, args.samples)
    finally:
        await drop_database(args.admin_dsn, args.db)


def main() -> None:
    p = parser()
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--chunk", type=int, default=1000, help="jobs per enqueue call")
    args = p.parse_args()
    run, loop = event_loop()
    if args.drop:
        run(drop_database(args.admin_dsn, args.db))
        return
    report(run(_measure(args)), "pgqueuer", loop)


if __name__ == "__main__":
    main()
