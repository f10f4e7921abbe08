"""A hurried stop on real brokers: what was not handled stays with the broker, acked never.

``stop_now()`` cancels handlers mid-message. Each message must end either handled and
acknowledged once, or back with the broker for another delivery. Which of the handled ones
were acknowledged depends on how the fetches cut the chunks (a chunk is settled once all
of it is handled, so a handled message beside a held one comes back too): the tests assert
that invariant, not a split fixed in advance.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import aio_pika
import pytest
from redis.asyncio import Redis

from tests.integration.conftest import wait_until
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.rabbitmq import RabbitMQProducer
from underway.pipelines.producers.redis_streams import RedisStreamProducer

from ._rabbitmq import URL as RABBITMQ_URL
from ._redis import URL as REDIS_URL
from ._redis import admin_fixture, stream_fixture  # noqa: F401 (fixtures)

BOUND = 30.0  # only a hang takes that long
TOTAL = 40
FINISHED = 10  # the handler finishes the first ones and holds the others


class Holding:
    """Finishes messages whose number is below :data:`FINISHED`, holds the others."""

    def __init__(self) -> None:
        self.finished: Counter[int] = Counter()
        self.held: set[int] = set()

    async def __call__(self, message: Message) -> Message:
        number = int(message.data["n"])
        if number >= FINISHED:
            self.held.add(number)
            await asyncio.Event().wait()  # until cancelled
        self.finished[number] += 1
        return message


@pytest.fixture
async def rabbit_queue() -> AsyncIterator[tuple[aio_pika.abc.AbstractChannel, str]]:
    connection = await aio_pika.connect(RABBITMQ_URL, timeout=5)
    channel = await connection.channel(publisher_confirms=True)
    name = f"underway-test-hurry-{uuid.uuid4().hex[:10]}"
    await channel.declare_queue(name, durable=True)
    try:
        yield channel, name
    finally:
        await channel.queue_delete(name)
        await connection.close()


@pytest.mark.rabbitmq
async def test_rabbitmq_gets_back_every_message_a_hurried_stop_did_not_finish(
    rabbit_queue: tuple[aio_pika.abc.AbstractChannel, str],
) -> None:
    channel, queue = rabbit_queue
    for n in range(TOTAL):
        body = json.dumps({"n": n}).encode()
        await channel.default_exchange.publish(aio_pika.Message(body), routing_key=queue)
    handler = Holding()
    producer = RabbitMQProducer(queue, url=RABBITMQ_URL, decoder=json.loads)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handler,
        processors={"concurrency": 4, "max_demand": 2},
        shutdown_timeout=3600,  # a drain would wait for the held ones for an hour
    )
    await pipeline.start()
    try:
        await wait_until(lambda: sum(handler.finished.values()) == FINISHED, BOUND)
        await wait_until(lambda: len(handler.held) == 4, BOUND, message="4 held")
    finally:
        await asyncio.wait_for(pipeline.stop_now(), BOUND)
    assert handler.finished == Counter(range(FINISHED))
    source = await channel.get_queue(queue)

    async def all_back() -> bool:
        declared = await channel.declare_queue(queue, passive=True)
        return (declared.declaration_result.message_count or 0) >= TOTAL - FINISHED

    await wait_until(all_back, BOUND, message="the unfinished messages back in the queue")
    back: list[int] = []
    while (message := await source.get(no_ack=True, fail=False)) is not None:
        back.append(json.loads(message.body)["n"])
    acked = set(range(TOTAL)) - set(back)  # what the broker no longer has
    assert len(back) == len(set(back))  # each message back once at most
    assert acked <= set(handler.finished)  # nothing acknowledged that was not handled
    assert handler.held <= set(back)  # the held ones too, acked never
    assert set(range(FINISHED, TOTAL)) <= set(back)  # every one not handled is back


@pytest.mark.redis
async def test_redis_keeps_pending_every_entry_a_hurried_stop_did_not_finish(
    admin: Redis, stream: str
) -> None:
    ids = [await admin.xadd(stream, {"n": str(n)}) for n in range(TOTAL)]
    handler = Holding()

    first = RedisStreamProducer(stream, "g", url=REDIS_URL, block=0.1)
    pipeline = Pipeline(
        producer=first,
        handle_message=handler,
        processors={"concurrency": 4, "max_demand": 2},
        shutdown_timeout=3600,
    )
    await pipeline.start()
    try:
        await wait_until(lambda: sum(handler.finished.values()) == FINISHED, BOUND)
        await wait_until(lambda: len(handler.held) == 4, BOUND, message="4 held")
    finally:
        await asyncio.wait_for(pipeline.stop_now(), BOUND)
    pending = await admin.xpending_range(stream, "g", "-", "+", TOTAL)
    pending_ids = {row["message_id"] for row in pending}
    (group,) = await admin.xinfo_groups(stream)
    delivered = ids[: ids.index(group["last-delivered-id"]) + 1]
    acked = {n for n, entry in enumerate(delivered) if entry not in pending_ids}
    assert pending_ids <= set(delivered)
    assert acked <= set(handler.finished)  # nothing acknowledged that was not handled...
    assert {ids[n] for n in handler.held} <= pending_ids  # ...the held ones never

    again: Counter[int] = Counter()

    def handle(message: Message) -> Message:
        again[int(message.data["n"])] += 1
        return message

    second = RedisStreamProducer(stream, "g", url=REDIS_URL, block=0.1, claim_idle=0.2)
    async with Pipeline(producer=second, handle_message=handle):
        await wait_until(lambda: len(again) == TOTAL - len(acked), BOUND, message="the rest")
    # each not acknowledged once, none of the acknowledged ones:
    assert again == Counter(n for n in range(TOTAL) if n not in acked)
