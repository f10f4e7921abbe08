"""The Kafka producer across a killed consumer, a broker restart, and a broker gone at stop."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server, ServerUnavailable, start_tansu, unavailable
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.kafka import KafkaProducer

from ..conftest import wait_until
from ._kafka import (
    HEARTBEAT_MS,
    SESSION_MS,
    committed,
    create_topics,
    fresh,
    kafka_fixture,  # noqa: F401 (fixture)
    produce,
)
from ._killed import kill_and_restart


@pytest.fixture(name="own_kafka")
def own_kafka_fixture() -> Iterator[Server]:
    """A broker of this test alone (it is restarted)."""
    try:
        server = start_tansu()
    except ServerUnavailable as exc:
        unavailable("Kafka (Tansu)", str(exc))
    try:
        yield server
    finally:
        server.stop()


async def test_a_killed_consumer_loses_nothing(kafka: Server, tmp_path: Path) -> None:
    topic, group, partitions, total = fresh(), fresh("g"), 2, 300
    await create_topics(kafka.address, {topic: partitions})
    payloads = [str(i) for i in range(total)]
    await produce(kafka.address, topic, [p.encode() for p in payloads], partitions)
    config = {"address": kafka.address, "topic": topic, "group": group, "handler_delay": 0.01}
    first, second = await kill_and_restart(
        "_kafka", config, set(payloads), tmp_path / "out", kill_after=100, timeout=60
    )
    assert set(first) | set(second) == set(payloads)
    assert len(second) == len(set(second))
    # The second life reads each partition from the offset committed before the kill: a
    # suffix of it, each offset once; the first life handled everything before that
    # suffix. So what both handled is only what had not been committed.
    by_partition: dict[int, list[int]] = defaultdict(list)
    for key in second:
        by_partition[int(key) % partitions].append(int(key) // partitions)
    handled_first = {int(k) for k in first}
    for partition in range(partitions):
        offsets = by_partition[partition]
        start = offsets[0] if offsets else total // partitions
        assert offsets == list(range(start, total // partitions))
        assert {o * partitions + partition for o in range(start)} <= handled_first
    ends = dict.fromkeys(range(partitions), total // partitions)
    assert await committed(kafka.address, group, topic, partitions) == ends


async def test_a_broker_restart_then_a_stop_with_the_broker_gone(own_kafka: Server) -> None:
    """The pipeline goes on across a broker restart; stopped once the broker is gone (with
    a message settled, not committed), it returns and leaves no Kafka client task behind."""
    topic, group = fresh(), fresh("g")
    await create_topics(own_kafka.address, {topic: 1})
    await produce(own_kafka.address, topic, [f"before-{i}".encode() for i in range(20)], 1)
    handled: set[str] = set()
    last_started, release = asyncio.Event(), asyncio.Event()

    async def handle(message: Message) -> Message:
        if message.data == b"last":
            last_started.set()
            await release.wait()
        handled.add(message.data.decode())
        return message

    pipeline = Pipeline(
        producer=KafkaProducer(
            topic,
            group,
            bootstrap_servers=own_kafka.address,
            on_failure="ack",
            commit_interval=0.2,
            retry_interval=0.2,
            connect_timeout=2,
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
        ),
        handle_message=handle,
    )
    await pipeline.start()
    try:
        await wait_until(lambda: len(handled) == 20, timeout=30, message="handled before")

        async def before_committed() -> bool:
            return await committed(own_kafka.address, group, topic, 1) == {0: 20}

        # Else the commit would reach the new broker, past the offsets of its new log.
        await wait_until(before_committed, timeout=30, message="committed before")
        own_kafka.kill()  # a crash; memory storage: the log is lost
        await asyncio.to_thread(own_kafka.start)  # on the same port
        await create_topics(own_kafka.address, {topic: 1})
        after = [f"after-{i}".encode() for i in range(20)]
        await produce(own_kafka.address, topic, after, 1)
        await wait_until(
            lambda: {a.decode() for a in after} <= handled, timeout=60, message="handled after"
        )
        assert pipeline.running
        await produce(own_kafka.address, topic, [b"last"], 1)
        await asyncio.wait_for(last_started.wait(), 30)
        own_kafka.kill()
        release.set()  # settled now, its offset is committed by the stop, which fails
        async with asyncio.timeout(60):
            await pipeline.stop()
    finally:
        await pipeline.stop_now()
    assert "last" in handled

    def left() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]

    try:
        await wait_until(lambda: not left(), timeout=10)
    except AssertionError:
        raise AssertionError(f"tasks left behind: {left()}") from None
