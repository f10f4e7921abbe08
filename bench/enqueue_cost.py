"""Client CPU of one ``enqueue`` on PostgreSQL (async and sync), without the server's time.

Usage::

    python -m bench.enqueue_cost                  # 5,000 enqueues per mode, median of 5 runs
    python -m bench.enqueue_cost --n 2000 --runs 3 --unique
    python -m bench.enqueue_cost --profile async  # cProfile of one async run, top 30

Each run times ``time.process_time()`` (this process's CPU, every thread included, the
server's excluded) over ``--n`` sequential ``await worker.enqueue({...})`` calls, then over
``--n`` ``worker.enqueue_sync({...})`` calls, after a warm-up; wall time is shown beside it
for context. The jobs go to a fresh schema of ``--url``'s database, dropped at the end; no
node runs. ``--unique`` enqueues jobs of a unique worker (every job a new key). Figures only:
nothing here is asserted anywhere.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import statistics
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from underway.jobs import Jobs, Unique

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
WARMUP = 200


def _app(url: str, schema: str, unique: bool) -> tuple[Jobs, Any]:
    sep = "&" if "?" in url else "?"
    jobs = Jobs(f"{url}{sep}schema={schema}", queues={"bench": 1})

    @jobs.worker(queue="bench", unique=Unique(period=3600) if unique else None)
    async def noop(job: Any) -> None:
        return None

    return jobs, noop


def _per_call(start_cpu: float, start_wall: float, n: int) -> tuple[float, float]:
    """Microseconds of CPU and of wall time per call since the two starts."""
    cpu = (time.process_time() - start_cpu) / n * 1e6
    wall = (time.perf_counter() - start_wall) / n * 1e6
    return cpu, wall


async def _async_run(worker: Any, n: int, seq: list[int]) -> tuple[float, float]:
    for _ in range(WARMUP):
        seq[0] += 1
        await worker.enqueue({"n": seq[0], "user": "someone@example.com"})
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        seq[0] += 1
        await worker.enqueue({"n": seq[0], "user": "someone@example.com"})
    return _per_call(cpu, wall, n)


def _sync_run(worker: Any, n: int, seq: list[int]) -> tuple[float, float]:
    for _ in range(WARMUP):
        seq[0] += 1
        worker.enqueue_sync({"n": seq[0], "user": "someone@example.com"})
    cpu, wall = time.process_time(), time.perf_counter()
    for _ in range(n):
        seq[0] += 1
        worker.enqueue_sync({"n": seq[0], "user": "someone@example.com"})
    return _per_call(cpu, wall, n)


def _profiled(fn: Callable[[], Any], top: int) -> None:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    stats = pstats.Stats(prof)
    stats.sort_stats("tottime").print_stats(top)
    stats.sort_stats("cumulative").print_stats(top)


def main() -> None:
    """Measure and print the medians (microseconds of client CPU per enqueue)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default=DEFAULT_URL)
    p.add_argument("--n", type=int, default=5000, help="enqueues per run and mode")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--unique", action="store_true", help="enqueue unique jobs")
    p.add_argument("--profile", choices=("async", "sync"), help="cProfile one run instead")
    p.add_argument("--top", type=int, default=30)
    a = p.parse_args()
    schema = f"bench_cost_{uuid.uuid4().hex[:8]}"
    jobs, worker = _app(a.url, schema, a.unique)
    seq = [0]
    results: dict[str, list[tuple[float, float]]] = {"async": [], "sync": []}

    async def async_runs(count: int) -> None:
        try:
            for _ in range(count):
                results["async"].append(await _async_run(worker, a.n, seq))
        finally:
            await jobs.stop()

    try:
        if a.profile == "async":
            _profiled(lambda: asyncio.run(async_runs(1)), a.top)
        elif a.profile == "sync":
            _sync_run(worker, WARMUP, seq)
            _profiled(lambda: _sync_run(worker, a.n, seq), a.top)
        else:
            asyncio.run(async_runs(a.runs))
            for _ in range(a.runs):
                results["sync"].append(_sync_run(worker, a.n, seq))
    finally:
        jobs.engine.close_sync()  # type: ignore[attr-defined]
        with psycopg.connect(a.url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    kind = "unique " if a.unique else ""
    for mode, found in results.items():
        if not found:
            continue
        cpu = statistics.median(c for c, _ in found)
        wall = statistics.median(w for _, w in found)
        runs = ", ".join(f"{c:.0f}" for c, _ in found)
        print(
            f"{mode:5} {kind}enqueue: {cpu:6.1f} us client CPU per call (median of {len(found)}"
            f" runs of {a.n}: {runs}); wall {wall:.0f} us"
        )


if __name__ == "__main__":
    main()
