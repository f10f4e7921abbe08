"""underway side of ``bench.pipelines``' Kafka row: a Pipeline fed by ``KafkaProducer``.

Usage::

    python _underway_kafka.py --bootstrap 127.0.0.1:9092 --messages 50000 --prefetch 500

Creates a fresh topic, produces N messages over its partitions (untimed), then times
``Pipeline(producer=KafkaProducer(topic, group), handle_message=noop, processors=...)`` from
just before ``pipeline.start()`` until the handler has run N times and ``pipeline.stop()``
returned (the producer commits every settled offset at close). The processors hold
``prefetch`` messages (``concurrency * max_demand``), so one ``getmany`` brings at most
``prefetch`` records, as the peers' ``max_records``. The producer keeps its defaults but
``on_failure="stop"`` and ``dead_letter_topic=False`` (the no-op handler never fails; the
default, dead letters, needs the dead-letter topic to exist). Afterwards the group's
committed offsets must cover every message. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from _brokers import Counter, body_of, measure, report, unavailable
from _kafkacommon import Topic, kafka_parser
from _underway_broker import consume, shape


async def _measure(args: argparse.Namespace) -> dict[str, Any]:
    try:
        from underway.pipelines.producers.kafka import KafkaProducer
    except ImportError as exc:
        unavailable(f"underway.pipelines.producers.kafka: {exc}")
    topic = Topic(args, "underway")
    processors = shape(args.prefetch, args.concurrency)

    async def run(counter: Counter) -> float:
        producer = KafkaProducer(
            topic.name,
            topic.group,
            bootstrap_servers=topic.bootstrap,
            on_failure="stop",
            dead_letter_topic=False,
        )
        return await consume(producer, counter, processors)

    out = await measure(
        args.messages,
        lambda: topic.fill(args.messages, body_of(args.body_size)),
        run,
        topic.left,
        topic.delete,
    )
    out["processors"] = processors
    return out


def main() -> None:
    p = kafka_parser()
    p.add_argument("--concurrency", type=int, default=10, help="processors (at most)")
    args = p.parse_args()
    out = asyncio.run(_measure(args))
    report(out, "underway", {"driver": "aiokafka"})


if __name__ == "__main__":
    main()
