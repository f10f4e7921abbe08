"""The Pub/Sub producer when things break: a consumer killed, the emulator lost and back.

The killed consumer runs on the shared emulator; the test that kills the emulator has one
of its own (``own_emulator``).
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter
from pathlib import Path

from tests.servers import Server
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.pubsub import PubSubProducer

from ..conftest import wait_until
from ._killed import PROCESSORS, kill_and_restart
from ._pubsub import (  # noqa: F401 (fixtures)
    Admin,
    admin_fixture,
    emulator_fixture,
    own_emulator_fixture,
)

# The killed consumer's subscription's ack deadline: what the first life took and did not
# acknowledge comes back after it (the emulator takes less than the service's 10 s).
KILLED_ACK_DEADLINE = 4


def payloads(numbers: range) -> list[bytes]:
    return [str(i).encode() for i in numbers]


def port_closed(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return False
    except OSError:
        return True


async def test_killed_consumer_loses_nothing(admin: Admin, tmp_path: Path) -> None:
    topic = await admin.topic()
    subscription = await admin.subscription(topic, ack_deadline_seconds=KILLED_ACK_DEADLINE)
    await admin.publish(topic, payloads(range(400)))
    config = {"subscription": subscription, "host": admin.host, "handler_delay": 0.01}
    expected = {str(n) for n in range(400)}
    before, after = await kill_and_restart(
        "_pubsub", config, expected, tmp_path / "out", kill_after=50, timeout=90
    )
    assert set(before) | set(after) == expected
    duplicates = [key for key, count in Counter(before + after).items() if count > 1]
    # Only messages the first life handled and had not acknowledged come again.
    assert set(duplicates) <= set(before)
    capacity = PROCESSORS["concurrency"] * PROCESSORS["max_demand"]
    assert len(duplicates) <= capacity
    assert await admin.pull(subscription) == []


async def test_emulator_lost_while_running_then_back_and_lost_at_stop(
    own_emulator: Server,
) -> None:
    """Lost while running: pulls are retried until it is back. Lost while a message is in
    flight, then a stop: the stop and the producer's close end, within their bounds."""
    emulator = own_emulator
    admin = Admin(emulator.address)
    try:
        await lost_then_back_then_lost_at_stop(admin, emulator)
    finally:
        await admin.close()


async def lost_then_back_then_lost_at_stop(admin: Admin, emulator: Server) -> None:
    topic = await admin.topic()
    subscription = await admin.subscription(topic)
    await admin.publish(topic, payloads(range(100)))
    handled: Counter[int] = Counter()
    gate = asyncio.Event()

    async def handle(message: Message) -> Message:
        n = int(message.data)
        handled[n] += 1
        if n == 200:
            await gate.wait()
        return message

    producer = PubSubProducer(
        subscription,
        emulator_host=admin.host,
        retry_interval=0.05,
        max_retry_interval=0.5,
        pull_timeout=5.0,
        connect_timeout=2.0,
    )
    pipeline = Pipeline(producer=producer, handle_message=handle)
    await pipeline.start()
    try:
        await wait_until(lambda: len(handled) == 100 and producer.held == 0, 30)
        emulator.kill()
        await wait_until(lambda: port_closed(emulator.port), 30)
        await asyncio.sleep(1.0)  # pulls fail meanwhile, and are retried
        await asyncio.to_thread(emulator.start)
        # The emulator keeps nothing across a restart: the test sets the names up again.
        await admin.topic(topic)
        await admin.subscription(topic, subscription)
        await admin.publish(topic, payloads(range(100, 201)))
        await wait_until(lambda: len(handled) == 201 and producer.held == 1, 60)
        assert await admin.pull(subscription) == []  # all acknowledged but 200, leased
        # 200 is in flight (its lease kept) when the emulator goes for good.
        emulator.kill()
        async with asyncio.timeout(90):  # a bound on a hang, not a measure
            await pipeline.stop(1.0)
    finally:
        gate.set()
        await pipeline.stop()
    assert not pipeline.running
    assert producer.held == 0
    assert set(handled) == set(range(201))
    assert max(handled.values()) == 1
