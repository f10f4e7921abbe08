"""A Redis Streams pipeline stopped again and again while its Redis commands are in flight.

redis-py (8.2, and older: on Python 3.11 its writes go through ``asyncio.wait_for``, which
returns instead of raising when a cancellation meets a write that just finished) can lose a
cancellation that arrives in the middle of a command. A pipeline whose processors are
acknowledging when the drain bound runs out cancels them there: each stop must still
return, and every message must still be handled exactly once across the restarts.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import pytest
from redis.asyncio import Redis

from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.redis_streams import RedisStreamProducer

from ._redis import URL, admin_fixture, stream_fixture  # noqa: F401 (fixtures)

pytestmark = pytest.mark.redis

HANG_BOUND = 30.0  # how long one stop may take: only a hang takes that
CYCLES = 40
PER_CYCLE = 60


async def fill(admin: Redis, stream: str, count: int) -> list[str]:
    pipe = admin.pipeline(transaction=False)
    for n in range(count):
        pipe.xadd(stream, {"n": str(n)})
    return [i.decode() for i in await pipe.execute()]


def awaiting(task: asyncio.Task[Any]) -> list[str]:
    """Where ``task`` waits: its chain of awaited coroutines, outermost first."""
    chain: list[str] = []
    coro: Any = task.get_coro()
    while coro is not None and hasattr(coro, "cr_frame"):
        if coro.cr_frame is not None:
            chain.append(f"{coro.cr_code.co_qualname} line {coro.cr_frame.f_lineno}")
        coro = coro.cr_await
    return chain


async def bounded(coro: Any, what: str) -> None:
    """Await ``coro`` in a task of its own; fail, naming ``what``, if it hangs."""
    task = asyncio.ensure_future(coro)
    done, _ = await asyncio.wait({task}, timeout=HANG_BOUND)
    if not done:
        stack = "".join(f"\n  {where}" for where in awaiting(task))
        task.cancel()
        pytest.fail(f"{what} did not return within {HANG_BOUND:g}s; stack:{stack}", pytrace=False)
    task.result()


async def until(condition: Any, what: str) -> None:
    deadline = time.monotonic() + HANG_BOUND
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not reached within {HANG_BOUND:g}s", pytrace=False)
        await asyncio.sleep(0.005)


async def test_stops_mid_ack_return_and_every_message_is_handled_once(
    admin: Redis, stream: str
) -> None:
    producer = RedisStreamProducer(
        stream, "g", url=URL, block=0.2, claim_idle=0.5, max_deliveries=None
    )
    handled: Counter[str] = Counter()
    turn = 0

    async def handle(message: Message) -> Message:
        nonlocal turn
        turn += 1
        await asyncio.sleep(0.0005 * (turn % 4))  # a cancel here: not handled, delivered again
        # From here to the acknowledgement nothing awaits: a handled message is acked.
        handled[message.metadata["id"]] += 1
        return message

    def pipeline() -> Pipeline:
        # One message per chunk and a short handler: processors spend much of their time
        # acknowledging, so the drain bound often cuts one mid-command.
        return Pipeline(
            producer=producer,
            handle_message=handle,
            processors={"concurrency": 8, "max_demand": 1},
        )

    ids: list[str] = []
    for cycle in range(CYCLES):
        ids += await fill(admin, stream, PER_CYCLE)
        running = pipeline()
        await bounded(running.start(), f"start of cycle {cycle}")
        before = sum(handled.values())
        await until(lambda b=before: sum(handled.values()) >= b + 10, f"progress in cycle {cycle}")
        # A drain bound far too short: processors are cancelled wherever they are.
        await bounded(running.stop(timeout=0.001), f"stop of cycle {cycle}")
        assert producer.held == 0

    # What the cut stops left pending is reclaimed (claim_idle) by a last, unhurried run.
    final = pipeline()
    await bounded(final.start(), "start of the last run")
    await until(lambda: len(handled) == len(ids), "every message handled")
    await until(lambda: final.in_flight == 0, "the last run idle")
    await bounded(final.stop(), "stop of the last run")

    twice = {entry_id: n for entry_id, n in handled.items() if n != 1}
    assert not twice, f"handled more than once: {twice}"
    assert set(handled) == set(ids)
    assert int((await admin.xpending(stream, "g"))["pending"]) == 0
