"""oban-py side of ``bench.jobs_postgres``; runs in its own venv (oban 0.7, Python >= 3.12).

Usage::

    python _peer_obanpy.py --db bench_obanpy_1 --phase throughput --jobs 10000 --concurrency 100
    python _peer_obanpy.py --db bench_obanpy_2 --phase latency --samples 200
    python _peer_obanpy.py --db bench_obanpy_3 --drop

Every run creates the database ``--db`` on the server of ``--admin-dsn``, installs oban's
schema, measures, and drops the database again. ``throughput``: ``Oban.enqueue_many`` of N
no-op jobs (timed), then (unless ``--analyze 0``) ``ANALYZE`` (untimed), then an
``Oban(queues={"bench": C})`` runtime is started and timed until the database counts N
``completed`` jobs (oban acks lazily, so the table is the finish line). ``latency``: with a
running queue, one job at a time, from just before the enqueue call to the worker's first line;
once through the running instance, once through a client-mode instance. Runs on uvloop, as
oban's own CLI does. Prints one JSON object as the last line. ``--history N`` first seeds N
``completed`` jobs (finish times spread over the past hours, one INSERT ... SELECT FROM
generate_series per million) and runs ``ANALYZE``; the counts then look only above their ids.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import psycopg
from oban import Oban, worker
from oban.schema import install
from psycopg_pool import AsyncConnectionPool

from _pgcommon import (
    LATENCY_QUEUE_LIMIT,
    Pings,
    create_database,
    drop_database,
    event_loop,
    parser,
    report,
    seed_history,
    wait_for_count,
)

# One completed job as oban-py leaves it (times in UTC without a zone, as its columns are):
# enqueued, started a little later, done a few ms after; finish times spread over the past
# hours.
SEED = """
INSERT INTO oban_jobs (state, queue, worker, attempt, max_attempts, args, attempted_by,
                       inserted_at, scheduled_at, attempted_at, completed_at)
SELECT 'completed', 'bench', 'bench.NoopWorker', 1, 3, jsonb_build_object('t', g),
       ARRAY['bench-history-node'], f - interval '120 ms', f - interval '120 ms',
       f - interval '4 ms', f
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       LATERAL (SELECT (now() AT TIME ZONE 'UTC')
                       - (%(hours)s * interval '1 hour') * (1 - g::float8 / %(n)s)) AS t(f)
"""

_pings = Pings()
_handled = 0


@worker(queue="bench", max_attempts=3)
class NoopWorker:
    """A no-op job."""

    async def process(self, job: Any) -> None:
        global _handled
        _handled += 1


@worker(queue="latency", max_attempts=1)
class PingWorker:
    """Records when it starts."""

    async def process(self, job: Any) -> None:
        _pings.arrived(job.args["k"])


async def _count(pool: AsyncConnectionPool, state: str, above: int = 0) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE state = %s::oban_job_state AND id > %s",
            (state, above),
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def throughput(
    url: str, n: int, concurrency: int, analyze: bool, history: int
) -> dict[str, Any]:
    """Bulk insert N jobs, then process them with queue limit ``concurrency``."""
    pool = AsyncConnectionPool(url, min_size=2, max_size=10, open=False)
    await pool.open()
    await pool.wait()
    try:
        await install(pool)
        above = await asyncio.to_thread(seed_history, url, history, "oban-py", [SEED], "oban_jobs")
        client = Oban(pool=pool, name="bench-client")
        t0 = time.perf_counter()
        await client.enqueue_many([NoopWorker.new({}) for _ in range(n)])
        insert_s = time.perf_counter() - t0
        available = await _count(pool, "available", above)
        if available != n:
            raise SystemExit(f"{available} of {n} jobs available after enqueue_many")

        runtime = Oban(pool=pool, queues={"bench": concurrency})
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watch:
            if analyze:
                await watch.execute("ANALYZE")

            async def completed() -> int:
                cur = await watch.execute(
                    "SELECT count(*) FROM oban_jobs "
                    "WHERE state = 'completed'::oban_job_state AND id > %s",
                    (above,),
                )
                row = await cur.fetchone()
                return int(row[0]) if row else 0

            t1 = time.perf_counter()
            await runtime.start()
            process_s = await wait_for_count(completed, n, t1)
            await runtime.stop()
        return {
            "insert_s": insert_s,
            "process_s": process_s,
            "handled": _handled,
            "completed": await _count(pool, "completed", above),
        }
    finally:
        await pool.close()


async def latency(url: str, samples: int) -> dict[str, Any]:
    """Enqueue-to-start latency on an idle queue, two ways of enqueueing."""
    pool = AsyncConnectionPool(url, min_size=2, max_size=10, open=False)
    await pool.open()
    await pool.wait()
    try:
        await install(pool)
        runtime = Oban(pool=pool, queues={"latency": LATENCY_QUEUE_LIMIT})
        client = Oban(pool=pool, name="bench-client")
        await runtime.start()
        await asyncio.sleep(1.0)

        async def enqueue(way: str, k: int) -> None:
            if way == "same":
                await PingWorker.enqueue({"k": k})
            else:
                await client.enqueue(PingWorker.new({"k": k}))

        figures = await _pings.measure(samples, enqueue)
        await runtime.stop()
        return figures
    finally:
        await pool.close()


def main() -> None:
    args = parser(concurrency=100).parse_args()
    if args.drop:
        drop_database(args.admin_dsn, args.db)
        return
    run, loop = event_loop()
    url = create_database(args.admin_dsn, args.db)
    try:
        if args.phase == "throughput":
            out = run(throughput(url, args.jobs, args.concurrency, args.analyze, args.history))
        else:
            out = run(latency(url, args.samples))
    finally:
        drop_database(args.admin_dsn, args.db)
    report(out, "oban", loop)


if __name__ == "__main__":
    main()
