"""Helpers shared by the per-system scripts of ``bench.jobs_postgres``.

Each script runs by path in the venv of its system, so this module is imported as
``_pgcommon`` and imports only the standard library at import time; ``psycopg`` is imported
where it is used, as one peer's venv has ``asyncpg`` instead.
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

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
POLL_EVERY = 0.02
TIMEOUT = 300.0
LATENCY_QUEUE_LIMIT = 10


def db_url(admin_dsn: str, db: str) -> str:
    """The URL of database ``db`` on the server of ``admin_dsn``."""
    return f"{admin_dsn.rpartition('/')[0]}/{db}"


def create_database(admin_dsn: str, db: str) -> str:
    """Create ``db`` afresh (with psycopg); returns its URL."""
    import psycopg

    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{db}"')
    return db_url(admin_dsn, db)


def drop_database(admin_dsn: str, db: str) -> None:
    """Drop ``db`` if it exists (with psycopg)."""
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


def parser(concurrency: int | None = None) -> argparse.ArgumentParser:
    """The options every script takes; ``--concurrency`` with this default when given."""
    p = argparse.ArgumentParser()
    p.add_argument("--admin-dsn", default=ADMIN_DSN)
    p.add_argument("--db", required=True)
    p.add_argument("--phase", choices=["throughput", "latency"], default="throughput")
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--analyze", type=int, choices=[0, 1], default=1, help="ANALYZE after insert")
    if concurrency is not None:
        p.add_argument("--concurrency", type=int, default=concurrency)
    p.add_argument("--samples", type=int, default=200)
    p.add_argument("--drop", action="store_true", help="only drop --db")
    return p


async def wait_for_count(
    count: Callable[[], Awaitable[int]],
    n: int,
    t0: float,
    runner: asyncio.Future[Any] | None = None,
) -> float:
    """Poll ``count`` until it reaches ``n``; returns the seconds since ``t0``.

    Exits when ``runner`` (the task running the workers, if any) ends first or when
    ``TIMEOUT`` passes.
    """
    while True:
        if await count() >= n:
            return time.perf_counter() - t0
        if runner is not None and runner.done():
            runner.result()
            raise SystemExit("the workers stopped early")
        if time.perf_counter() - t0 > TIMEOUT:
            raise SystemExit(f"only {await count()} of {n} jobs completed in {TIMEOUT:.0f} s")
        await asyncio.sleep(POLL_EVERY)


class Pings:
    """Enqueue-to-start latencies, alternating between two ways of enqueueing."""

    def __init__(self) -> None:
        self.started: dict[int, float] = {}
        self.signals: dict[int, asyncio.Event] = {}

    def arrived(self, k: int) -> None:
        """Called first thing by the worker of ping ``k``."""
        self.started[k] = time.perf_counter()
        self.signals[k].set()

    async def measure(
        self, samples: int, enqueue: Callable[[str, int], Awaitable[object]]
    ) -> dict[str, dict[str, float]]:
        """``samples`` pings each way (``"same"``, ``"client"``), one at a time; summaries."""
        ways: dict[str, list[float]] = {"same": [], "client": []}
        for k in range(2 * samples):
            way = "same" if k % 2 == 0 else "client"
            self.signals[k] = asyncio.Event()
            t0 = time.perf_counter()
            await enqueue(way, k)
            await asyncio.wait_for(self.signals[k].wait(), timeout=10)
            ways[way].append((self.started[k] - t0) * 1000)
            await asyncio.sleep(0.02)
        return {way: summary(ms) for way, ms in ways.items()}


def event_loop() -> tuple[Callable[[Any], Any], str]:
    """``uvloop.run`` and its name where uvloop is installed, else ``asyncio.run``."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run, "asyncio"
    return uvloop.run, f"uvloop {uvloop.__version__}"


def report(out: dict[str, Any], package: str, loop: str) -> None:
    """Print the figures with the package's version, the loop and Python as a JSON line."""
    out["version"] = version(package)
    out["loop"] = loop
    out["python"] = platform.python_version()
    print(json.dumps(out), flush=True)
