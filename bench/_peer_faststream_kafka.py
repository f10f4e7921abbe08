"""FastStream's Kafka subscriber in ``bench.pipelines``; runs in FastStream's venv.

Usage::

    python _peer_faststream_kafka.py --bootstrap 127.0.0.1:9092 --messages 50000 --prefetch 500

Creates a fresh topic, produces N messages over its partitions (untimed), then times a
``KafkaBroker`` with one subscriber from just before ``broker.start()`` until the handler
has counted N messages and ``broker.stop()`` returned. The subscriber is FastStream's batch
subscriber, its documented path for throughput: ``@broker.subscriber(topic,
group_id=..., auto_offset_reset="earliest", batch=True, max_records=prefetch,
ack_policy=AckPolicy.ACK)`` (one ``getmany`` of at most ``prefetch`` records per call, the
handler once per batch, then one commit: at-least-once, committed after the handler, as
underway and the aiokafka loop do; FastStream's default for Kafka, ``ACK_FIRST``, is
aiokafka's auto-commit, which commits before handling). The broker is built with
``logger=None`` (no log line per batch) and ``apply_types=False`` (no argument validation:
the handler gets the list of decoded bodies). Afterwards the group's committed offsets must
cover every message. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker

from _brokers import Counter, body_of, measure, report
from _kafkacommon import Topic, kafka_parser


def build(topic: Topic, prefetch: int, counter: Counter) -> KafkaBroker:
    """The broker with its one batch subscriber."""
    broker = KafkaBroker(topic.bootstrap, logger=None, apply_types=False)

    @broker.subscriber(
        topic.name,
        group_id=topic.group,
        auto_offset_reset="earliest",
        batch=True,
        max_records=prefetch,
        ack_policy=AckPolicy.ACK,
    )
    async def handle(bodies: list[Any]) -> None:
        counter.hit(len(bodies))

    return broker


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    topic = Topic(args, "faststream")

    async def consume(counter: Counter) -> float:
        broker = build(topic, args.prefetch, counter)
        t0 = time.perf_counter()
        await broker.start()
        try:
            await counter.wait(t0)
        finally:
            await broker.stop()
        return t0

    return await measure(
        args.messages,
        lambda: topic.fill(args.messages, body_of(args.body_size)),
        consume,
        topic.left,
        topic.delete,
    )


def main() -> None:
    args = kafka_parser().parse_args()
    out = asyncio.run(_measure(args))
    out["variant"] = "batch"
    report(out, "faststream", {"driver": "aiokafka"})


if __name__ == "__main__":
    main()
