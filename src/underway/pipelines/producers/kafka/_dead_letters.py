"""Publishing failed messages to a dead-letter topic, in the background, until sent."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from underway.pipelines.producers.kafka._acks import Delivery
from underway.pipelines.producers.kafka._outage import Outage

__all__ = ["DeadLetters", "origin_headers"]

_log = logging.getLogger("underway.pipelines.kafka")


def origin_headers(delivery: Delivery, group: str) -> list[tuple[str, bytes]]:
    """The record's own headers, then where it came from and why it failed."""
    record = delivery.record
    own = [(k, v) for k, v in (record.headers or ()) if not k.startswith("underway.")]
    return [
        *own,
        ("underway.origin_topic", record.topic.encode()),
        ("underway.origin_partition", str(record.partition).encode()),
        ("underway.origin_offset", str(record.offset).encode()),
        ("underway.group", group.encode()),
        ("underway.reason", delivery.reason.encode(errors="replace")),
    ]


class DeadLetters:
    """Sends dead letters with its own Kafka producer; each batch in a task of its own.

    A batch that cannot be sent (the broker is unreachable) is sent again every
    ``retry_interval`` seconds until it is, or until :meth:`close`: its messages stay
    unsettled meanwhile, so no offset past them is committed.

    Args:
        producer: The Kafka producer that sends them (started by the caller).
        topic_for: The dead-letter topic of an origin topic.
        group: The consumer group (a header of each dead letter).
        done: Called with the deliveries once they are in the dead-letter topic.
        outage: Logs a lost broker once.
        retry_interval: Seconds between attempts.
    """

    def __init__(
        self,
        producer: AIOKafkaProducer[Any, Any],
        topic_for: Callable[[str], str],
        group: str,
        done: Callable[[list[Delivery]], None],
        outage: Outage,
        retry_interval: float,
    ) -> None:
        self._producer = producer
        self._topic_for = topic_for
        self._group = group
        self._done = done
        self._outage = outage
        self._retry_interval = retry_interval
        self._tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    def publish(self, deliveries: list[Delivery]) -> None:
        """Start sending ``deliveries`` (one task; the caller does not wait)."""
        task = asyncio.get_running_loop().create_task(
            self._send(deliveries), name="underway.kafka.dead-letters"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, deliveries: list[Delivery]) -> None:
        while True:
            try:
                futures = [
                    await self._producer.send(
                        self._topic_for(d.record.topic),
                        value=d.record.value,
                        key=d.record.key,
                        headers=origin_headers(d, self._group),
                    )
                    for d in deliveries
                ]
                await asyncio.gather(*futures)
            except KafkaError as exc:
                self._outage.failed("publishing dead letters", exc)
                if self._closing:
                    _log.error(
                        "%d dead letter(s) not published (closing): their offsets are not "
                        "committed, they are read again",
                        len(deliveries),
                    )
                    return
                await asyncio.sleep(self._retry_interval)
                continue
            self._outage.recovered()
            for d in deliveries:
                _log.warning(
                    "message at offset %d of %s[%d] moved to %r: %s",
                    d.record.offset,
                    d.record.topic,
                    d.record.partition,
                    self._topic_for(d.record.topic),
                    d.reason,
                )
            self._done(deliveries)
            return

    async def close(self, bound: float) -> None:
        """Wait up to ``bound`` seconds for the batches under way, then cancel the rest."""
        self._closing = True
        deadline = time.monotonic() + bound
        while self._tasks and (remaining := deadline - time.monotonic()) > 0:
            await asyncio.wait(set(self._tasks), timeout=remaining)
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=1.0)
