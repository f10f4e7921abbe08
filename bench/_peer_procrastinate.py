"""Procrastinate side of ``bench.jobs_postgres``; runs in its own venv (procrastinate 3.10).

Usage::

    python _peer_procrastinate.py --db bench_procrastinate_1 --phase throughput --jobs 10000
    python _peer_procrastinate.py --db bench_procrastinate_2 --phase latency --samples 200
    python _peer_procrastinate.py --db bench_procrastinate_3 --drop

Every run creates the database ``--db`` on the server of ``--admin-dsn``, applies
Procrastinate's schema, measures, and drops the database again. ``throughput``:
``batch_defer_async`` of ``--chunk`` jobs per call (timed), then (unless ``--analyze 0``)
``ANALYZE`` (untimed; without planner statistics its fetch query scans the whole table and it
runs 3x slower), then one in-process worker (``run_worker_async(concurrency=C)``, default
options otherwise) is started and timed until the database counts N ``succeeded`` jobs.
Procrastinate keeps finished jobs' rows (its default ``delete_jobs="never"``). ``latency``:
with a running worker, one job at a time, from just before ``defer_async`` to the task's first
line; once through the app that runs the worker, once through a second app with its own
connection pool. Prints one JSON object as the last line. ``--history N`` first seeds N
``succeeded`` jobs with their three events each (finish times spread over the past hours, one
INSERT ... SELECT FROM generate_series per million) and runs ``ANALYZE``; the counts then look
only above their ids.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import procrastinate
import psycopg

from _pgcommon import (
    Pings,
    create_database,
    drop_database,
    parser,
    report,
    seed_history,
    wait_for_count,
)

LATENCY_CONCURRENCY = 10
COUNT_SUCCEEDED = (
    "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded' AND id > %(above)s"
)
# What one succeeded job leaves: its row (status succeeded) and three events (deferred,
# started, succeeded), finish times spread over the past hours; the id sequence moves past.
SEED = [
    """
INSERT INTO procrastinate_jobs (id, queue_name, task_name, priority, args, status, attempts)
SELECT g, 'default', 'noop', 0, jsonb_build_object('t', g), 'succeeded', 1
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g
""",
    """
INSERT INTO procrastinate_events (job_id, type, at)
SELECT g, e.type::procrastinate_job_event_type, f - e.ago
  FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
       LATERAL (SELECT now() - (%(hours)s * interval '1 hour') * (1 - g::float8 / %(n)s)) AS t(f),
       (VALUES ('deferred', interval '120 ms'), ('started', interval '4 ms'),
               ('succeeded', interval '0 ms')) AS e(type, ago)
""",
    "SELECT setval('procrastinate_jobs_id_seq', %(last)s)",
]


def _app(url: str) -> procrastinate.App:
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))


async def _stop(worker: asyncio.Task[None]) -> None:
    """Cancel a running worker task (Procrastinate stops gracefully on cancellation)."""
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(worker, 30)


async def throughput(
    url: str, n: int, concurrency: int, chunk: int, analyze: bool, history: int
) -> dict[str, Any]:
    """Bulk insert N jobs, then process them with one worker."""
    app = _app(url)
    handled = 0

    @app.task(name="noop")
    async def noop() -> None:
        nonlocal handled
        handled += 1

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        above = await asyncio.to_thread(
            seed_history, url, history, "Procrastinate", SEED, "procrastinate_jobs"
        )
        t0 = time.perf_counter()
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            await noop.batch_defer_async(*({} for _ in range(size)))
        insert_s = time.perf_counter() - t0

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watch:
            if analyze:
                await watch.execute("ANALYZE")

            async def count() -> int:
                cur = await watch.execute(COUNT_SUCCEEDED, {"above": above})
                row = await cur.fetchone()
                return int(row[0]) if row else 0

            t1 = time.perf_counter()
            worker = asyncio.create_task(
                app.run_worker_async(concurrency=concurrency, install_signal_handlers=False)
            )
            process_s = await wait_for_count(count, n, t1, worker)
            await _stop(worker)
            completed = await count()
    return {
        "insert_s": insert_s,
        "process_s": process_s,
        "handled": handled,
        "completed": completed,
    }


async def latency(url: str, samples: int) -> dict[str, Any]:
    """Enqueue-to-start latency on an idle queue, two ways of enqueueing."""
    app = _app(url)
    client = _app(url)
    pings = Pings()

    @app.task(name="ping")
    async def ping(k: int) -> None:
        pings.arrived(k)

    async with app.open_async(), client.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=LATENCY_CONCURRENCY, install_signal_handlers=False)
        )
        await asyncio.sleep(1.0)
        remote = client.configure_task("ping", allow_unknown=True)

        async def enqueue(way: str, k: int) -> None:
            await (ping if way == "same" else remote).defer_async(k=k)

        figures = await pings.measure(samples, enqueue)
        await _stop(worker)
    return figures


def main() -> None:
    p = parser(concurrency=10)
    p.add_argument("--chunk", type=int, default=1000, help="jobs per batch_defer_async call")
    args = p.parse_args()
    if args.drop:
        drop_database(args.admin_dsn, args.db)
        return
    url = create_database(args.admin_dsn, args.db)
    try:
        if args.phase == "throughput":
            out = asyncio.run(
                throughput(url, args.jobs, args.concurrency, args.chunk, args.analyze, args.history)
            )
        else:
            out = asyncio.run(latency(url, args.samples))
    finally:
        drop_database(args.admin_dsn, args.db)
    report(out, "procrastinate", "asyncio")


if __name__ == "__main__":
    main()
