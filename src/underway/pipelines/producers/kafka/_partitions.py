"""Which partitions a :class:`KafkaProducer`'s consumer fetches, and its polling."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

__all__ = ["Partitions"]


class Partitions:
    """Pauses and resumes the consumer's partitions; one poll at a time.

    A partition is fetched unless the pipeline is full (all are paused until the next
    fetch), it is being revoked, or a failure stopped it (``on_failure="stop"``, until
    it is revoked). ``lock`` is held around each ``getmany`` and the handling of its
    records, so records put back (``seek``) are never also handed out by another poll.

    Args:
        idle_poll: Seconds without a fetch after which :meth:`keep_polling` polls the
            paused consumer (aiokafka leaves the group of a consumer that stops polling
            for ``max_poll_interval_ms``).
    """

    def __init__(self, idle_poll: float) -> None:
        self.consumer: AIOKafkaConsumer[Any, Any] | None = None
        self.revoking: set[TopicPartition] = set()
        self.stopped: set[TopicPartition] = set()
        self.lock = asyncio.Lock()
        self.last_poll = time.monotonic()
        self.idle_poll = idle_poll

    def assignment(self) -> set[TopicPartition]:
        """The partitions the consumer is assigned now."""
        consumer = self.consumer
        return set(consumer.assignment()) if consumer is not None else set()

    def held_back(self, tp: TopicPartition) -> bool:
        """Whether records of ``tp`` must not be handed out now."""
        return tp in self.revoking or tp in self.stopped

    def pause(self, partitions: set[TopicPartition]) -> None:
        """Stop fetching ``partitions`` (those assigned)."""
        consumer = self.consumer
        if consumer is not None and partitions:
            with contextlib.suppress(KafkaError):
                consumer.pause(*(partitions & set(consumer.assignment())))

    def resume(self) -> None:
        """Fetch every assigned partition again, except those revoked or stopped."""
        consumer = self.consumer
        ready = self.assignment() - self.revoking - self.stopped
        if consumer is not None and ready:
            with contextlib.suppress(KafkaError):
                consumer.resume(*ready)

    def revoked(self, partitions: set[TopicPartition]) -> None:
        """``partitions`` are being revoked: fetch them no more."""
        self.revoking |= partitions
        self.pause(partitions)

    def forget(self, partitions: set[TopicPartition]) -> None:
        """``partitions`` are gone (or assigned afresh)."""
        self.revoking -= partitions
        self.stopped -= partitions

    def assigned(self, partitions: set[TopicPartition], draining: bool) -> None:
        """``partitions`` were assigned; paused at once unless a fetch is under way."""
        self.forget(partitions)
        if draining or not self.lock.locked():
            self.pause(partitions)  # nobody is fetching: the pipeline is full

    def stop(self, tp: TopicPartition) -> None:
        """Fetch ``tp`` no more while it is assigned (``on_failure="stop"``)."""
        self.stopped.add(tp)
        self.pause({tp})

    def reset(self) -> None:
        """Forget everything (the producer closed)."""
        self.consumer = None
        self.revoking.clear()
        self.stopped.clear()

    async def keep_polling(self) -> None:
        """Poll the paused consumer when nobody fetched for ``idle_poll`` seconds."""
        consumer = self.consumer
        if (
            consumer is None
            or self.lock.locked()
            or not consumer.assignment()
            or time.monotonic() - self.last_poll < self.idle_poll
        ):
            return
        async with self.lock:
            self.pause(self.assignment())
            batch = await consumer.getmany(timeout_ms=0)
            self.last_poll = time.monotonic()
            for tp, records in batch.items():
                if records and tp in consumer.assignment():
                    consumer.seek(tp, records[0].offset)  # read again when fetched
