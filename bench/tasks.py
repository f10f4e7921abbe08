"""underway.tasks against plain asyncio, side by side in one run: what the supervision costs.

Usage::

    python -m bench.tasks            # 10,000 items / children, best of 15 runs each
    python -m bench.tasks --quick    # the same, best of 5

Two measurements, each against the plain asyncio code a user would otherwise write:

- ``async_stream(items, noop, max_concurrency=100)`` over 10,000 no-op items, consumed
  with ``async for``, against an ``asyncio.Semaphore(100)`` around each call and
  ``asyncio.gather`` of them all. async_stream runs with its defaults (ordered, a 5 s
  timeout per item); a run without the timeout is listed too.
- ``TaskSupervisor.start_child(noop, i)`` for 10,000 no-op children, then waiting for them
  all, against ``asyncio.create_task(noop(i))`` and the same wait.

Both sides of a pair run in the same process and event loop, alternately, after a warm-up;
the best time of each is kept. The last line is one JSON object with the figures (seconds)
and the ratios underway / asyncio (lower is better; 1.0 is parity).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from underway.tasks import TaskSupervisor, async_stream

ITEMS = 10_000
CONCURRENCY = 100


async def noop(x: int) -> int:
    return x


# -- async_stream vs a semaphore and gather -------------------------------------------------


async def stream_underway(n: int, *, timeout: float | None = 5.0) -> float:
    t0 = time.perf_counter()
    total = 0
    async for r in async_stream(range(n), noop, max_concurrency=CONCURRENCY, timeout=timeout):
        total += r
    elapsed = time.perf_counter() - t0
    assert total == n * (n - 1) // 2
    return elapsed


async def stream_underway_no_timeout(n: int) -> float:
    return await stream_underway(n, timeout=None)


async def stream_asyncio(n: int) -> float:
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(CONCURRENCY)

    async def one(x: int) -> int:
        async with sem:
            return await noop(x)

    total = sum(await asyncio.gather(*(one(x) for x in range(n))))
    elapsed = time.perf_counter() - t0
    assert total == n * (n - 1) // 2
    return elapsed


# -- start_child vs create_task -------------------------------------------------------------


async def children_underway(n: int) -> float:
    async with TaskSupervisor(name="bench") as tasks:
        t0 = time.perf_counter()
        started = [tasks.start_child(noop, i) for i in range(n)]
        await asyncio.wait(started)
        elapsed = time.perf_counter() - t0
        assert not tasks.children()
    return elapsed


async def children_asyncio(n: int) -> float:
    t0 = time.perf_counter()
    started = [asyncio.create_task(noop(i)) for i in range(n)]
    await asyncio.wait(started)
    return time.perf_counter() - t0


# -- running ----------------------------------------------------------------------------------

Measure = Callable[[int], Awaitable[float]]

PAIRS: dict[str, tuple[tuple[str, Measure], ...]] = {
    "async_stream": (
        ("async_stream_s", stream_underway),
        ("asyncio_semaphore_gather_s", stream_asyncio),
        ("async_stream_no_timeout_s", stream_underway_no_timeout),
    ),
    "start_child": (
        ("start_child_s", children_underway),
        ("create_task_s", children_asyncio),
    ),
}


async def measure_all(n: int, repeat: int) -> dict[str, float]:
    best: dict[str, float] = {}
    for contenders in PAIRS.values():
        for _, fn in contenders:  # warm-up
            await fn(n)
        for _ in range(repeat):
            for name, fn in contenders:  # alternate, so drift hits both sides alike
                gc.collect()
                elapsed = await fn(n)
                best[name] = min(elapsed, best.get(name, float("inf")))
    return best


def summary(best: dict[str, float], n: int, repeat: int) -> dict[str, Any]:
    return {
        "figures": {k: round(v, 6) for k, v in best.items()},
        "ratios": {
            "async_stream_vs_asyncio": round(
                best["async_stream_s"] / best["asyncio_semaphore_gather_s"], 3
            ),
            "start_child_vs_create_task": round(best["start_child_s"] / best["create_task_s"], 3),
        },
        "items": n,
        "repeat": repeat,
    }


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m bench.tasks``."""
    p = argparse.ArgumentParser(prog="python -m bench.tasks", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer repeats (5 instead of 15)")
    p.add_argument("--items", type=int, default=ITEMS, help="items and children per run")
    p.add_argument("--repeat", type=int, default=None, help="timed runs per contender")
    args = p.parse_args(argv)
    repeat = args.repeat or (5 if args.quick else 15)
    print(
        f"underway.tasks vs plain asyncio: {args.items:,} no-op items/children, "
        f"best of {repeat}, Python {sys.version.split()[0]}",
        flush=True,
    )
    best = asyncio.run(measure_all(args.items, repeat))
    for name, seconds in best.items():
        print(f"{name:<28} {seconds * 1000:>9.2f} ms  {args.items / seconds:>12,.0f}/s", flush=True)
    print(json.dumps(summary(best, args.items, repeat)), flush=True)


if __name__ == "__main__":
    main()
