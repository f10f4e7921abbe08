"""A pipeline's stop when a worker loses its cancellation (as redis-py can on Python 3.11)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.dummy import DummyProducer

HANG_BOUND = 30.0  # only a hang takes that long


async def test_stop_returns_when_a_handler_loses_its_cancellation() -> None:
    started = asyncio.Event()

    async def handle(message: Message) -> Message:
        started.set()
        # Lost, as redis-py loses one that meets a write just finished:
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(3600)
        return message

    producer = DummyProducer([1])
    pipeline = Pipeline(producer=producer, handle_message=handle)
    await pipeline.start()
    await asyncio.wait_for(started.wait(), HANG_BOUND)
    stop = asyncio.create_task(pipeline.stop(timeout=0.01))
    done, _ = await asyncio.wait({stop}, timeout=HANG_BOUND)
    if not done:
        stop.cancel()
        pytest.fail(f"stop did not return within {HANG_BOUND:g}s", pytrace=False)
    stop.result()
    assert not pipeline.running
    assert [m.data for m in producer.acknowledger.successful] == [1]  # settled once
