"""A pipeline over a local RabbitMQ queue: decode, route by tenant, batch, dead-letter.

Run it with RabbitMQ on 127.0.0.1:5672 (guest/guest) and the extra installed
(``pip install underway[rabbitmq]``)::

    python examples/pipeline_rabbitmq.py

It publishes 1,000 events (a few of them not JSON, a few marked as tests), consumes them
with a pipeline, and prints what went where.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections import Counter
from typing import Any

import aio_pika

from underway.pipelines import BatchInfo, Message, Pipeline
from underway.pipelines.producers.rabbitmq import RabbitMQProducer

URL = os.environ.get("RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
QUEUE, DEAD = "underway.example.events", "underway.example.events.dead"
EVENTS = 1_000


async def setup() -> None:
    """A fresh queue whose rejected messages go to a dead-letter queue; publish events."""
    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        for name in (QUEUE, DEAD):
            await channel.queue_delete(name)
        exchange = await channel.declare_exchange(DEAD, aio_pika.ExchangeType.FANOUT)
        dead = await channel.declare_queue(DEAD)
        await dead.bind(exchange)
        await channel.declare_queue(QUEUE, arguments={"x-dead-letter-exchange": DEAD})
        for n in range(EVENTS):
            if n % 100 == 7:
                body = b"{not json"
            else:
                kind = "test" if n % 100 == 13 else "click"
                body = json.dumps({"n": n, "tenant": f"t{n % 3}", "kind": kind}).encode()
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=QUEUE)


async def main() -> None:
    await setup()
    stored: Counter[str] = Counter()
    failed: list[Message] = []
    done = asyncio.Event()

    async def handle_message(message: Message) -> Message:
        if message.data["kind"] == "test":
            return message.failed("test events are not stored")
        return message.put_batcher("store").put_batch_key(message.data["tenant"])

    async def handle_batch(batcher: str, messages: list[Message], info: BatchInfo) -> None:
        stored[info.batch_key] += len(messages)  # one write per batch, e.g. to S3
        if sum(stored.values()) + len(failed) >= EVENTS:
            done.set()

    def handle_failed(messages: list[Message]) -> None:
        failed.extend(messages)

    pipeline = Pipeline(
        producer=RabbitMQProducer(QUEUE, url=URL, decoder=json.loads, on_failure="reject"),
        handle_message=handle_message,
        processors={"concurrency": 4, "max_demand": 50},
        batchers={"store": {"batch_size": 100, "batch_timeout": 0.2}},
        handle_batch=handle_batch,
        handle_failed=handle_failed,
    )
    async with pipeline:
        await asyncio.wait_for(done.wait(), 60)

    reasons = Counter(
        type(m.reason).__name__ if not isinstance(m.reason, str) else m.reason for m in failed
    )
    print("stored per tenant:", dict(sorted(stored.items())))
    print("failed:", dict(reasons))
    connection = await aio_pika.connect(URL)
    async with connection:
        channel = await connection.channel()
        dead: Any = await channel.declare_queue(DEAD, passive=True)
        left: Any = await channel.declare_queue(QUEUE, passive=True)
        print(
            "dead-lettered:",
            dead.declaration_result.message_count,
            "left in the queue:",
            left.declaration_result.message_count,
        )
        for name in (QUEUE, DEAD):
            await channel.queue_delete(name)
        await channel.exchange_delete(DEAD)


if __name__ == "__main__":
    asyncio.run(main())
