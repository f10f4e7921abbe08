"""Pipelines in memory: partition_by, producer concurrency and hooks, ack_immediately, decoding."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Sequence
from typing import Any

import pytest

from underway.errors import ConfigError, DecodeError
from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline
from underway.pipelines._policy import parse_batchers, parse_processors, partition
from underway.pipelines.message import decode_message

from .test_flow import until


def _keyed(count: int, keys: int, seed: int = 7) -> list[dict[str, int]]:
    rng = random.Random(seed)
    seq: dict[int, int] = {}
    items = []
    for _ in range(count):
        key = rng.randrange(keys)
        seq[key] = seq.get(key, 0) + 1
        items.append({"key": key, "seq": seq[key]})
    return items


async def test_partition_by_keeps_order_per_key_with_concurrent_processors() -> None:
    items = _keyed(600, keys=9)
    producer = DummyProducer(items)
    seen: dict[int, list[int]] = {}
    workers: dict[int, set[int]] = {}
    running: set[int] = set()
    overlap = 0

    async def handle(message: Message) -> None:
        nonlocal overlap
        key = message.data["key"]
        if key in running:
            overlap += 1
        running.add(key)
        task = asyncio.current_task()
        assert task is not None
        workers.setdefault(key, set()).add(id(task))
        await asyncio.sleep(random.random() / 1000)  # interleave processors
        seen.setdefault(key, []).append(message.data["seq"])
        running.discard(key)

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 7, "partition_by": lambda m: m.data["key"]},
    )
    async with pipeline:
        await producer.acknowledger.wait_for(len(items))

    assert overlap == 0  # one key is never handled twice at once
    assert all(len(tasks) == 1 for tasks in workers.values())  # one processor per key
    assert len({t for tasks in workers.values() for t in tasks}) == 4  # all four worked
    for key, order in seen.items():
        assert order == list(range(1, len(order) + 1)), key
    assert sum(len(v) for v in seen.values()) == len(items)


async def test_without_partition_by_order_is_not_kept() -> None:
    """The control for the test above: concurrent processors do reorder a key's messages."""
    items = _keyed(600, keys=9)
    producer = DummyProducer(items)
    seen: dict[int, list[int]] = {}

    async def handle(message: Message) -> None:
        await asyncio.sleep(random.random() / 1000)
        seen.setdefault(message.data["key"], []).append(message.data["seq"])

    pipeline = Pipeline(
        producer=producer, handle_message=handle, processors={"concurrency": 4, "max_demand": 7}
    )
    async with pipeline:
        await producer.acknowledger.wait_for(len(items))
    assert any(order != sorted(order) for order in seen.values())


async def test_batcher_partition_by_keeps_batches_of_one_partition_in_order() -> None:
    items = _keyed(500, keys=6, seed=3)
    producer = DummyProducer(items)
    batches: list[tuple[int, list[dict[str, int]]]] = []
    handlers: dict[int, set[int]] = {}

    async def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.setdefault(info.partition, set()).add(id(task))
        await asyncio.sleep(random.random() / 500)
        batches.append((info.partition, [m.data for m in messages]))

    pipeline = Pipeline(
        producer=producer,
        handle_message=lambda m: m.put_batcher("out"),
        processors={"concurrency": 3, "partition_by": lambda m: m.data["key"]},
        batchers={
            "out": {
                "batch_size": 10,
                "batch_timeout": 0.05,
                "concurrency": 3,
                "partition_by": lambda m: m.data["key"],
            }
        },
        handle_batch=handle_batch,
    )
    async with pipeline:
        await producer.acknowledger.wait_for(len(items))

    assert all(len(tasks) == 1 for tasks in handlers.values())  # one batch processor each
    assert sorted(handlers) == [0, 1, 2]
    per_key: dict[int, list[int]] = {}
    for index, data in batches:
        assert {partition(d["key"], 3) for d in data} == {index}
        for d in data:
            per_key.setdefault(d["key"], []).append(d["seq"])
    for key, order in per_key.items():
        assert order == list(range(1, len(order) + 1)), key


async def test_a_partition_function_that_raises_fails_only_that_message() -> None:
    producer = DummyProducer([{"key": 1}, {"nokey": 2}, {"key": 3}])
    handled: list[Any] = []

    async def handle(message: Message) -> None:
        handled.append(message.data)

    async def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        return None

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "partition_by": lambda m: m.data["key"]},
    )
    async with pipeline:
        await producer.acknowledger.wait_for(3)
    failed = producer.acknowledger.failed
    assert [m.data for m in failed] == [{"nokey": 2}]
    assert isinstance(failed[0].reason, KeyError)
    assert sorted(d["key"] for d in handled) == [1, 3]

    batched = DummyProducer([{"b": 1}, {"x": 2}])
    pipeline = Pipeline(
        producer=batched,
        handle_message=lambda m: m.put_batcher("b"),
        batchers={"b": {"concurrency": 2, "partition_by": lambda m: m.data["b"]}},
        handle_batch=handle_batch,
    )
    async with pipeline:
        await batched.acknowledger.wait_for(2)
    assert [m.data for m in batched.acknowledger.failed] == [{"x": 2}]
    assert [m.data for m in batched.acknowledger.successful] == [{"b": 1}]


def test_partition_maps_small_ints_to_distinct_workers() -> None:
    assert [partition(k, 4) for k in range(8)] == [0, 1, 2, 3, 0, 1, 2, 3]
    assert partition("anything", 1) == 0
    assert partition("acct-7", 5) == partition("acct-7", 5)
    assert 0 <= partition(("a", 1), 3) < 3


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"processors": {"partition_by": "key"}}, "partition_by must be a function"),
        ({"batchers": {"b": {"partition_by": 3}}}, "partition_by must be a function"),
        ({"batchers": {"": {}}}, "non-empty string"),
        ({"producer_concurrency": 0}, "producer_concurrency must be an int >= 1"),
        ({"producer_concurrency": True}, "producer_concurrency must be an int >= 1"),
    ],
)
def test_bad_partition_and_concurrency_options(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        Pipeline(
            producer=DummyProducer(),
            handle_message=lambda m: m,
            handle_batch=lambda *a: None,
            **options,
        )


def test_partition_options_parse() -> None:
    def key(m: Message) -> Any:
        return m.data

    assert parse_processors({"partition_by": key}).partition_by is key
    assert parse_batchers({"b": {"partition_by": key}})["b"].partition_by is key


class HookedProducer(DummyProducer):
    """Records the lifecycle hooks and how many fetches ran at once."""

    def __init__(self, data: Sequence[Any]) -> None:
        super().__init__(data)
        self.calls: list[Any] = []
        self.concurrent = 0
        self.most_concurrent = 0

    async def prepare_for_start(self, capacity: int) -> None:
        self.calls.append(("start", capacity))

    def prepare_for_draining(self) -> None:  # type: ignore[override]
        self.calls.append(("draining", self.acknowledger.count))

    async def close(self) -> None:
        self.calls.append(("close", self.acknowledger.count))

    async def fetch(self, demand: int) -> list[Message]:
        self.concurrent += 1
        self.most_concurrent = max(self.most_concurrent, self.concurrent)
        try:
            await asyncio.sleep(0.01)
            return await super().fetch(min(demand, 3))
        finally:
            self.concurrent -= 1


async def test_producer_concurrency_and_lifecycle_hooks() -> None:
    producer = HookedProducer(range(300))
    gate = asyncio.Event()

    async def handle(message: Message) -> None:
        if message.data >= 200:
            await gate.wait()

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 25},
        producer_concurrency=3,
    )
    await pipeline.start()
    assert producer.calls == [("start", 100)]
    await until(lambda: producer.emitted >= 250)
    assert producer.most_concurrent == 3
    stopping = asyncio.create_task(pipeline.stop(timeout=10))
    await until(lambda: len(producer.calls) == 2)
    gate.set()
    await stopping
    acked = producer.acknowledger.count
    assert producer.calls[1][0] == "draining"
    assert producer.calls[2] == ("close", acked)  # closed only after the last ack
    assert acked == producer.emitted


async def test_a_producer_that_cannot_start_fails_start() -> None:
    class Unreachable(DummyProducer):
        async def prepare_for_start(self, capacity: int) -> None:
            raise ConnectionError("broker down")

    pipeline = Pipeline(producer=Unreachable([1]), handle_message=lambda m: m)
    with pytest.raises(ConnectionError, match="broker down"):
        await pipeline.start()
    assert not pipeline.running


async def test_ack_immediately_acks_once_even_when_a_batch_later_fails() -> None:
    producer = DummyProducer(range(10))
    handled_failed: list[Message] = []

    async def handle(message: Message) -> Message:
        if message.data % 2 == 0:
            await message.ack_immediately()
            assert producer.acknowledger.successful[-1] is message  # acked right here
        return message.put_batcher("b")

    def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        raise RuntimeError("sink down")

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        batchers={"b": {"batch_size": 10}},
        handle_batch=handle_batch,
        handle_failed=lambda failed: handled_failed.extend(failed),
    )
    async with pipeline:
        await until(lambda: len(handled_failed) == 10)
        await producer.acknowledger.wait_for(10)

    ack = producer.acknowledger
    assert sorted(m.data for m in ack.successful) == [0, 2, 4, 6, 8]  # acked before the batch
    assert sorted(m.data for m in ack.failed) == [1, 3, 5, 7, 9]
    assert ack.count == 10  # never twice
    assert all(isinstance(m.reason, RuntimeError) for m in handled_failed)


async def test_ack_immediately_of_a_failed_message_settles_it_as_failed() -> None:
    producer = DummyProducer(["x"])

    async def handle(message: Message) -> Message:
        await message.failed("bad").ack_immediately()
        await message.ack_immediately()  # a second call does nothing
        return message

    async with Pipeline(producer=producer, handle_message=handle):
        await producer.acknowledger.wait_for(1)
        await asyncio.sleep(0.05)
    assert [m.reason for m in producer.acknowledger.failed] == ["bad"]
    assert producer.acknowledger.successful == []


class BytesProducer(DummyProducer):
    """Hands out raw payloads decoded with ``decode_message``, as broker producers do."""

    async def fetch(self, demand: int) -> list[Message]:
        raw = await super().fetch(demand)
        return [
            decode_message(m.data, json.loads, self.acknowledger, {"n": i})
            for i, m in enumerate(raw)
        ]


async def test_a_payload_that_cannot_be_decoded_fails_alone_with_a_clear_reason() -> None:
    producer = BytesProducer([b'{"a": 1}', b"\xff not json", b'{"a": 2}'])
    handled: list[Any] = []
    failed: list[Message] = []

    async with Pipeline(
        producer=producer,
        handle_message=lambda m: handled.append(m.data),
        handle_failed=lambda ms: failed.extend(ms),
    ):
        await producer.acknowledger.wait_for(3)

    assert handled == [{"a": 1}, {"a": 2}]  # the handler never saw the bad payload
    assert [m.data for m in failed] == [b"\xff not json"]  # the raw body is kept
    reason = failed[0].reason
    assert isinstance(reason, DecodeError)
    assert "payload could not be decoded" in str(reason)
    assert isinstance(reason.__cause__, ValueError)
    assert producer.acknowledger.failed == failed


def test_decode_message_without_decoder_keeps_the_body() -> None:
    message = decode_message(b"raw", None, producer_ack := DummyProducer().acknowledger, {"k": 1})
    assert (message.data, message.metadata, message.is_failed) == (b"raw", {"k": 1}, False)
    assert message.acknowledger is producer_ack


async def test_full_batches_as_large_as_the_processors_capacity_are_reached() -> None:
    """Messages waiting in a batcher do not stop the processors from asking for more."""
    producer = DummyProducer(range(1000))
    infos: list[BatchInfo] = []
    most = 0
    pipeline: Pipeline

    def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        nonlocal most
        most = max(most, pipeline.in_flight)
        infos.append(info)

    pipeline = Pipeline(
        producer=producer,
        handle_message=lambda m: m.put_batcher("b"),
        processors={"concurrency": 10, "max_demand": 10},  # capacity 100, as batch_size
        batchers={"b": {"batch_size": 100, "batch_timeout": 60}},
        handle_batch=handle_batch,
    )
    assert pipeline.capacity == 100 + 100 * 2  # one batch filling, one being handled
    async with pipeline:
        await producer.acknowledger.wait_for(1000, timeout=20)  # not 10 batch timeouts
    assert [i.trigger for i in infos] == ["size"] * 10
    assert [i.size for i in infos] == [100] * 10
    assert most <= pipeline.capacity
    assert max(producer.demands) <= pipeline.capacity


def test_capacity_counts_each_batcher() -> None:
    pipeline = Pipeline(
        producer=DummyProducer(),
        handle_message=lambda m: m,
        processors={"concurrency": 2, "max_demand": 5},
        batchers={
            "a": {"batch_size": 20, "concurrency": 3},
            "b": {"batch_size": lambda batch: len(batch) > 1},
        },
        handle_batch=lambda *a: None,
    )
    assert pipeline.capacity == 10 + 20 * 4 + 10 * 2
