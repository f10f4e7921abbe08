"""The Pub/Sub producer when things break: a consumer killed, the emulator lost and back.

This module has an emulator of its own, since one test kills and restarts it.
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
from ._pubsub import Admin, admin_fixture, emulator_fixture  # noqa: F401 (fixtures)


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
    subscription = await admin.subscription(topic)
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


async def test_emulator_lost_while_running_then_back(admin: Admin, emulator: Server) -> None:
    topic = await admin.topic()
    subscription = await admin.subscription(topic)
    await admin.publish(topic, payloads(range(100)))
    handled: Counter[int] = Counter()

    def handle(message: Message) -> Message:
        handled[int(message.data)] += 1
        return message

    producer = PubSubProducer(
        subscription,
        emulator_host=admin.host,
        retry_interval=0.05,
        max_retry_interval=0.5,
        pull_timeout=5.0,
    )
    pipeline = Pipeline(producer=producer, handle_message=handle)
    async with pipeline:
        await wait_until(lambda: len(handled) == 100 and producer.held == 0, 30)
        emulator.kill()
        await wait_until(lambda: port_closed(emulator.port), 30)
        await asyncio.sleep(1.0)  # pulls fail meanwhile, and are retried
        await asyncio.to_thread(emulator.start)
        # The emulator keeps nothing across a restart: the test sets the names up again.
        await admin.topic(topic)
        await admin.subscription(topic, subscription)
        await admin.publish(topic, payloads(range(100, 200)))
        await wait_until(lambda: len(handled) == 200, 60)
    assert set(handled) == set(range(200))
    assert max(handled.values()) == 1
    assert await admin.pull(subscription) == []
