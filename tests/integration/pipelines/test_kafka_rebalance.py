"""Two Kafka pipelines in one consumer group: one joins under load, one leaves.

Each rebalance lets the messages in flight of the revoked partitions finish and commits
them before the partitions move: the next owner starts where the last one stopped, so no
message is handled twice.
"""

from __future__ import annotations

import asyncio
from collections import Counter

from tests.servers import Server
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.kafka import KafkaProducer

from ..conftest import wait_until
from ._kafka import (
    HEARTBEAT_MS,
    SESSION_MS,
    committed,
    create_topics,
    end_offsets,
    fresh,
    kafka_fixture,  # noqa: F401 (fixture)
    produce,
)

PARTITIONS, TOTAL = 4, 2_000


async def test_join_and_leave_under_load_lose_nothing(kafka: Server) -> None:
    topic, group = fresh(), fresh("g")
    await create_topics(kafka.address, {topic: PARTITIONS})
    await produce(kafka.address, topic, [str(i).encode() for i in range(TOTAL)], PARTITIONS)
    handled: dict[str, set[tuple[int, int]]] = {"a": set(), "b": set()}
    times: Counter[tuple[int, int]] = Counter()
    bad_commits: list[str] = []

    def pipeline(name: str) -> Pipeline:
        async def handle(message: Message) -> Message:
            await asyncio.sleep(0.002)
            place = (message.metadata["partition"], message.metadata["offset"])
            handled[name].add(place)
            times[place] += 1
            return message

        return Pipeline(
            producer=KafkaProducer(
                topic,
                group,
                bootstrap_servers=kafka.address,
                on_failure="ack",
                commit_interval=0.1,
                commit_batch=50,
                revoke_timeout=10.0,
                session_timeout_ms=SESSION_MS,
                heartbeat_interval_ms=HEARTBEAT_MS,
            ),
            handle_message=handle,
            processors={"concurrency": 4, "max_demand": 10},
            name=name,
        )

    def seen() -> set[tuple[int, int]]:
        return handled["a"] | handled["b"]

    async def check_commits() -> None:
        """Every offset below a committed one was handled (by either pipeline)."""
        while True:
            points = await committed(kafka.address, group, topic, PARTITIONS)
            done = seen()
            for partition, point in points.items():
                missing = [o for o in range(max(0, point)) if (partition, o) not in done]
                if missing:
                    bad_commits.append(f"partition {partition} at {point}: {missing[:5]}")
            await asyncio.sleep(0.2)

    a, b = pipeline("a"), pipeline("b")
    checker = asyncio.create_task(check_commits())
    try:
        await a.start()
        await wait_until(lambda: len(handled["a"]) >= 300, timeout=30, message="a alone")
        await b.start()  # joins: the group rebalances while a has messages in flight
        await wait_until(lambda: len(handled["b"]) >= 200, timeout=40, message="b joined")
        await a.stop()  # leaves: b takes every partition
        await wait_until(lambda: len(seen()) == TOTAL, timeout=60, message="all handled")
        ends = await end_offsets(kafka.address, topic, PARTITIONS)

        async def all_committed() -> bool:
            return await committed(kafka.address, group, topic, PARTITIONS) == ends

        await wait_until(all_committed, timeout=30, message="everything committed")
        await b.stop()
    finally:
        checker.cancel()
        await asyncio.gather(checker, return_exceptions=True)
        await a.stop()
        await b.stop()
    assert seen() == {(i % PARTITIONS, i // PARTITIONS) for i in range(TOTAL)}
    assert handled["a"]
    assert handled["b"]
    assert not bad_commits
    assert [place for place, n in times.items() if n > 1] == []  # none handled twice


async def test_a_full_pipeline_stays_in_the_group(kafka: Server) -> None:
    """A handler slower than max_poll_interval: the paused consumer is still polled."""
    topic, group, total = fresh(), fresh("g"), 30
    await create_topics(kafka.address, {topic: 1})
    await produce(kafka.address, topic, [str(i).encode() for i in range(total)], 1)
    release = asyncio.Event()
    handled: list[int] = []

    async def handle(message: Message) -> Message:
        await release.wait()
        handled.append(int(message.data))
        return message

    pipeline = Pipeline(
        producer=KafkaProducer(
            topic,
            group,
            bootstrap_servers=kafka.address,
            on_failure="ack",
            commit_interval=0.1,
            max_poll_interval_ms=1_000,
            session_timeout_ms=SESSION_MS,
            heartbeat_interval_ms=HEARTBEAT_MS,
        ),
        handle_message=handle,
        processors={"concurrency": 1, "max_demand": 5},
    )
    async with pipeline:
        await wait_until(lambda: pipeline.in_flight == pipeline.capacity, timeout=30)
        await asyncio.sleep(2.5)  # more than twice max_poll_interval, the pipeline full
        release.set()
        await wait_until(lambda: len(handled) >= total, timeout=30, message="all handled")

        async def all_committed() -> bool:
            return await committed(kafka.address, group, topic, 1) == {0: total}

        await wait_until(all_committed, timeout=30, message="everything committed")
    assert sorted(handled) == list(range(total))  # none handled twice: no rebalance
