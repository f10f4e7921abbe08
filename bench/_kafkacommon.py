"""Kafka pieces of ``bench.pipelines``' Kafka row: fill a fresh topic, count what is left.

Imported as ``_kafkacommon`` by the scripts that run by path; needs ``aiokafka`` (underway's
venv and FastStream's both have it).
"""

from __future__ import annotations

import argparse
import asyncio

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from _brokers import TIMEOUT, fresh_name, parser

__all__ = ["Topic", "kafka_parser"]


def kafka_parser() -> argparse.ArgumentParser:
    """The common options plus the broker's address and the topic's partitions."""
    p = parser()
    p.add_argument("--bootstrap", required=True, help="host:port of the Kafka broker")
    p.add_argument("--partitions", type=int, default=4)
    return p


class Topic:
    """A fresh topic of ``partitions`` partitions and the consumer group that reads it."""

    def __init__(self, args: argparse.Namespace, system: str) -> None:
        self.bootstrap: str = args.bootstrap
        self.name = fresh_name(args, system)
        self.group = f"{self.name}-group"
        self.partitions: int = args.partitions

    def _tps(self) -> list[TopicPartition]:
        return [TopicPartition(self.name, p) for p in range(self.partitions)]

    async def fill(self, n: int, body: bytes) -> None:
        """Create the topic and produce ``n`` messages spread evenly over its partitions.

        Returns once the partitions' end offsets add up to ``n``.
        """
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        await admin.start()
        try:
            topic = NewTopic(self.name, num_partitions=self.partitions, replication_factor=1)
            await admin.create_topics([topic])
        finally:
            await admin.close()
        producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, linger_ms=5, max_batch_size=512 * 1024
        )
        await producer.start()
        try:
            sent = [
                await producer.send(self.name, body, partition=i % self.partitions)
                for i in range(n)
            ]
            await producer.flush()
            await asyncio.gather(*sent)
        finally:
            await producer.stop()
        # Every send was acknowledged by the broker. (Tansu's ListOffsets answers the last
        # batch's base offset + 1, not the end offset, so the count is not asked back.)

    async def left(self) -> int:
        """Messages at or past the group's committed offsets (0: every message was committed).

        Reads every partition from its committed offset with a consumer outside the group,
        until a fetch returns nothing.
        """
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="none",
        )
        await consumer.start()
        try:
            async with asyncio.timeout(TIMEOUT):
                tps = self._tps()
                committed = [await consumer.committed(tp) for tp in tps]
                consumer.assign(tps)
                for tp, offset in zip(tps, committed, strict=True):
                    consumer.seek(tp, offset or 0)
                left = 0
                while batches := await consumer.getmany(timeout_ms=500):
                    left += sum(len(records) for records in batches.values())
        finally:
            await consumer.stop()
        return left

    async def delete(self) -> None:
        """Delete the topic (best effort: a broker that refuses leaves it in memory)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            await admin.start()
            await admin.delete_topics([self.name])
        except Exception as exc:
            print(f"could not delete topic {self.name}: {exc!r}", flush=True)
        finally:
            await admin.close()
