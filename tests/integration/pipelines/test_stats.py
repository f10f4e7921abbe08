"""PipelineStats on running pipelines: what the stages settle, hold and batch, and the
pipeline's state while it runs, drains and stops."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline, PipelineStats


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


async def test_each_stage_counts_what_it_settled_and_each_batcher_its_batches() -> None:
    producer = DummyProducer(range(1, 11))

    def handle(message: Message) -> Message:
        if message.data == 5:
            raise ValueError("five")
        if message.data % 2 == 0:
            message.put_batcher("even")
        return message

    def handle_batch(batcher: str, batch: list[Message], info: BatchInfo) -> None:
        if any(m.data == 4 for m in batch):
            raise ValueError("four")

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 1, "max_demand": 10},
        batchers={"even": {"batch_size": 3, "batch_timeout": 0.05}},
        handle_batch=handle_batch,
        rate_limit=(1000, 1.0),
        name="numbers",
    )
    with PipelineStats([pipeline]) as stats:
        async with pipeline:
            await producer.acknowledger.wait_for(10)
            [snapshot] = stats.snapshot()
            assert (snapshot.name, snapshot.state, snapshot.in_flight) == ("numbers", "running", 0)
            assert snapshot.rate_limit == (1000, 1.0)
            assert snapshot.capacity == pipeline.capacity
        processors, even, batch_processors = stats.snapshot()[0].stages
    assert (processors.kind, processors.ok, processors.failed) == ("processors", 4, 1)
    assert (batch_processors.ok, batch_processors.failed) == (2, 3)
    assert sum(m.ok for m in processors.minutes) == 4
    assert (even.kind, even.name) == ("batcher", "even")
    assert even.batches is not None
    assert (even.batches.batches, even.batches.failed, even.batches.messages) == (2, 1, 5)
    assert (even.batches.smallest, even.batches.largest) == (2, 3)
    assert stats.snapshot()[0].state == "stopped"


async def test_in_flight_per_stage_and_the_drain_state() -> None:
    producer = DummyProducer(["hold", "batch"])
    release = asyncio.Event()

    async def handle(message: Message) -> Message:
        if message.data == "hold":
            await release.wait()
        else:
            message.put_batcher("slow")
        return message

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "partition_by": lambda m: int(m.data == "hold")},
        batchers={"slow": {"batch_size": 10, "batch_timeout": 60.0}},
        handle_batch=lambda batcher, batch, info: None,
        name="held",
    )
    stats = PipelineStats([pipeline])
    assert stats.snapshot()[0].state == "stopped"
    await pipeline.start()
    try:
        await until(lambda: pipeline.in_flight == 2 and pipeline.in_batchers == 1)
        [snapshot] = stats.snapshot()
        processors, slow, batch_processors = snapshot.stages
        assert (snapshot.state, snapshot.in_flight) == ("running", 2)
        assert processors.in_flight == 1
        assert slow.in_flight is None
        assert batch_processors.in_flight == 1
        stopping = asyncio.create_task(pipeline.stop(timeout=10.0))
        await until(lambda: stats.snapshot()[0].state == "draining")
        release.set()
        await stopping
    finally:
        release.set()
        await pipeline.stop()
    assert stats.snapshot()[0].state == "stopped"
    assert producer.acknowledger.count == 2
    assert stats.snapshot()[0].stages[0].ok == 0  # never attached: nothing counted
