"""What every per-system script of the Kafka, NATS and SQS rows of ``bench.pipelines`` shares.

Each script runs by path in the venv of its system (underway's, or FastStream's under
``bench/.venvs/faststream``), so this module is imported as ``_brokers`` and needs only the
standard library; the broker modules beside it (``_kafkacommon``, ``_natscommon``,
``_sqscommon``) import their driver.

A run fills the broker untimed, then :func:`measure` times ``consume`` from just before the
consumer starts until the no-op handler has counted N messages and the consumer has stopped
(every acknowledgement sent), and then asks the broker whether anything is left.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

__all__ = [
    "STALL",
    "TIMEOUT",
    "UNAVAILABLE",
    "Counter",
    "body_of",
    "fresh_name",
    "measure",
    "parser",
    "report",
    "unavailable",
]

BODY = b"0123456789abcdef"
TIMEOUT = 300.0
STALL = 30.0
UNAVAILABLE = 3


def parser() -> argparse.ArgumentParser:
    """The options every script takes (each adds its broker's address)."""
    p = argparse.ArgumentParser()
    p.add_argument("--messages", type=int, default=10_000)
    p.add_argument("--prefetch", type=int, default=100, help="messages held / fetched at once")
    p.add_argument("--body-size", type=int, default=len(BODY))
    p.add_argument("--name", default=None, help="topic/stream/queue (default: a fresh name)")
    return p


def fresh_name(args: argparse.Namespace, system: str) -> str:
    """The topic, stream or queue a run uses: ``--name`` or a fresh one."""
    return str(args.name or f"bench-{system}-{os.getpid()}-{time.monotonic_ns()}")


def body_of(size: int) -> bytes:
    """A message body of ``size`` bytes."""
    return (BODY * (size // len(BODY) + 1))[:size]


class Counter:
    """Counts handled messages; notes when the first and the N-th were handled."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.count = 0
        self.done = asyncio.Event()
        self.first = 0.0
        self.at = 0.0

    def hit(self, k: int = 1) -> None:
        """Count ``k`` more messages."""
        if not self.count:
            self.first = time.perf_counter()
        self.count += k
        if self.count >= self.n and not self.done.is_set():
            self.at = time.perf_counter()
            self.done.set()

    async def wait(self, t0: float) -> None:
        """Wait until ``n`` messages were handled.

        Fails after ``TIMEOUT``, or once no message was handled for ``STALL`` seconds.
        """
        deadline = t0 + TIMEOUT
        seen, moved = self.count, time.perf_counter()
        while not self.done.is_set():
            now = time.perf_counter()
            if self.count != seen:
                seen, moved = self.count, now
            elif now - moved > STALL:
                raise SystemExit(
                    f"only {self.count} of {self.n} handled, none in the last {STALL:.0f} s"
                )
            if now > deadline:
                raise SystemExit(f"only {self.count} of {self.n} handled in {TIMEOUT:.0f} s")
            try:
                await asyncio.wait_for(self.done.wait(), 1.0)
            except TimeoutError:
                continue


async def measure(
    n: int,
    fill: Callable[[], Awaitable[None]],
    consume: Callable[[Counter], Awaitable[float]],
    left: Callable[[], Awaitable[int]],
    cleanup: Callable[[], Awaitable[None]],
) -> dict[str, Any]:
    """Fill (untimed), consume (timed), then count what the broker still holds.

    ``consume(counter)`` starts the consumer right away, has its handler call
    ``counter.hit()``, waits for the counter, stops the consumer the system's own way and
    returns ``perf_counter()`` from just before starting it. ``left()`` returns how many
    messages the broker still holds unacknowledged (not committed, not acked, not deleted);
    it must be 0. ``cleanup()`` deletes the topic, stream or queue, also after a failure.

    Returns ``fill_s``; ``first_s`` (the first message handled: connecting, joining and the
    first fetch); ``handled_s`` (the N-th handled); ``acked_s`` (the consumer stopped with
    every acknowledgement sent); ``cpu_s`` (CPU time of this process while timed).
    """
    try:
        t = time.perf_counter()
        await fill()
        fill_s = time.perf_counter() - t
        counter = Counter(n)
        cpu0 = time.process_time()
        t0 = await consume(counter)
        stopped = time.perf_counter()
        cpu_s = time.process_time() - cpu0
        remaining = await left()
    finally:
        await cleanup()
    if counter.count != n or remaining != 0:
        raise SystemExit(f"handled {counter.count} of {n}; {remaining} left at the broker")
    return {
        "fill_s": fill_s,
        "first_s": counter.first - t0,
        "handled_s": counter.at - t0,
        "acked_s": stopped - t0,
        "cpu_s": cpu_s,
        "handled": counter.count,
        "left": remaining,
    }


def _version(package: str) -> str:
    try:
        return version(package)
    except PackageNotFoundError:
        return "-"


def report(out: dict[str, Any], package: str, drivers: Mapping[str, str]) -> None:
    """Print the figures with the versions, the loop and Python as one JSON line.

    ``drivers`` maps a key of the output to a distribution name, e.g. ``{"driver":
    "aiokafka"}``.
    """
    out["version"] = _version(package)
    for key, dist in drivers.items():
        out[key] = f"{dist} {_version(dist)}"
    out["loop"] = "asyncio"
    out["python"] = platform.python_version()
    print(json.dumps(out), flush=True)


def unavailable(reason: str) -> NoReturn:
    """Print why the system cannot run here and exit with ``UNAVAILABLE``."""
    print(json.dumps({"unavailable": reason}), flush=True)
    raise SystemExit(UNAVAILABLE)
