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
oban's own CLI does. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import platform
import statistics
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

import psycopg
from oban import Oban, worker
from oban.schema import install
from psycopg_pool import AsyncConnectionPool

POLL_EVERY = 0.02
TIMEOUT = 300.0
LATENCY_QUEUE_LIMIT = 10

_started: dict[int, float] = {}
_signals: dict[int, asyncio.Event] = {}
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
        key = job.args["k"]
        _started[key] = time.perf_counter()
        _signals[key].set()


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


async def _count(pool: AsyncConnectionPool, state: str) -> int:
    async with pool.connection() as conn:
        cur = await conn.execute(
            "SELECT count(*) FROM oban_jobs WHERE state = %s::oban_job_state", (state,)
        )
        row = await cur.fetchone()
        return int(row[0]) if row else 0


async def _wait_for(count: Callable[[], Awaitable[int]], n: int, t0: float) -> float:
    while True:
        if await count() >= n:
            return time.perf_counter() - t0
        if time.perf_counter() - t0 > TIMEOUT:
            raise SystemExit(f"only {await count()} of {n} jobs completed in {TIMEOUT:.0f} s")
        await asyncio.sleep(POLL_EVERY)


async def throughput(url: str, n: int, concurrency: int, analyze: bool) -> dict[str, Any]:
    """Bulk insert N jobs, then process them with queue limit ``concurrency``."""
    pool = AsyncConnectionPool(url, min_size=2, max_size=10, open=False)
    await pool.open()
    await pool.wait()
    try:
        await install(pool)
        client = Oban(pool=pool, name="bench-client")
        t0 = time.perf_counter()
        await client.enqueue_many([NoopWorker.new({}) for _ in range(n)])
        insert_s = time.perf_counter() - t0
        available = await _count(pool, "available")
        if available != n:
            raise SystemExit(f"{available} of {n} jobs available after enqueue_many")

        runtime = Oban(pool=pool, queues={"bench": concurrency})
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as watch:
            if analyze:
                await watch.execute("ANALYZE")

            async def completed() -> int:
                cur = await watch.execute(
                    "SELECT count(*) FROM oban_jobs WHERE state = 'completed'::oban_job_state"
                )
                row = await cur.fetchone()
                return int(row[0]) if row else 0

            t1 = time.perf_counter()
            await runtime.start()
            process_s = await _wait_for(completed, n, t1)
            await runtime.stop()
        return {
            "insert_s": insert_s,
            "process_s": process_s,
            "handled": _handled,
            "completed": await _count(pool, "completed"),
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
        ways: dict[str, list[float]] = {"same": [], "client": []}
        for k in range(2 * samples):
            way = "same" if k % 2 == 0 else "client"
            _signals[k] = asyncio.Event()
            t0 = time.perf_counter()
            if way == "same":
                await PingWorker.enqueue({"k": k})
            else:
                await client.enqueue(PingWorker.new({"k": k}))
            await asyncio.wait_for(_signals[k].wait(), timeout=10)
            ways[way].append((_started[k] - t0) * 1000)
            await asyncio.sleep(0.02)
        await runtime.stop()
        return {way: summary(ms) for way, ms in ways.items()}
    finally:
        await pool.close()


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
    if args.drop:
        drop_database(args.admin_dsn, args.db)
        return
    try:
        import uvloop

        run: Callable[[Any], Any] = uvloop.run
        loop = f"uvloop {uvloop.__version__}"
    except ImportError:
        run, loop = asyncio.run, "asyncio"
    url = create_database(args.admin_dsn, args.db)
    try:
        if args.phase == "throughput":
            out = run(throughput(url, args.jobs, args.concurrency, args.analyze))
        else:
            out = run(latency(url, args.samples))
    finally:
        drop_database(args.admin_dsn, args.db)
    out["version"] = version("oban")
    out["loop"] = loop
    out["python"] = platform.python_version()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
