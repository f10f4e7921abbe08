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
connection pool. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import platform
import statistics
import time
from importlib.metadata import version
from typing import Any

import procrastinate
import psycopg

POLL_EVERY = 0.02
TIMEOUT = 300.0
LATENCY_CONCURRENCY = 10
COUNT_SUCCEEDED = "SELECT count(*) FROM procrastinate_jobs WHERE status = 'succeeded'"


def _db_url(admin_dsn: str, db: str) -> str:
    return f"{admin_dsn.rpartition('/')[0]}/{db}"


def create_database(admin_dsn: str, db: str) -> str:
    """Create ``db`` afresh; returns its URL."""
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    return _db_url(admin_dsn, db)


def drop_database(admin_dsn: str, db: str) -> None:
    """Drop ``db`` if it exists."""
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


def _app(url: str) -> procrastinate.App:
    return procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))


async def _stop(worker: asyncio.Task[None]) -> None:
    """Cancel a running worker task (Procrastinate stops gracefully on cancellation)."""
    worker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(worker, 30)


async def throughput(
    url: str, n: int, concurrency: int, chunk: int, analyze: bool
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
        t0 = time.perf_counter()
        for start in range(0, n, chunk):
            size = min(chunk, n - start)
            await noop.batch_defer_async(*({} for _ in range(size)))
        insert_s = time.perf_counter() - t0

        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watch:
            if analyze:
                await watch.execute("ANALYZE")

            async def count() -> int:
                cur = await watch.execute(COUNT_SUCCEEDED)
                row = await cur.fetchone()
                return int(row[0]) if row else 0

            t1 = time.perf_counter()
            worker = asyncio.create_task(
                app.run_worker_async(concurrency=concurrency, install_signal_handlers=False)
            )
            process_s = None
            while process_s is None:
                if await count() >= n:
                    process_s = time.perf_counter() - t1
                elif worker.done():
                    worker.result()
                    raise SystemExit("the worker stopped early")
                elif time.perf_counter() - t1 > TIMEOUT:
                    raise SystemExit(f"only {await count()} of {n} jobs succeeded in time")
                else:
                    await asyncio.sleep(POLL_EVERY)
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
    started: dict[int, float] = {}
    signals: dict[int, asyncio.Event] = {}

    @app.task(name="ping")
    async def ping(k: int) -> None:
        started[k] = time.perf_counter()
        signals[k].set()

    async with app.open_async(), client.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=LATENCY_CONCURRENCY, install_signal_handlers=False)
        )
        await asyncio.sleep(1.0)
        remote = client.configure_task("ping", allow_unknown=True)
        ways: dict[str, list[float]] = {"same": [], "client": []}
        for k in range(2 * samples):
            way = "same" if k % 2 == 0 else "client"
            signals[k] = asyncio.Event()
            t0 = time.perf_counter()
            if way == "same":
                await ping.defer_async(k=k)
            else:
                await remote.defer_async(k=k)
            await asyncio.wait_for(signals[k].wait(), timeout=10)
            ways[way].append((started[k] - t0) * 1000)
            await asyncio.sleep(0.02)
        await _stop(worker)
    return {way: summary(ms) for way, ms in ways.items()}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--admin-dsn", default="postgresql://postgres@127.0.0.1:5432/postgres")
    p.add_argument("--db", required=True)
    p.add_argument("--phase", choices=["throughput", "latency"], default="throughput")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--analyze", type=int, choices=[0, 1], default=1, help="ANALYZE after insert")
    p.add_argument("--concurrency", type=int, default=10)
    p.add_argument("--chunk", type=int, default=1000, help="jobs per batch_defer_async call")
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--drop", action="store_true", help="only drop --db")
    args = p.parse_args()
    if args.drop:
        drop_database(args.admin_dsn, args.db)
        return
    url = create_database(args.admin_dsn, args.db)
    try:
        if args.phase == "throughput":
            out = asyncio.run(
                throughput(url, args.jobs, args.concurrency, args.chunk, args.analyze)
            )
        else:
            out = asyncio.run(latency(url, args.samples))
    finally:
        drop_database(args.admin_dsn, args.db)
    out["version"] = version("procrastinate")
    out["loop"] = "asyncio"
    out["python"] = platform.python_version()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
