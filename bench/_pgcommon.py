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
import sys
import time
from collections.abc import Awaitable, Callable
from importlib.metadata import version
from typing import Any

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
POLL_EVERY = 0.02
TIMEOUT = 300.0
LATENCY_QUEUE_LIMIT = 10
# Sustained mode: jobs kept waiting by the producer, its polling period, the job's sleep and
# the sampling window (seconds).
WAITING_TARGET = 4_000
PRODUCER_EVERY = 0.05
JOB_SLEEP = 0.001
SAMPLE_EVERY = 10.0
# History: finished jobs seeded before measuring, their finish times spread over this many
# hours before now, inserted this many rows per statement (one progress line each).
HISTORY_HOURS = 6.0
HISTORY_CHUNK = 1_000_000


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
    p.add_argument(
        "--phase",
        choices=["throughput", "latency", "sustained", "producer"],
        default="throughput",
    )
    p.add_argument("--jobs", type=int, default=10_000)
    p.add_argument("--history", type=int, default=0, help="finished jobs seeded before measuring")
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


def event_loop(*, uvloop_if_installed: bool = True) -> tuple[Callable[[Any], Any], str]:
    """How to run the script's main coroutine, and the loop's name.

    ``uvloop.run`` where uvloop is installed and ``uvloop_if_installed`` (what the CLIs of
    oban-py and PgQueuer do), else ``asyncio.run`` (what ``underway start`` does).
    """
    if not uvloop_if_installed:
        return asyncio.run, "asyncio"
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


def history_chunks(n: int) -> list[tuple[int, int]]:
    """``(first, last)`` 1-based row numbers of each seeding statement for ``n`` rows."""
    return [(a, min(a + HISTORY_CHUNK - 1, n)) for a in range(1, n + 1, HISTORY_CHUNK)]


def seed_history(url: str, n: int, label: str, statements: list[str], table: str) -> int:
    """Seed ``n`` finished jobs with psycopg; returns the highest id in ``table`` after.

    Each statement runs once per chunk of rows (see :func:`history_chunks`) with the
    parameters ``first``, ``last`` (row numbers of the chunk), ``n`` and ``hours``
    (:data:`HISTORY_HOURS`); a progress line follows each chunk, an ``ANALYZE`` (of the
    whole database) the last one.
    """
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        if n > 0:
            t0 = time.perf_counter()
            for first, last in history_chunks(n):
                params = {"first": first, "last": last, "n": n, "hours": HISTORY_HOURS}
                for statement in statements:
                    conn.execute(statement, params)
                progress(
                    f"  {label} history: {last:,} of {n:,} finished jobs seeded "
                    f"({time.perf_counter() - t0:.0f} s)"
                )
            conn.execute("ANALYZE")
        row = conn.execute(f"SELECT coalesce(max(id), 0) FROM {table}").fetchone()
    return int(row[0]) if row else 0


def progress(text: str) -> None:
    """A progress line for the parent to pass on (not JSON, so it is never a result)."""
    print(text, flush=True)


def emit(kind: str, value: Any) -> None:
    """A ``{kind: value}`` JSON line for the parent, read as it comes."""
    print(json.dumps({kind: value}), flush=True)


async def read_command() -> str:
    """The next line the parent writes on stdin, stripped; ``""`` at end of input."""
    line: str = await asyncio.to_thread(sys.stdin.readline)
    return line.strip()


class Sampler:
    """Per-window throughput and claim latency of a sustained run, one JSON line a window.

    The job's function calls :meth:`started` first thing with the epoch time at which the
    producer enqueued it (carried in the job's arguments), and :meth:`finished` once its
    sleep is over. Every ``every`` seconds :meth:`run` prints ``{"sample": {...}}``: the
    window's end (seconds since the start), jobs finished in it, jobs per second, and the
    p50 / p95 of enqueue-to-start times of the jobs that started in it, in milliseconds.
    """

    def __init__(self, every: float = SAMPLE_EVERY) -> None:
        self.every = every
        self.finished_count = 0
        self.waits: list[float] = []
        self.total = 0

    def started(self, enqueued_at: float) -> None:
        """A job starts; ``enqueued_at`` is ``time.time()`` of its enqueue call."""
        self.waits.append((time.time() - enqueued_at) * 1000)

    def finished(self) -> None:
        """A job's function returned."""
        self.finished_count += 1

    def take(self, t: float, seconds: float) -> dict[str, float]:
        """The window that ends now, ``t`` seconds into the run and ``seconds`` long."""
        done, waits = self.finished_count, self.waits
        self.finished_count, self.waits = 0, []
        self.total += done
        ordered = sorted(waits)
        p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else float("nan")
        return {
            "t": round(t, 1),
            "completed": done,
            "per_s": round(done / seconds, 1),
            "claim_p50_ms": round(statistics.median(ordered), 1) if ordered else float("nan"),
            "claim_p95_ms": round(p95, 1),
            "started": len(ordered),
        }

    async def run(self) -> None:
        """Print one sample every ``every`` seconds until cancelled."""
        t0 = last = time.perf_counter()
        k = 1
        while True:
            await asyncio.sleep(max(0.0, t0 + k * self.every - time.perf_counter()))
            now = time.perf_counter()
            emit("sample", self.take(now - t0, now - last))
            last = now
            k += 1


async def keep_waiting(
    waiting: Callable[[], Awaitable[int]],
    enqueue: Callable[[int], Awaitable[object]],
    target: int = WAITING_TARGET,
    every: float = PRODUCER_EVERY,
) -> None:
    """The sustained producer: keep the waiting jobs topped up to ``target``.

    ``waiting`` counts waiting jobs up to ``target`` (a LIMIT-bounded count, so it never
    walks the table's history); ``enqueue(k)`` inserts ``k`` jobs in one call. After a
    top-up of more than a tenth of ``target`` it looks again at once (the workers drain
    faster than one top-up per period), else after ``every`` seconds. Prints
    ``{"filled": target}`` once the first top-up is in, then runs until cancelled or until
    stdin closes.
    """
    stop = asyncio.ensure_future(read_command())
    announced = False
    try:
        while not stop.done():
            short = target - await waiting()
            if short > 0:
                await enqueue(short)
            if not announced:
                emit("filled", target)
                announced = True
            if short <= target // 10:
                await asyncio.sleep(every)
    finally:
        stop.cancel()
