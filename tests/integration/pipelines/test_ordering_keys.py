"""Ordering keys set by a producer: one key at a time, in order, any processor free to take it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from typing import Any

from underway.pipelines import DummyProducer, Message, Pipeline, RecordingAcknowledger

from .test_partitions import _keyed


class OrderedProducer(DummyProducer):
    """A DummyProducer whose broker keeps an order per ``key`` (``None`` for no key)."""

    def __init__(self, data: list[Any], key: Callable[[Any], Any]) -> None:
        super().__init__(data)
        self._key = key

    async def fetch(self, demand: int) -> list[Message]:
        messages = await super().fetch(demand)
        for message in messages:
            message.ordering_key = self._key(message.data)
        return messages


class Recorder:
    """Records, per key, the order messages were handled and any overlap of one key."""

    def __init__(self) -> None:
        self.seen: dict[Any, list[int]] = {}
        self.running: set[Any] = set()
        self.overlap = 0
        self.workers: dict[Any, set[int]] = {}
        self.busy = 0
        self.most_busy = 0

    async def handle(self, message: Message) -> None:
        key = message.data["key"]
        if key in self.running:
            self.overlap += 1
        self.running.add(key)
        self.busy += 1
        self.most_busy = max(self.most_busy, self.busy)
        task = asyncio.current_task()
        assert task is not None
        self.workers.setdefault(key, set()).add(id(task))
        await asyncio.sleep(random.random() / 1000)  # interleave processors
        self.seen.setdefault(key, []).append(message.data["seq"])
        self.running.discard(key)
        self.busy -= 1


async def test_equal_ordering_keys_are_handled_one_at_a_time_in_order() -> None:
    items = _keyed(800, keys=12)
    producer = OrderedProducer(items, key=lambda d: ("topic", d["key"]))
    recorder = Recorder()
    pipeline = Pipeline(
        producer=producer,
        handle_message=recorder.handle,
        processors={"concurrency": 4, "max_demand": 5},
    )
    async with pipeline:
        await producer.acknowledger.wait_for(len(items), timeout=30)

    assert recorder.overlap == 0
    for key, order in recorder.seen.items():
        assert order == list(range(1, len(order) + 1)), key
    assert sum(len(v) for v in recorder.seen.values()) == len(items)
    assert recorder.most_busy > 1  # different keys still ran side by side
    # Lanes are not pinned: some key moved between processors (work goes to idle ones).
    assert any(len(tasks) > 1 for tasks in recorder.workers.values())
    assert producer.acknowledger.failed == []


async def test_messages_without_an_ordering_key_are_not_held_back() -> None:
    """Keyed and unkeyed messages mixed: keyed ones stay in order, all are handled."""
    items = _keyed(600, keys=6)
    producer = OrderedProducer(items, key=lambda d: d["key"] if d["key"] % 2 else None)
    recorder = Recorder()
    pipeline = Pipeline(
        producer=producer,
        handle_message=recorder.handle,
        processors={"concurrency": 3, "max_demand": 4},
    )
    async with pipeline:
        await producer.acknowledger.wait_for(len(items), timeout=30)

    for key in (1, 3, 5):
        order = recorder.seen[key]
        assert order == list(range(1, len(order) + 1)), key
    assert sum(len(v) for v in recorder.seen.values()) == len(items)


async def test_partition_by_replaces_the_ordering_key() -> None:
    """With partition_by, the user's keys decide (here: all keys on one processor)."""
    items = _keyed(200, keys=8)
    producer = OrderedProducer(items, key=lambda d: d["key"])
    recorder = Recorder()
    pipeline = Pipeline(
        producer=producer,
        handle_message=recorder.handle,
        processors={"concurrency": 4, "max_demand": 5, "partition_by": lambda m: 0},
    )
    async with pipeline:
        await producer.acknowledger.wait_for(len(items), timeout=30)

    assert recorder.most_busy == 1
    assert len({t for tasks in recorder.workers.values() for t in tasks}) == 1


async def test_an_unhashable_ordering_key_fails_only_its_message() -> None:
    items = [{"key": i % 3, "seq": i} for i in range(30)]
    producer = OrderedProducer(items, key=lambda d: [d["key"]] if d["seq"] == 7 else d["key"])
    handled: list[int] = []

    async def handle(message: Message) -> None:
        handled.append(message.data["seq"])

    pipeline = Pipeline(
        producer=producer, handle_message=handle, processors={"concurrency": 2, "max_demand": 4}
    )
    async with pipeline:
        await producer.acknowledger.wait_for(len(items), timeout=30)

    assert sorted(handled) == [i for i in range(30) if i != 7]
    [failed] = producer.acknowledger.failed
    assert failed.data["seq"] == 7
    assert isinstance(failed.reason, TypeError)


async def test_stop_drains_every_lane() -> None:
    items = _keyed(300, keys=5)
    producer = OrderedProducer(items, key=lambda d: d["key"])
    handled = 0

    async def handle(message: Message) -> None:
        nonlocal handled
        await asyncio.sleep(0.001)
        handled += 1

    pipeline = Pipeline(
        producer=producer, handle_message=handle, processors={"concurrency": 3, "max_demand": 10}
    )
    await pipeline.start()
    await asyncio.sleep(0.01)
    await pipeline.stop()
    # Everything taken from the producer was handled and acknowledged before stop returned.
    assert handled == producer.acknowledger.count == producer.emitted
    assert pipeline.in_flight == 0


class _Incomparable:
    """A key that cannot be hashed and whose == raises (as a numpy array's does)."""

    __hash__ = None  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        raise ValueError("the truth value is ambiguous")


async def test_keys_that_cannot_be_compared_fail_only_their_messages() -> None:
    items = [{"key": i % 2, "seq": i} for i in range(20)]
    odd = _Incomparable()
    # Two such keys in a row (groupby compares neighbours), and a run of a list key.
    producer = OrderedProducer(
        items,
        key=lambda d: odd if d["seq"] in (4, 5) else [1] if d["seq"] in (9, 10) else d["key"],
    )
    handled: list[int] = []

    async def handle(message: Message) -> None:
        handled.append(message.data["seq"])

    pipeline = Pipeline(
        producer=producer, handle_message=handle, processors={"concurrency": 2, "max_demand": 4}
    )
    async with pipeline:
        await producer.acknowledger.wait_for(len(items), timeout=30)

    assert sorted(handled) == [i for i in range(20) if i not in (4, 5, 9, 10)]
    failed = sorted(producer.acknowledger.failed, key=lambda m: m.data["seq"])
    assert [m.data["seq"] for m in failed] == [4, 5, 9, 10]
    assert all(isinstance(m.reason, TypeError) for m in failed)


async def test_an_unhashable_key_fails_its_message_not_the_next_one_with_an_equal_key() -> None:
    # {1} == frozenset({1}): the two keys make one run, yet only the set cannot be hashed.
    acknowledger = RecordingAcknowledger()
    keys: list[Any] = [{1}, frozenset({1}), frozenset({1}), None, ("t", 0)]
    messages = [
        Message(i, acknowledger=acknowledger, ordering_key=key) for i, key in enumerate(keys)
    ]
    handled: list[int] = []

    async def handle(message: Message) -> None:
        handled.append(message.data)

    pipeline = Pipeline(producer=DummyProducer(), handle_message=handle)
    async with pipeline:
        pipeline.push_messages(messages)
        await acknowledger.wait_for(len(messages))

    assert [m.data for m in acknowledger.failed] == [0]
    assert isinstance(acknowledger.failed[0].reason, TypeError)
    assert sorted(handled) == [1, 2, 3, 4]
