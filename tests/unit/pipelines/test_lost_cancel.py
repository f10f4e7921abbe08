"""A pipeline's stop when a worker loses its cancellation (as redis-py can on Python 3.11)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tests.unit.tasks.test_clock import run_virtual
from underway.pipelines import Message, Pipeline
from underway.pipelines._topology.workers import CANCEL_BOUND
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


def test_the_stop_abandons_stubborn_workers_of_every_stage_within_one_bound() -> None:
    """A processor and a batch processor that swallow every cancellation: the stop waits
    for them once, within one :data:`CANCEL_BOUND` for the whole pipeline, not one per
    stage (on the virtual clock)."""

    async def main() -> float:
        loop = asyncio.get_running_loop()
        release = asyncio.Event()
        stuck: list[str] = []

        async def stubborn(where: str) -> None:
            stuck.append(where)
            while not release.is_set():
                with contextlib.suppress(asyncio.CancelledError):
                    await release.wait()

        async def handle(message: Message) -> Message:
            if message.data == "batched":
                return message.put_batcher("b")
            await stubborn("processor")
            return message

        async def handle_batch(batcher: str, batch: list[Message], info: object) -> None:
            await stubborn("batch processor")

        pipeline = Pipeline(
            producer=DummyProducer(["batched", "processed"]),
            handle_message=handle,
            processors={"concurrency": 2, "max_demand": 1},
            batchers={"b": {"batch_size": 1}},
            handle_batch=handle_batch,
        )
        await pipeline.start()
        while len(stuck) < 2:
            await asyncio.sleep(0.01)
        began = loop.time()
        await pipeline.stop(timeout=1)
        took = loop.time() - began
        release.set()  # the abandoned workers go on to their next message: end them
        await asyncio.sleep(0.1)
        abandoned = asyncio.all_tasks() - {asyncio.current_task()}
        assert {t.get_name() for t in abandoned} == {
            "pipeline:processor:0",
            "pipeline:batch_processor:b:0",
        }
        for task in abandoned:
            task.cancel()
        await asyncio.wait(abandoned)
        return took

    took = run_virtual(main())
    assert CANCEL_BOUND <= took < 1 + CANCEL_BOUND + 1  # one bound, not one per stage
