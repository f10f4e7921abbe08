"""Hand-written aiokafka consumer of ``bench.pipelines``' Kafka row; runs with underway's venv.

Usage::

    python _peer_kafka.py --bootstrap 127.0.0.1:9092 --messages 50000 --prefetch 500

Creates a fresh topic, produces N messages over its partitions (untimed), then times one
``AIOKafkaConsumer`` in a consumer group (``enable_auto_commit=False``,
``auto_offset_reset="earliest"``, ``max_poll_records=prefetch``) from just before
``consumer.start()`` until it has handled N messages and stopped. The loop is the one
aiokafka's documentation gives for at-least-once delivery: ``getmany(max_records=prefetch)``,
the no-op handler on each message, then ``commit()`` of what that call returned. Afterwards
the group's committed offsets must equal the partitions' end offsets. Prints one JSON
object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaConsumer

from _brokers import Counter, body_of, measure, report
from _kafkacommon import Topic, kafka_parser


async def handle(body: bytes | None) -> None:
    """The no-op handler every system of the bench runs."""


async def consume(topic: Topic, prefetch: int, counter: Counter) -> float:
    """Consume with ``getmany`` and commit after each handled batch; returns the start time."""
    t0 = time.perf_counter()
    consumer = AIOKafkaConsumer(
        topic.name,
        bootstrap_servers=topic.bootstrap,
        group_id=topic.group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=prefetch,
    )
    await consumer.start()
    try:

        async def loop() -> None:
            while not counter.done.is_set():
                batches = await consumer.getmany(timeout_ms=1000, max_records=prefetch)
                if not batches:
                    continue
                for records in batches.values():
                    for record in records:
                        await handle(record.value)
                        counter.hit()
                await consumer.commit()

        task = asyncio.create_task(loop())
        try:
            await counter.wait(t0)
            await task
        finally:
            task.cancel()
    finally:
        await consumer.stop()
    return t0


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    topic = Topic(args, "aiokafka")

    async def run(counter: Counter) -> float:
        return await consume(topic, args.prefetch, counter)

    return await measure(
        args.messages,
        lambda: topic.fill(args.messages, body_of(args.body_size)),
        run,
        topic.left,
        topic.delete,
    )


def main() -> None:
    args = kafka_parser().parse_args()
    out = asyncio.run(_measure(args))
    report(out, "aiokafka", {"driver": "aiokafka"})


if __name__ == "__main__":
    main()
