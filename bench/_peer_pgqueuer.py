"""PgQueuer side of ``bench.jobs_postgres``; runs in its own venv (pgqueuer 1.6, asyncpg).

Usage::

    python _peer_pgqueuer.py --db bench_pgqueuer_1 --phase throughput --jobs 10000 --batch-size 100
    python _peer_pgqueuer.py --db bench_pgqueuer_2 --phase latency --samples 200
    python _peer_pgqueuer.py --db bench_pgqueuer_3 --phase sustained --batch-size 100
    python _peer_pgqueuer.py --db bench_pgqueuer_3 --phase producer
    python _peer_pgqueuer.py --db bench_pgqueuer_4 --drop

Every run creates the database ``--db`` on the server of ``--admin-dsn``, installs PgQueuer's
schema, measures, and drops the database again. ``throughput``: the list form of
``Queries.enqueue`` (all N jobs in one call unless ``--chunk`` says fewer, timed), then
(unless ``--analyze 0``) ``ANALYZE`` (untimed), then one ``QueueManager`` (``batch_size``
jobs per fetch, no cap on concurrent tasks) is run and timed until ``pgqueuer_log`` holds N
``successful`` entries.
PgQueuer deletes a job's row from its queue table when the job finishes and appends a slim row
(id, status, entrypoint) to its log. ``latency``: with a running manager, one job at a time
through a separate connection, from just before the enqueue call to the entrypoint's first
line. Runs on uvloop, as PgQueuer's own CLI does. Prints one JSON object as the last line.

``--history N`` first seeds what N finished jobs leave behind: PgQueuer deletes a finished
job's row, and its log keeps three rows per job (``queued``, ``picked``, ``successful``), so
3N log rows with finish times spread over the past hours, already folded into its statistics
(``aggregated``), then ``ANALYZE``. The throughput count then only counts log rows above the
seeded ids. ``sustained``: installs the schema (and seeds the history), prints
``{"ready": ...}``, waits for ``go`` on stdin, runs one ``QueueManager`` (``batch_size`` B, no
task cap, continuous mode) whose entrypoint sleeps 1 ms, prints ``{"sample": ...}`` every 10 s
until ``stop``, then drops the database. ``producer``: keeps 4,000 jobs queued in the database
of a running ``sustained`` phase with the list form of ``Queries.enqueue`` (the missing ones in
one call), until stdin closes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import asyncpg
from pgqueuer.db import AsyncpgDriver
from pgqueuer.domain.types import QueueExecutionMode
from pgqueuer.models import Job
from pgqueuer.qm import QueueManager
from pgqueuer.queries import Queries

from _pgcommon import (
    HISTORY_HOURS,
    WAITING_TARGET,
    Sampler,
    db_url,
    emit,
    event_loop,
    history_chunks,
    keep_waiting,
    parser,
    progress,
    read_command,
    report,
    summary,
    wait_for_count,
)

COUNT_SUCCESSFUL = "SELECT count(*) FROM pgqueuer_log WHERE status = 'successful' AND id > $1"
# What one finished job leaves in the log: queued, picked a little later, successful a few
# ms after that, all aggregated; finish times spread evenly over the past HISTORY_HOURS.
SEED_LOG = """
INSERT INTO pgqueuer_log (created, job_id, status, entrypoint, priority, aggregated)
SELECT f - s.ago, g, s.status::pgqueuer_status, $1, 0, TRUE
  FROM generate_series($2::bigint, $3::bigint) AS g,
       LATERAL (SELECT now() - ($4::float8 * interval '1 hour') * (1 - g::float8 / $5)) AS t(f),
       (VALUES ('queued', interval '120 ms'), ('picked', interval '4 ms'),
               ('successful', interval '0 ms')) AS s(status, ago)
"""
WAITING = (
    f"SELECT count(*) FROM (SELECT 1 FROM pgqueuer WHERE status = 'queued' "
    f"LIMIT {WAITING_TARGET}) AS w"
)


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


async def seed_history(conn: asyncpg.Connection, n: int, entrypoint: str) -> int:
    """Seed the log rows of ``n`` finished jobs, then ANALYZE; returns the highest log id."""
    if n > 0:
        t0 = time.perf_counter()
        for first, last in history_chunks(n):
            await conn.execute(SEED_LOG, entrypoint, first, last, HISTORY_HOURS, n)
            progress(
                f"  PgQueuer history: {last:,} of {n:,} finished jobs seeded "
                f"({3 * last:,} log rows, {time.perf_counter() - t0:.0f} s)"
            )
        # The seeded jobs had the ids the queue table hands out next.
        await conn.execute("SELECT setval(pg_get_serial_sequence('pgqueuer', 'id'), $1)", n)
        await conn.execute("ANALYZE")
    return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM pgqueuer_log"))


async def throughput(
    url: str, n: int, batch_size: int, chunk: int, analyze: bool, history: int
) -> dict[str, Any]:
    """Bulk insert N jobs, then process them with one queue manager."""
    setup = await asyncpg.connect(url)
    worker_conn = await asyncpg.connect(url)
    try:
        await Queries(AsyncpgDriver(setup)).install()
        above = await seed_history(setup, history, "noop")
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
            return int(await setup.fetchval(COUNT_SUCCESSFUL, above))

        process_s = await wait_for_count(completed, n, t1, runner)
        qm.shutdown.set()
        await asyncio.wait_for(runner, 30)
        return {
            "insert_s": insert_s,
            "process_s": process_s,
            "handled": handled,
            "completed": await setup.fetchval(COUNT_SUCCESSFUL, above),
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


async def sustained(url: str, batch_size: int, history: int) -> dict[str, Any]:
    """Run a queue manager on the producer's stream of 1 ms jobs, sampling every 10 s."""
    setup = await asyncpg.connect(url)
    try:
        await Queries(AsyncpgDriver(setup)).install()
        await seed_history(setup, history, "sleep")
    finally:
        await setup.close()
    emit("ready", {"batch_size": batch_size})
    if await read_command() != "go":
        return {"samples": 0}
    worker_conn = await asyncpg.connect(url)
    sampler = Sampler()
    try:
        qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))

        @qm.entrypoint("sleep")
        async def sleep(job: Job) -> None:
            sampler.started(json.loads(job.payload or b"{}")["t"])
            await asyncio.sleep(0.001)
            sampler.finished()

        runner = asyncio.create_task(
            qm.run(batch_size=batch_size, mode=QueueExecutionMode.continuous)
        )
        sampling = asyncio.create_task(sampler.run())
        await read_command()
        sampling.cancel()
        qm.shutdown.set()
        await asyncio.wait_for(runner, 30)
    finally:
        if not worker_conn.is_closed():
            await worker_conn.close()
    return {"finished_total": sampler.total}


async def producer(url: str) -> dict[str, Any]:
    """Keep 4,000 jobs queued: the list form of ``Queries.enqueue`` for the missing ones."""
    conn = await asyncpg.connect(url)
    queries = Queries(AsyncpgDriver(conn))
    inserted = 0

    async def waiting() -> int:
        return int(await conn.fetchval(WAITING))

    async def enqueue(k: int) -> None:
        nonlocal inserted
        payload = json.dumps({"t": time.time()}).encode()
        await queries.enqueue(["sleep"] * k, [payload] * k, [0] * k)
        inserted += k

    try:
        await keep_waiting(waiting, enqueue)
    finally:
        await conn.close()
    return {"inserted": inserted}


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    if args.phase == "producer":
        return await producer(db_url(args.admin_dsn, args.db))
    url = await create_database(args.admin_dsn, args.db)
    try:
        if args.phase == "throughput":
            chunk = args.chunk or args.jobs
            return await throughput(
                url, args.jobs, args.batch_size, chunk, args.analyze, args.history
            )
        if args.phase == "sustained":
            return await sustained(url, args.batch_size, args.history)
        return await latency(url, args.samples)
    finally:
        await drop_database(args.admin_dsn, args.db)


def main() -> None:
    p = parser()
    p.add_argument("--batch-size", type=int, default=100)
    p.add_argument("--chunk", type=int, default=0, help="jobs per enqueue call (0: all in one)")
    args = p.parse_args()
    run, loop = event_loop()
    if args.drop:
        run(drop_database(args.admin_dsn, args.db))
        return
    report(run(_measure(args)), "pgqueuer", loop)


if __name__ == "__main__":
    main()
