"""Pipelines in memory: exactly-once acks, demand and shutdown at their edges."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import time
from collections.abc import Sequence
from typing import Any

import pytest

from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline
from underway.pipelines.testing import test_message


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def ack_counts(producer: DummyProducer) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for message in [*producer.acknowledger.successful, *producer.acknowledger.failed]:
        counts[message.data] = counts.get(message.data, 0) + 1
    return counts


class HookedProducer(DummyProducer):
    """A dummy producer that counts its lifecycle hooks; ``prepare_for_start`` may wait."""

    def __init__(self, data: Sequence[Any] = (), *, start_gate: asyncio.Event | None = None):
        super().__init__(data)
        self.start_gate = start_gate
        self.starts = 0
        self.closes = 0

    async def prepare_for_start(self, capacity: int) -> None:
        self.starts += 1
        await asyncio.sleep(0)
        if self.start_gate is not None:
            await self.start_gate.wait()

    async def close(self) -> None:
        self.closes += 1
        await asyncio.sleep(0.01)


# -- handlers returning another message object ------------------------------------------


async def test_handler_returning_a_new_message_still_acks_the_original() -> None:
    producer = DummyProducer(range(5))

    def handle(message: Message) -> Message:
        return Message(data=message.data * 10)  # a new object, without the acknowledger

    async with Pipeline(producer=producer, handle_message=handle) as pipeline:
        await producer.acknowledger.wait_for(5)
        await until(lambda: pipeline.in_flight == 0)
    assert sorted(m.data for m in producer.acknowledger.successful) == [0, 10, 20, 30, 40]


async def test_handler_returning_a_copy_made_before_ack_immediately_is_acked_once() -> None:
    producer = DummyProducer(range(4))

    async def handle(message: Message) -> Message:
        copy = dataclasses.replace(message, data=message.data + 100)
        await message.ack_immediately()
        return copy

    async with Pipeline(producer=producer, handle_message=handle) as pipeline:
        await producer.acknowledger.wait_for(4)
        await until(lambda: pipeline.in_flight == 0)
        await asyncio.sleep(0.05)
    assert sorted(ack_counts(producer).values()) == [1, 1, 1, 1]


async def test_prepare_messages_dropping_one_fails_the_group_instead_of_losing_it() -> None:
    producer = DummyProducer(range(6))

    def prepare(messages: list[Message]) -> list[Message]:
        return messages[:-1]

    pipeline = Pipeline(
        producer=producer,
        handle_message=lambda m: m,
        prepare_messages=prepare,
        processors={"concurrency": 1, "max_demand": 3, "min_demand": 1},
    )
    async with pipeline:
        await producer.acknowledger.wait_for(6, timeout=3)
        await until(lambda: pipeline.in_flight == 0)
    assert sorted(ack_counts(producer)) == list(range(6))
    assert all(count == 1 for count in ack_counts(producer).values())
    assert all("prepare_messages" in str(m.reason) for m in producer.acknowledger.failed)


async def test_prepare_messages_returning_new_objects_acks_the_originals() -> None:
    producer = DummyProducer(range(4))

    def prepare(messages: list[Message]) -> list[Message]:
        return [Message(data=(m.data, "loaded")) for m in messages]

    async with Pipeline(
        producer=producer, handle_message=lambda m: m, prepare_messages=prepare
    ) as pipeline:
        await producer.acknowledger.wait_for(4, timeout=3)
        await until(lambda: pipeline.in_flight == 0)
    assert sorted(m.data for m in producer.acknowledger.successful) == [
        (i, "loaded") for i in range(4)
    ]


async def test_handle_batch_shrinking_its_list_does_not_lose_acks() -> None:
    producer = DummyProducer(range(6))

    def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        messages.clear()

    pipeline = Pipeline(
        producer=producer,
        handle_message=lambda m: m.put_batcher("b"),
        batchers={"b": {"batch_size": 3, "batch_timeout": 0.05}},
        handle_batch=handle_batch,
    )
    async with pipeline:
        await producer.acknowledger.wait_for(6, timeout=3)
        await until(lambda: pipeline.in_flight == 0)


# -- flush mode ---------------------------------------------------------------------------


async def test_flush_mode_leaves_no_mark_that_a_later_message_could_inherit() -> None:
    producer = DummyProducer()
    infos: list[BatchInfo] = []

    def handle(message: Message) -> Message:
        return message.put_batcher("b") if message.data == "batch" else message

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        batchers={"b": {"batch_size": 1000, "batch_timeout": 0.2}},
        handle_batch=lambda name, messages, info: infos.append(info),
    )
    async with pipeline:
        for i in range(200):  # flush-mode messages that never reach a batcher
            await test_message(pipeline, i)
        gc.collect()
        producer.push(*["batch"] * 200)
        await producer.acknowledger.wait_for(200, timeout=5)
    assert {info.trigger for info in infos} == {"timeout"}


# -- batchers ---------------------------------------------------------------------------


async def test_unhashable_batch_key_fails_its_message_only() -> None:
    producer = HookedProducer(range(6))

    def handle(message: Message) -> Message:
        key: Any = [message.data] if message.data == 3 else message.data % 2
        return message.put_batcher("b").put_batch_key(key)

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        batchers={"b": {"batch_size": 2, "batch_timeout": 0.05}},
        handle_batch=lambda *args: None,
    )
    await pipeline.start()
    await producer.acknowledger.wait_for(6, timeout=3)
    await asyncio.wait_for(pipeline.stop(), 5)
    assert [m.data for m in producer.acknowledger.failed] == [3]
    assert producer.closes == 1


async def test_batch_size_function_raising_fails_its_message_only() -> None:
    producer = HookedProducer(range(6))

    def size(batch: Sequence[Message]) -> bool:
        if batch[-1].data == 2:
            raise ValueError("bad size")
        return len(batch) >= 2

    pipeline = Pipeline(
        producer=producer,
        handle_message=lambda m: m.put_batcher("b"),
        processors={"concurrency": 1},
        batchers={"b": {"batch_size": size, "batch_timeout": 0.05}},
        handle_batch=lambda *args: None,
    )
    await pipeline.start()
    await producer.acknowledger.wait_for(6, timeout=3)
    await asyncio.wait_for(pipeline.stop(), 5)
    assert [m.data for m in producer.acknowledger.failed] == [2]
    assert ack_counts(producer) == dict.fromkeys(range(6), 1)
    assert producer.closes == 1


# -- lifecycle --------------------------------------------------------------------------


async def test_concurrent_starts_start_once() -> None:
    producer = HookedProducer(range(20))
    running = peak = 0

    async def handle(message: Message) -> Message:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.002)
        running -= 1
        return message

    pipeline = Pipeline(producer=producer, handle_message=handle, processors={"concurrency": 1})
    await asyncio.gather(pipeline.start(), pipeline.start())
    await producer.acknowledger.wait_for(20)
    await pipeline.stop()
    assert producer.starts == 1
    assert peak == 1


async def test_stop_during_start_leaves_the_pipeline_stopped() -> None:
    gate = asyncio.Event()
    producer = HookedProducer(range(3), start_gate=gate)
    pipeline = Pipeline(producer=producer, handle_message=lambda m: m)
    starting = asyncio.create_task(pipeline.start())
    await until(lambda: producer.starts == 1)
    stopping = asyncio.create_task(pipeline.stop())
    await asyncio.sleep(0.01)
    gate.set()
    await asyncio.wait_for(asyncio.gather(starting, stopping), 5)
    assert not pipeline.running
    assert producer.closes == 1
    emitted = producer.emitted
    await asyncio.sleep(0.05)
    assert producer.emitted == emitted  # nothing pulled once stopped
    assert producer.acknowledger.count == emitted


async def test_concurrent_stops_close_producers_once() -> None:
    producer = HookedProducer(range(3))
    pipeline = Pipeline(producer=producer, handle_message=lambda m: m)
    await pipeline.start()
    await producer.acknowledger.wait_for(3)
    await asyncio.gather(pipeline.stop(), pipeline.stop())
    assert producer.closes == 1
    assert not pipeline.running


async def test_a_failed_start_closes_the_producers_already_started() -> None:
    first = HookedProducer()

    class Broken(DummyProducer):
        async def prepare_for_start(self, capacity: int) -> None:
            raise ConnectionError("unreachable")

    pipeline = Pipeline(producer=[first, Broken()], handle_message=lambda m: m)
    try:
        await pipeline.start()
    except ConnectionError:
        pass
    else:
        raise AssertionError("start() should have failed")
    assert first.starts == 1
    assert first.closes == 1
    assert not pipeline.running


async def test_restart_after_the_bound_ran_out_does_not_handle_abandoned_messages() -> None:
    producer = DummyProducer(range(4))
    gate = asyncio.Event()
    handled: list[Any] = []

    async def handle(message: Message) -> Message:
        handled.append(message.data)
        if message.data < 4:
            await gate.wait()
        return message

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={
            "concurrency": 2,
            "max_demand": 1,
            "min_demand": 0,
            "partition_by": lambda m: 0,  # one processor; the second message waits for it
        },
    )
    await pipeline.start()
    await until(lambda: handled == [0])
    await until(lambda: producer.emitted == 2)  # 0 in the handler, 1 queued behind it
    await pipeline.stop(timeout=0.05)
    assert producer.acknowledger.count == 0
    gate.set()
    producer.push(10)
    await pipeline.start()
    await until(lambda: 10 in handled)
    await pipeline.stop()
    assert 1 not in handled  # abandoned at stop: the broker redelivers it, not this pipeline
    assert pipeline.in_flight == 0


# -- demand -----------------------------------------------------------------------------


async def test_idle_producers_do_not_starve_a_busy_one() -> None:
    idle_a, idle_b, busy = DummyProducer(), DummyProducer(), DummyProducer(range(5))
    pipeline = Pipeline(
        producer=[idle_a, idle_b, busy],
        handle_message=lambda m: m,
        processors={"concurrency": 1, "max_demand": 10, "min_demand": 5},
    )
    async with pipeline:
        await busy.acknowledger.wait_for(5, timeout=3)


async def test_rate_limited_concurrent_fetches_stay_within_capacity() -> None:
    producer = DummyProducer(range(50))
    gate = asyncio.Event()
    peak = 0
    pipeline: Pipeline

    async def handle(message: Message) -> Message:
        await gate.wait()
        return message

    def watch() -> bool:
        nonlocal peak
        peak = max(peak, pipeline.in_flight)
        return False

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 1, "max_demand": 2, "min_demand": 1},
        producer_concurrency=4,
        rate_limit=(1, 0.05),
    )
    async with pipeline:
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            watch()
            await asyncio.sleep(0.005)
        gate.set()
    assert peak <= 2
    assert producer.emitted <= 2  # nothing is fetched beyond capacity while all are held


async def test_rate_limit_update_wakes_a_waiting_producer() -> None:
    producer = DummyProducer(range(3))
    pipeline = Pipeline(producer=producer, handle_message=lambda m: m, rate_limit=(1, 30.0))
    async with pipeline:
        await producer.acknowledger.wait_for(1)
        await asyncio.sleep(0.05)  # the producer now waits for the next 30 s window
        pipeline.update_rate_limit(100, 0.05)
        await producer.acknowledger.wait_for(3, timeout=5)  # within 5 s, not after 30 s


async def test_ack_immediately_after_the_pipeline_acked_does_nothing() -> None:
    producer = DummyProducer(range(3))
    kept: list[Message] = []

    def handle(message: Message) -> Message:
        kept.append(message)
        return message

    async with Pipeline(producer=producer, handle_message=handle) as pipeline:
        await producer.acknowledger.wait_for(3)
        await until(lambda: pipeline.in_flight == 0)
        for message in kept:
            await message.ack_immediately()  # late: the pipeline settled it already
    assert producer.acknowledger.count == 3
    assert all(message.acked for message in kept)


async def test_a_producer_returning_more_than_asked_is_processed_and_warned_about(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Greedy(DummyProducer):
        async def fetch(self, demand: int) -> list[Message]:
            return await super().fetch(demand + 5)

    producer = Greedy(range(40))
    pipeline = Pipeline(
        producer=producer,
        handle_message=lambda m: m,
        processors={"concurrency": 1, "max_demand": 4},
    )
    with caplog.at_level(logging.WARNING, logger="underway.pipelines"):
        async with pipeline:
            await producer.acknowledger.wait_for(40)
    warnings = [r.getMessage() for r in caplog.records if "when asked for" in r.getMessage()]
    assert len(warnings) == 1  # once per producer
    assert "fetch must return at most the demand" in warnings[0]


async def test_a_handler_returning_something_else_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = DummyProducer(range(5))

    def handle(message: Message) -> Any:  # a dict, which the pipeline does not expect
        return {"data": message.data}

    pipeline = Pipeline(producer=producer, handle_message=handle)
    with caplog.at_level(logging.WARNING, logger="underway.pipelines"):
        async with pipeline:
            await producer.acknowledger.wait_for(5)
    warnings = [r.getMessage() for r in caplog.records if "returned a dict" in r.getMessage()]
    assert len(warnings) == 1
    assert len(producer.acknowledger.successful) == 5  # still acked as they were


async def test_a_crashed_worker_is_logged_at_stop_and_the_stop_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = DummyProducer([1])
    pipeline = Pipeline(
        producer=producer,
        handle_message=lambda m: m.put_batcher("b"),
        batchers={"b": {"batch_size": 1}},
        handle_batch=lambda *a: None,
    )

    async def broken(batch: list[Message], info: BatchInfo) -> None:
        raise RuntimeError("bug in the batch stage")

    pipeline._handlers.batch = broken  # type: ignore[method-assign]
    with caplog.at_level(logging.ERROR, logger="underway.pipelines"):
        await pipeline.start()
        await asyncio.sleep(0.1)  # the batch processor dies on the one batch
        await pipeline.stop(timeout=0.5)
    crashed = [r for r in caplog.records if "had crashed" in r.getMessage()]
    assert len(crashed) == 1
    assert isinstance(crashed[0].exc_info[1], RuntimeError)  # type: ignore[index]
    assert not pipeline.running
