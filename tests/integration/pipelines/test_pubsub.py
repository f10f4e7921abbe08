"""The Pub/Sub producer against the emulator: demand, bulk acks, failures, leases, order.

One emulator serves every test (``emulator``, shared with the other Pub/Sub modules);
each test has its own topics and subscriptions. Counts are taken at the emulator: after a
run, a pull of the subscription returns nothing, even once its ack deadline has passed.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import socket
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import pytest

from tests.servers import Server
from underway.errors import ConfigError, DecodeError
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.pubsub import PubSubProducer

from ..conftest import wait_until
from ._pubsub import PROJECT, Admin, admin_fixture, emulator_fixture  # noqa: F401 (fixtures)

ROOT = Path(__file__).resolve().parents[3]
# The 10,000-message test's subscriptions' ack deadline: shorter than the service allows
# (the emulator takes it), so waiting it out is quick; leases are extended every 2.5 s.
ACK_DEADLINE = 5


def payloads(count: int) -> list[bytes]:
    return [str(i).encode() for i in range(count)]


# -- configuration and start ---------------------------------------------------------


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="bare name: pass project="):
        PubSubProducer("orders")
    with pytest.raises(ConfigError, match="not in project="):
        PubSubProducer("projects/a/subscriptions/orders", project="b")
    with pytest.raises(ConfigError, match="invalid subscription name"):
        PubSubProducer("ab", project="p")
    with pytest.raises(ConfigError, match="on_failure must be one of"):
        PubSubProducer("orders", project="p", on_failure="reject")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="delay must be from 0 to 600"):
        PubSubProducer("orders", project="p", delay=601)
    with pytest.raises(ConfigError, match="ack_deadline must be an int from 10 to 600"):
        PubSubProducer("orders", project="p", ack_deadline=5)
    with pytest.raises(ConfigError, match="max_messages must be an int from 1 to 1000"):
        PubSubProducer("orders", project="p", max_messages=0)
    producer = PubSubProducer("orders", project="p", on_failure="delay", delay=30)
    assert producer.subscription == "projects/p/subscriptions/orders"
    message = Message(data=b"x", acknowledger=producer._acks)
    with pytest.raises(ConfigError, match="on_failure='requeue' is not one of"):
        message.configure_ack(on_failure="requeue")
    with pytest.raises(ConfigError, match="unknown Pub/Sub ack option"):
        message.configure_ack(dead_letter=True)
    message.configure_ack(on_failure="delay", delay=5)
    assert message.ack_options == {"on_failure": "delay", "delay": 5}


async def test_missing_subscription_fails_start_naming_it(emulator: Server) -> None:
    path = f"projects/{PROJECT}/subscriptions/missing-one"
    pipeline = Pipeline(
        producer=PubSubProducer(path, emulator_host=emulator.address), handle_message=lambda m: m
    )
    async with asyncio.timeout(30):
        with pytest.raises(ConfigError, match=r"missing-one.*does not exist"):
            await pipeline.start()
    assert not pipeline.running


async def test_unreachable_emulator_fails_start_within_the_bound() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    producer = PubSubProducer(
        "s-any", project=PROJECT, emulator_host=f"127.0.0.1:{port}", connect_timeout=2.0
    )
    pipeline = Pipeline(producer=producer, handle_message=lambda m: m)
    async with asyncio.timeout(30):
        with pytest.raises(ConnectionError, match=rf"127\.0\.0\.1:{port}"):
            await pipeline.start()


async def test_a_silent_endpoint_fails_start_within_connect_timeout() -> None:
    """A server that accepts connections and never answers: no hang, a ConnectionError."""
    connections: list[asyncio.StreamWriter] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(writer)

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    producer = PubSubProducer(
        "s-any", project=PROJECT, emulator_host=f"127.0.0.1:{port}", connect_timeout=0.5
    )
    try:
        async with asyncio.timeout(30):
            with pytest.raises(ConnectionError, match=rf"127\.0\.0\.1:{port} within 0\.5s"):
                await producer.prepare_for_start(10)
    finally:
        for writer in connections:
            writer.close()
        server.close()
        await server.wait_closed()


# -- flow ------------------------------------------------------------------------------


async def test_ten_thousand_acked_once_failures_redelivered_a_slow_one_leased(
    admin: Admin,
) -> None:
    """10,000 messages, 5% failing once (nacked, handled again), acknowledged once each.

    Beside them, a second pipeline holds one message of another subscription until every
    one of the 10,000 was settled more than an ack deadline ago. Pulls then find nothing:
    no acknowledged message comes back, and the slow message's lease was extended.
    """
    topic, slow_topic = await admin.topic(), await admin.topic()
    subscription = await admin.subscription(topic, ack_deadline_seconds=ACK_DEADLINE)
    slow_subscription = await admin.subscription(slow_topic, ack_deadline_seconds=ACK_DEADLINE)
    await admin.publish(topic, payloads(10_000))
    await admin.publish(slow_topic, [b"slow"])
    attempts: Counter[int] = Counter()
    slow_attempts = 0
    release = asyncio.Event()

    def handle(message: Message) -> Message:
        n = int(message.data)
        attempts[n] += 1
        if n % 20 == 0 and attempts[n] == 1:
            return message.failed("fails on its first delivery")
        return message

    async def handle_slowly(message: Message) -> Message:
        nonlocal slow_attempts
        slow_attempts += 1
        await release.wait()
        return message

    def all_settled() -> bool:
        return len(attempts) == 10_000 and pipeline.in_flight == 0 and producer.held == 0

    producer = PubSubProducer(subscription, emulator_host=admin.host)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 8, "max_demand": 250},
        producer_concurrency=4,
    )
    slow_producer = PubSubProducer(slow_subscription, emulator_host=admin.host)
    slow = Pipeline(producer=slow_producer, handle_message=handle_slowly)
    async with slow, pipeline:
        await wait_until(lambda: slow_attempts == 1, 30)
        await wait_until(all_settled, 90, interval=0.05)
        await asyncio.sleep(ACK_DEADLINE + 1)
        assert await admin.pull(subscription) == []  # nothing acknowledged comes back
        assert await admin.pull(slow_subscription) == []  # still leased
        release.set()
        await wait_until(lambda: slow_producer.held == 0, 30)
    assert set(attempts) == set(range(10_000))
    again = {n for n, count in attempts.items() if count > 1}
    assert again == set(range(0, 10_000, 20))  # each failure once more, nothing else
    assert max(attempts.values()) == 2
    assert slow_attempts == 1
    assert await admin.pull(subscription) == []
    assert await admin.pull(slow_subscription) == []


async def test_back_pressure_and_drain(admin: Admin) -> None:
    """In flight never above capacity while the subscription holds more; a stop lets the
    messages in flight finish and be acknowledged, and leaves the rest available."""
    topic = await admin.topic()
    subscription = await admin.subscription(topic)
    await admin.publish(topic, payloads(300))
    gate = asyncio.Event()
    handled: list[int] = []
    peak = 0

    async def handle(message: Message) -> Message:
        nonlocal peak
        peak = max(peak, pipeline.in_flight)
        await gate.wait()
        handled.append(int(message.data))
        return message

    producer = PubSubProducer(subscription, emulator_host=admin.host)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5},
    )
    await pipeline.start()
    try:
        await wait_until(lambda: pipeline.in_flight == pipeline.capacity, 30)
        await asyncio.sleep(0.5)
        assert pipeline.in_flight <= pipeline.capacity == 10
        assert producer.held <= pipeline.capacity
        # The subscription holds the rest: another subscriber gets them (and releases them).
        assert len(await admin.pull(subscription, ack=False)) > 0
        stopping = asyncio.create_task(pipeline.stop(30))
        await asyncio.sleep(0.2)
        gate.set()
        await stopping
    finally:
        gate.set()
        await pipeline.stop()
    assert peak <= pipeline.capacity
    assert len(handled) == len(set(handled)) >= 10
    rest: list[int] = []

    async def pulled_the_rest() -> bool:
        rest.extend(int(r.message.data) for r in await admin.pull(subscription))
        return len(rest) + len(handled) >= 300

    await wait_until(pulled_the_rest, 30)  # released at once, not after the ack deadline
    assert sorted(rest + handled) == list(range(300))


async def test_messages_a_cancelled_fetch_pulled_are_released_at_once(admin: Admin) -> None:
    """A stop cancels the fetches long-polling an empty subscription while a slow message
    drains; what their pulls then get is nacked, not held for the (600 s) ack deadline:
    another subscriber gets all of it while the pipeline still drains."""
    topic = await admin.topic()
    subscription = await admin.subscription(topic, ack_deadline_seconds=600)
    await admin.publish(topic, [b"slow"])
    gate = asyncio.Event()
    handled: list[bytes] = []

    async def handle(message: Message) -> Message:
        handled.append(message.data)
        await gate.wait()
        return message

    producer = PubSubProducer(subscription, emulator_host=admin.host)
    pipeline = Pipeline(producer=producer, handle_message=handle, producer_concurrency=4)
    stopping: asyncio.Task[None] | None = None
    await pipeline.start()
    try:
        await wait_until(lambda: handled == [b"slow"], 30)
        await asyncio.sleep(0.2)  # the fetch loops are long-polling again
        stopping = asyncio.create_task(pipeline.stop(60))
        await asyncio.sleep(0.2)  # the fetches are cancelled; their pulls go on
        await admin.publish(topic, payloads(50))
        taken: list[int] = []

        async def taken_all() -> bool:
            taken.extend(int(r.message.data) for r in await admin.pull(subscription))
            return len(taken) >= 50

        await wait_until(taken_all, 30)
        assert not stopping.done()  # still draining: the releases came from the producer
    finally:
        gate.set()
        await (stopping if stopping is not None else pipeline.stop())
    assert sorted(taken) == list(range(50))
    assert handled == [b"slow"]
    assert producer.held == 0
    assert await admin.pull(subscription) == []


async def test_ordering_keys_keep_their_order_with_concurrent_fetches_and_processors(
    admin: Admin,
) -> None:
    topic = await admin.topic()
    subscription = await admin.subscription(topic, enable_message_ordering=True)
    keys = [f"k{i % 5}" for i in range(400)]
    await admin.publish(topic, payloads(400), ordering_keys=keys)
    seen: dict[str, list[int]] = defaultdict(list)
    count = 0

    async def handle(message: Message) -> Message:
        nonlocal count
        await asyncio.sleep(random.random() / 500)
        seen[message.metadata["ordering_key"]].append(int(message.data))
        count += 1
        return message

    pipeline = Pipeline(
        producer=PubSubProducer(subscription, emulator_host=admin.host),
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 20},
        producer_concurrency=4,  # the ordered subscription's pulls go one at a time
    )
    async with pipeline:
        await wait_until(lambda: count >= 400, 60)
    for key, numbers in seen.items():
        expected = [i for i in range(400) if keys[i] == key]
        assert numbers == expected, key
    assert await admin.pull(subscription) == []


async def test_dead_letter_policy_takes_what_keeps_failing(admin: Admin) -> None:
    topic = await admin.topic()
    dead_topic = await admin.topic()
    dead = await admin.subscription(dead_topic)
    subscription = await admin.subscription(
        topic, dead_letter_policy={"dead_letter_topic": dead_topic, "max_delivery_attempts": 5}
    )
    await admin.publish(topic, payloads(50))
    attempts: dict[int, list[int | None]] = defaultdict(list)

    def handle(message: Message) -> Message:
        n = int(message.data)
        attempts[n].append(message.metadata["delivery_attempt"])
        return message.failed("poison") if n % 10 == 3 else message

    pipeline = Pipeline(
        producer=PubSubProducer(subscription, emulator_host=admin.host),
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 10},
    )
    landed: list[Any] = []

    async def all_dead() -> bool:
        landed.extend(await admin.pull(dead))
        return len(landed) >= 5

    async with pipeline:
        await wait_until(all_dead, 60)
    assert sorted(int(r.message.data) for r in landed) == [3, 13, 23, 33, 43]
    for n, seen in attempts.items():
        assert seen == ([1, 2, 3, 4, 5] if n % 10 == 3 else [1]), n
    assert await admin.pull(subscription) == []


async def test_per_message_settlement_and_undecodable_payloads(admin: Admin) -> None:
    topic = await admin.topic()
    subscription = await admin.subscription(topic)
    bodies = [json.dumps({"n": n}).encode() for n in range(20)] + [b"{not json"]
    await admin.publish(topic, bodies, attributes={"source": "test"})
    seen: Counter[int] = Counter()
    failed: list[Message] = []

    def handle(message: Message) -> Message:
        n = message.data["n"]
        seen[n] += 1
        assert message.metadata["attributes"] == {"source": "test"}
        assert message.metadata["delivery_attempt"] is None
        if n == 1:  # dropped
            return message.configure_ack(on_failure="ack").failed("drop it")
        if n == 2 and seen[n] == 1:  # comes again after 1 s
            return message.configure_ack(on_failure="delay", delay=1).failed("later")
        if n == 3:  # an option the producer cannot honour fails the message with it
            message.configure_ack(on_failure="dead_letter")
        return message

    def handle_failed(messages: list[Message]) -> None:
        failed.extend(messages)

    pipeline = Pipeline(
        producer=PubSubProducer(
            subscription, emulator_host=admin.host, decoder=json.loads, on_failure="ack"
        ),
        handle_message=handle,
        handle_failed=handle_failed,
        processors={"concurrency": 2, "max_demand": 10},
    )
    async with pipeline:
        await wait_until(lambda: seen[2] == 2 and len(seen) == 20, 30)
    assert all(count == 1 for n, count in seen.items() if n != 2)
    reasons = {str(m.data): m.reason for m in failed}
    assert isinstance(reasons["b'{not json'"], DecodeError)
    assert isinstance(failed[-1].reason, Exception)
    assert any(isinstance(m.reason, ConfigError) for m in failed)
    assert await admin.pull(subscription) == []


async def test_example_runs(admin: Admin) -> None:
    env = {**os.environ, "PUBSUB_EMULATOR_HOST": admin.host}
    result = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "examples/pipeline_pubsub.py"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "handled: 990 event(s) in 3 tenant(s)",
        "failed once, then handled: 20",
        "undecodable, dropped: 10",
    ]
