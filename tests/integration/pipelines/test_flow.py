"""Pipelines end to end in memory: demand, acks, failures, batching, drain, rate limit."""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from underway import _telemetry as telemetry
from underway.errors import ConfigError
from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline
from underway.pipelines.testing import test_batch, test_message


async def until(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.005)


def noop(message: Message) -> Message:
    return message


def test_construction_errors() -> None:
    producer = DummyProducer()
    with pytest.raises(ConfigError, match="batch_size must be an int >= 1, got 0"):
        Pipeline(
            producer=producer,
            handle_message=noop,
            batchers={"s3": {"batch_size": 0}},
            handle_batch=lambda *a: None,
        )
    with pytest.raises(ConfigError, match="min_demand"):
        Pipeline(
            producer=producer, handle_message=noop, processors={"min_demand": 9, "max_demand": 2}
        )
    with pytest.raises(ConfigError, match="handle_batch is missing"):
        Pipeline(producer=producer, handle_message=noop, batchers={"s3": {}})
    with pytest.raises(ConfigError, match="no fetch"):
        Pipeline(producer=object(), handle_message=noop)  # type: ignore[arg-type]


async def test_slow_handler_bounds_in_flight_and_stops_pulling() -> None:
    producer = DummyProducer(range(200))
    gate = asyncio.Event()
    seen_max = 0
    pipeline: Pipeline

    async def slow(message: Message) -> None:
        nonlocal seen_max
        seen_max = max(seen_max, pipeline.in_flight)
        await gate.wait()

    pipeline = Pipeline(
        producer=producer,
        handle_message=slow,
        processors={"concurrency": 2, "max_demand": 5, "min_demand": 2},
    )
    async with pipeline:
        await until(lambda: producer.emitted == 10)
        await asyncio.sleep(0.05)
        assert producer.emitted == 10  # capacity 2 * 5; nothing more pulled
        assert producer.pending == 190
        assert max(producer.demands) <= 10
        gate.set()
        await producer.acknowledger.wait_for(200)
    assert seen_max <= 10
    assert len(producer.acknowledger.successful) == 200


async def test_every_message_acked_exactly_once_with_random_failures() -> None:
    rng = random.Random(7)
    bad = {i for i in range(2000) if rng.random() < 0.2}
    producer = DummyProducer(range(2000))
    failed_seen: list[int] = []

    def handle(message: Message) -> Message:
        if message.data in bad and message.data % 2:
            raise ValueError(f"boom {message.data}")
        if message.data in bad:
            return message.failed("rejected")
        return message.put_batcher("even" if message.data % 2 == 0 else "odd")

    def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        assert all((m.data % 2 == 0) == (name == "even") for m in messages)
        if messages[0].data % 7 == 0:
            raise RuntimeError("batch failed")

    def handle_failed(messages: list[Message]) -> None:
        failed_seen.extend(m.data for m in messages)

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 20},
        batchers={
            "even": {"batch_size": 10, "batch_timeout": 0.05, "concurrency": 2},
            "odd": {"batch_size": 7, "batch_timeout": 0.05},
        },
        handle_batch=handle_batch,
        handle_failed=handle_failed,
    )
    async with pipeline:
        await producer.acknowledger.wait_for(2000)
    ack = producer.acknowledger
    acked = [m.data for m in ack.successful + ack.failed]
    assert sorted(acked) == list(range(2000))
    assert {m.data for m in ack.failed} >= bad
    assert sorted(failed_seen) == sorted(m.data for m in ack.failed)
    reasons = {type(m.reason) for m in ack.failed}
    assert reasons == {ValueError, str, RuntimeError}
    assert ack.calls < 2000  # grouped


async def test_exception_fails_only_its_message_and_handle_failed_runs_before_ack(
    caplog: pytest.LogCaptureFixture,
) -> None:
    producer = DummyProducer()
    order: list[str] = []
    original_ack = producer.acknowledger.ack

    def ack(successful: Sequence[Message], failed: Sequence[Message]) -> None:
        order.append("ack")
        original_ack(successful, failed)

    producer.acknowledger.ack = ack  # type: ignore[method-assign]

    def handle(message: Message) -> None:
        if message.data == "bad":
            raise ValueError("cannot decode")

    def handle_failed(messages: list[Message]) -> None:
        order.append("handle_failed")
        raise RuntimeError("handler of failures broke")

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        handle_failed=handle_failed,
        processors={"concurrency": 1, "max_demand": 1, "min_demand": 0},
    )
    with caplog.at_level(logging.ERROR, logger="underway.pipelines"):
        async with pipeline:
            producer.push("bad")
            await producer.acknowledger.wait_for(1)
            producer.push("good")
            await producer.acknowledger.wait_for(2)
    assert [m.data for m in producer.acknowledger.failed] == ["bad"]
    assert [m.data for m in producer.acknowledger.successful] == ["good"]
    assert order[:2] == ["handle_failed", "ack"]
    assert "handle_failed raised" in caplog.text


async def test_unknown_batcher_fails_message_with_clear_reason() -> None:
    pipeline = Pipeline(
        producer=DummyProducer(),
        handle_message=lambda m: m.put_batcher("nope"),
        batchers={"s3": {"batch_size": 2}},
        handle_batch=lambda *a: None,
    )
    async with pipeline:
        ok, failed = await test_message(pipeline, 1)
    assert ok == []
    assert failed[0].reason == "unknown batcher 'nope'"


async def test_batches_per_key_size_and_timeout() -> None:
    batches: list[tuple[Any, list[int], str]] = []

    def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        batches.append((info.batch_key, [m.data for m in messages], info.trigger))

    pipeline = Pipeline(
        producer=DummyProducer(),
        handle_message=lambda m: m.put_batcher("b").put_batch_key(m.data % 2),
        processors={"concurrency": 1, "max_demand": 10},
        batchers={"b": {"batch_size": 3, "batch_timeout": 0.1}},
        handle_batch=handle_batch,
    )
    async with pipeline:
        ok, failed = await test_batch(pipeline, [0, 1, 2, 3, 4, 5, 6])
    assert failed == []
    assert sorted(m.data for m in ok) == list(range(7))
    assert (0, [0, 2, 4], "size") in batches
    assert (1, [1, 3, 5], "size") in batches
    assert (0, [6], "timeout") in batches


async def test_callable_batch_size_and_flush_mode() -> None:
    sizes: list[int] = []

    pipeline = Pipeline(
        producer=DummyProducer(),
        handle_message=lambda m: m.put_batcher("b"),
        batchers={"b": {"batch_size": lambda b: sum(m.data for m in b) >= 10, "batch_timeout": 30}},
        handle_batch=lambda name, ms, info: sizes.append(len(ms)),
        processors={"concurrency": 1},
    )
    async with pipeline:
        ok, _ = await test_batch(pipeline, [4, 4, 4], timeout=2)
        assert sizes == [3]
        start = time.monotonic()
        ok, _ = await test_message(pipeline, 1)  # flush: not held for the 30 s timeout
        assert time.monotonic() - start < 1
    assert sizes == [3, 1]
    assert [m.data for m in ok] == [1]


async def test_shutdown_drains_in_flight_and_flushes_batches() -> None:
    producer = DummyProducer(range(50))
    started = asyncio.Event()

    async def handle(message: Message) -> Message:
        started.set()
        await asyncio.sleep(0.01)
        return message.put_batcher("b")

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5},
        batchers={"b": {"batch_size": 1000, "batch_timeout": 60}},
        handle_batch=lambda *a: None,
    )
    await pipeline.start()
    await started.wait()
    t0 = time.monotonic()
    await pipeline.stop(timeout=30)
    assert time.monotonic() - t0 < 15  # flushed the open batch rather than sat out the bound
    assert producer.draining
    ack = producer.acknowledger
    assert ack.count == producer.emitted  # everything pulled was processed and acked
    assert 0 < producer.emitted < 50
    assert ack.failed == []
    assert pipeline.in_flight == 0
    assert not pipeline.running


async def test_shutdown_bound_abandons_stuck_messages() -> None:
    producer = DummyProducer([1])
    pipeline = Pipeline(producer=producer, handle_message=lambda m: asyncio.sleep(60))
    await pipeline.start()
    await until(lambda: producer.emitted == 1)
    t0 = time.monotonic()
    await pipeline.stop(timeout=0.2)
    assert time.monotonic() - t0 < 10  # not the 60 s the handler wanted
    assert producer.acknowledger.count == 0  # never acked what did not finish


async def test_rate_limit_is_shared_and_changeable() -> None:
    a, b = DummyProducer(range(1000)), DummyProducer(range(1000))
    pipeline = Pipeline(
        producer=[a, b],
        handle_message=noop,
        rate_limit=(20, 0.1),
        processors={"concurrency": 4, "max_demand": 50},
    )
    async with pipeline:
        began = time.monotonic()
        await asyncio.sleep(0.35)
        slow = a.emitted + b.emitted
        windows = math.ceil((time.monotonic() - began) / 0.1) + 1
        assert 20 <= slow <= 20 * windows  # at most 20 per 100 ms across both producers
        pipeline.update_rate_limit(allowed=2000)
        before = a.emitted + b.emitted
        await asyncio.sleep(0.5)
        assert a.emitted + b.emitted - before > 200  # the old limit allows at most 120 here
    with pytest.raises(ConfigError, match="without rate_limit"):
        Pipeline(producer=a, handle_message=noop).update_rate_limit(allowed=1)


async def test_prepare_messages_in_bulk_and_failure_fails_group() -> None:
    groups: list[list[int]] = []

    def prepare(messages: list[Message]) -> list[Message]:
        groups.append([m.data for m in messages])
        if any(m.data == "x" for m in messages):
            raise LookupError("preload failed")
        return [m.update_data(lambda d: d * 10) for m in messages]

    pipeline = Pipeline(
        producer=DummyProducer(),
        handle_message=noop,
        prepare_messages=prepare,
        processors={"concurrency": 1, "max_demand": 3},
    )
    async with pipeline:
        ok, failed = await test_batch(pipeline, [1, 2, 3, 4])
        assert sorted(m.data for m in ok) == [10, 20, 30, 40]
        assert groups == [[1, 2, 3], [4]]
        ok, failed = await test_message(pipeline, "x")
    assert ok == []
    assert isinstance(failed[0].reason, LookupError)


async def test_telemetry_spans() -> None:
    events: list[str] = []

    def handler(event: str, m: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        events.append(event)

    def handle_batch(*args: object) -> None:
        raise ZeroDivisionError("division by zero")

    token = telemetry.attach(handler, prefix="pipeline.")
    try:
        pipeline = Pipeline(
            producer=DummyProducer(),
            handle_message=lambda m: m.put_batcher("b"),
            batchers={"b": {"batch_size": 1}},
            handle_batch=handle_batch,
            handle_failed=lambda ms: None,
        )
        async with pipeline:
            await test_message(pipeline, 1)
    finally:
        telemetry.detach(token)
    assert "pipeline.message.stop" in events
    assert "pipeline.batch.exception" in events
    assert "pipeline.handle_failed.stop" in events


async def test_telemetry_spans_each_message_and_its_exception() -> None:
    events: list[tuple[str, Any]] = []

    def handler(event: str, m: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        events.append((event, meta.get("error")))

    async def handle(message: Message) -> Message:
        if message.data % 2:
            raise KeyError(message.data)
        return message

    producer = DummyProducer(range(6))
    token = telemetry.attach(handler, prefix="pipeline.message")
    try:
        async with Pipeline(producer=producer, handle_message=handle):
            await producer.acknowledger.wait_for(6)
    finally:
        telemetry.detach(token)
    names = [name for name, _ in events]
    assert names.count("pipeline.message.start") == 6
    assert names.count("pipeline.message.stop") == 3
    errors = [error for name, error in events if name == "pipeline.message.exception"]
    assert sorted(e.args[0] for e in errors) == [1, 3, 5]
    assert sorted(m.data for m in producer.acknowledger.failed) == [1, 3, 5]
    assert sorted(m.data for m in producer.acknowledger.successful) == [0, 2, 4]


async def test_telemetry_attached_while_a_chunk_is_handled_spans_the_rest_of_it() -> None:
    events: list[str] = []
    tokens: list[object] = []

    def handler(event: str, m: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        events.append(event)

    def handle(message: Message) -> Message:
        if message.data == 0:  # attached by the first message of the chunk
            tokens.append(telemetry.attach(handler, prefix="pipeline.message"))
        return message

    pipeline = Pipeline(
        producer=DummyProducer(),
        handle_message=handle,
        processors={"concurrency": 1, "max_demand": 10},
    )
    try:
        async with pipeline:
            successful, failed = await test_batch(pipeline, range(5))  # one chunk of five
    finally:
        for token in tokens:
            telemetry.detach(token)
    assert (len(successful), failed) == (5, [])
    assert events.count("pipeline.message.start") == 4
    assert events.count("pipeline.message.stop") == 4
