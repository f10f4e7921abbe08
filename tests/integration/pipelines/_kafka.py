"""The Kafka tests' broker (Tansu on loopback), its helpers, and the killed-consumer hooks.

A test module imports ``kafka_fixture`` to use it as ``kafka``: one broker for the whole
test session, started on first use and stopped (and reaped) when the interpreter exits.
Every test makes its own topics and group (:func:`fresh`); a test that stops or restarts
its broker starts one of its own.

Tansu answers a ``ListOffsets`` for the latest offset with the base offset of the last
batch plus one, so :func:`end_offsets` reads the high watermark of a fetch instead.
"""

from __future__ import annotations

import atexit
import uuid
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from tests.servers import Server, ServerUnavailable, start_tansu, unavailable
from underway.pipelines import Message
from underway.pipelines.producers.kafka import KafkaProducer

__all__ = [
    "HEARTBEAT_MS",
    "SESSION_MS",
    "committed",
    "create_topics",
    "end_offsets",
    "fresh",
    "kafka_fixture",
    "killed_key",
    "killed_producer",
    "produce",
    "read_all",
]

SESSION_MS, HEARTBEAT_MS = 2_000, 200  # short group timings: Tansu joins within 1 s


_shared: list[Server] = []


@pytest.fixture(name="kafka", scope="module")
def kafka_fixture() -> Server:
    """The Tansu broker (memory storage) shared by every Kafka test of the session."""
    if not _shared:
        try:
            server = start_tansu()
        except ServerUnavailable as exc:
            unavailable("Kafka (Tansu)", str(exc))
        atexit.register(server.stop)
        _shared.append(server)
    return _shared[0]


def fresh(prefix: str = "uw") -> str:
    """A topic or group name of this test alone."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def create_topics(address: str, topics: dict[str, int]) -> None:
    """Create ``{topic: partitions}``."""
    admin = AIOKafkaAdminClient(bootstrap_servers=address)
    try:  # closed even when cancelled while starting
        await admin.start()
        await admin.create_topics([NewTopic(t, n, 1) for t, n in topics.items()])
    finally:
        await admin.close()


async def produce(
    address: str,
    topic: str,
    values: Sequence[bytes],
    partitions: int,
    *,
    batch_bytes: int = 16384,
) -> None:
    """Write ``values[i]`` to partition ``i % partitions``, in order, in batches."""
    producer = AIOKafkaProducer(bootstrap_servers=address, linger_ms=5, max_batch_size=batch_bytes)
    try:
        await producer.start()
        futures = [
            await producer.send(topic, value, partition=i % partitions)
            for i, value in enumerate(values)
        ]
        for future in futures:
            await future
    finally:
        await producer.stop()


async def committed(address: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """The group's committed offset of each partition (-1: none), read at the broker."""
    consumer = AIOKafkaConsumer(bootstrap_servers=address, group_id=group)
    try:  # stopped even when cancelled while starting (a polling task is cancelled)
        await consumer.start()
        result: dict[int, int] = {}
        for p in range(partitions):
            offset = await consumer.committed(TopicPartition(topic, p))
            result[p] = -1 if offset is None else offset
        return result
    finally:
        await consumer.stop()


async def read_all(address: str, topic: str, partitions: int) -> list[Any]:
    """Every record of ``topic``, read without a group (ends at each high watermark)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=address, auto_offset_reset="earliest")
    try:
        await consumer.start()
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        records: list[Any] = []
        done: set[TopicPartition] = set()
        empty = 0
        while len(done) < len(tps) and empty < 6:
            batch = await consumer.getmany(timeout_ms=500)
            empty = 0 if batch else empty + 1
            for tp, recs in batch.items():
                records += recs
                highwater = consumer.highwater(tp)
                if highwater is not None and recs[-1].offset + 1 >= highwater:
                    done.add(tp)
        return records
    finally:
        await consumer.stop()


async def end_offsets(address: str, topic: str, partitions: int) -> dict[int, int]:
    """Each partition's end offset (high watermark), read at the broker."""
    records = await read_all(address, topic, partitions)
    ends = dict.fromkeys(range(partitions), 0)
    for record in records:
        ends[record.partition] = max(ends[record.partition], record.offset + 1)
    return ends


def killed_producer(config: dict[str, Any]) -> KafkaProducer:
    """The producer of the killed-consumer test (``_killed.py``)."""
    return KafkaProducer(
        config["topic"],
        config["group"],
        bootstrap_servers=config["address"],
        on_failure="ack",
        commit_interval=0.2,
        commit_batch=20,
        session_timeout_ms=SESSION_MS,
        heartbeat_interval_ms=HEARTBEAT_MS,
    )


def killed_key(message: Message) -> str:
    """A message's identity: its payload."""
    data: bytes = message.data
    return data.decode()
