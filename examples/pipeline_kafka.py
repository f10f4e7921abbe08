"""A pipeline over a Kafka topic: decode JSON, keep each partition in order, dead-letter.

Run it with a Kafka broker on 127.0.0.1:9092 (or set ``UNDERWAY_KAFKA=host:port``) and
the extra installed (``pip install underway[kafka]``)::

    python examples/pipeline_kafka.py

It creates a topic with 3 partitions and its dead-letter topic (fresh names each run),
writes 100 events (every 20th is a test event, which fails), consumes them as one member
of a consumer group, and prints what was handled, dead-lettered and committed.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.kafka import KafkaProducer

SERVERS = os.environ.get("UNDERWAY_KAFKA", "127.0.0.1:9092")
RUN = uuid.uuid4().hex[:8]
TOPIC, GROUP = f"underway-example-{RUN}", f"underway-example-{RUN}"
PARTITIONS, EVENTS = 3, 100


async def setup() -> None:
    """Create the topic and its dead-letter topic; write the events."""
    admin = AIOKafkaAdminClient(bootstrap_servers=SERVERS)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(TOPIC, PARTITIONS, 1), NewTopic(f"{TOPIC}.dead", 1, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=SERVERS)
    await producer.start()
    try:
        for n in range(EVENTS):
            kind = "test" if n % 20 == 0 else "click"
            event = json.dumps({"n": n, "kind": kind}).encode()
            await producer.send_and_wait(TOPIC, event, partition=n % PARTITIONS)
    finally:
        await producer.stop()


async def committed_total() -> int:
    """The offsets the group committed, summed over the partitions (read at the broker)."""
    consumer: Any = AIOKafkaConsumer(bootstrap_servers=SERVERS, group_id=GROUP)
    await consumer.start()
    try:
        offsets = [await consumer.committed(TopicPartition(TOPIC, p)) for p in range(PARTITIONS)]
    finally:
        await consumer.stop()
    return sum(o or 0 for o in offsets)


async def main() -> None:
    await setup()
    handled: list[int] = []
    failed: list[Message] = []
    done = asyncio.Event()

    async def handle_message(message: Message) -> Message:
        handled.append(message.data["n"])
        if len(handled) == EVENTS:
            done.set()
        if message.data["kind"] == "test":
            return message.failed("test events are not stored")
        return message

    pipeline = Pipeline(
        producer=KafkaProducer(
            TOPIC,
            GROUP,
            bootstrap_servers=SERVERS,
            decoder=json.loads,
            on_failure="dead_letter",  # to f"{TOPIC}.dead", with the origin in headers
        ),
        handle_message=handle_message,
        handle_failed=failed.extend,
        processors={"concurrency": 4, "max_demand": 20},  # partitions stay in order
    )
    async with pipeline:  # leaving drains: everything handled is committed
        await asyncio.wait_for(done.wait(), 60)
    print(
        f"handled {len(handled)}, dead-lettered {len(failed)}, committed {await committed_total()}"
    )


if __name__ == "__main__":
    asyncio.run(main())
