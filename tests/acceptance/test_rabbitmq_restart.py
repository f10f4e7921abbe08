"""A RabbitMQ broker restart while a pipeline works through 5,000 persistent messages.

Opt-in: the test stops and starts the local broker's application (``rabbitmqctl stop_app``
then ``start_app``), which drops every connection to it, other test runs' included. Set
``UNDERWAY_RABBITMQ_RESTART=1`` to run it (``.ci/run`` does, after the main suite).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator

import aio_pika
import pytest

from tests.conftest import SERVICES
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.rabbitmq import RabbitMQProducer

pytestmark = [
    pytest.mark.rabbitmq,
    pytest.mark.acceptance,
    pytest.mark.slow,
    pytest.mark.skipif(
        os.environ.get("UNDERWAY_RABBITMQ_RESTART") != "1",
        reason="restarts the local RabbitMQ broker: opt in with UNDERWAY_RABBITMQ_RESTART=1 "
        "(.ci/run does)",
    ),
]

HOST, PORT = SERVICES["rabbitmq"].address
URL = f"amqp://guest:guest@{HOST}:{PORT}/"
TOTAL = 5_000
CONCURRENCY, MAX_DEMAND = 4, 10  # prefetch = capacity = 40


def _rabbitmqctl() -> str:
    found = shutil.which("rabbitmqctl")
    if found is None or HOST not in ("127.0.0.1", "localhost", "::1"):
        pytest.fail(
            f"UNDERWAY_RABBITMQ_RESTART=1 needs rabbitmqctl beside a local broker "
            f"(rabbitmqctl: {found}, broker at {HOST}:{PORT})",
            pytrace=False,
        )
    return found


def _run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)


def _ensure_running(ctl: str) -> None:
    """Start the broker's application (or the whole node) and wait until it serves."""
    if _run(ctl, "start_app").returncode != 0:
        _run("rabbitmq-server", "-detached")
    done = _run(ctl, "await_startup", "--timeout", "60", timeout=90)
    assert done.returncode == 0, f"RabbitMQ did not come back: {done.stdout}{done.stderr}"


async def _ready(queue: str) -> int:
    """Ready messages in ``queue``, on a connection of its own (the broker restarts)."""
    connection = await aio_pika.connect(URL, timeout=10)
    async with connection:
        channel = await connection.channel()
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count


@pytest.fixture
async def queue() -> AsyncIterator[str]:
    name = f"underway-restart-{uuid.uuid4().hex[:10]}"
    connection = await aio_pika.connect(URL, timeout=10)
    async with connection:
        channel = await connection.channel(publisher_confirms=False)
        await channel.declare_queue(name, durable=True)
        for n in range(TOTAL):
            body = json.dumps({"id": n}).encode()
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await channel.default_exchange.publish(message, routing_key=name)
    deadline = time.monotonic() + 30
    while await _ready(name) < TOTAL:
        assert time.monotonic() < deadline, "the messages were not all published"
        await asyncio.sleep(0.1)
    try:
        yield name
    finally:
        connection = await aio_pika.connect(URL, timeout=30)
        async with connection:
            channel = await connection.channel()
            await channel.queue_delete(name)


async def test_pipeline_rides_out_a_broker_restart_and_loses_nothing(queue: str) -> None:
    ctl = _rabbitmqctl()
    seen: Counter[int] = Counter()

    async def handle(message: Message) -> None:
        await asyncio.sleep(0.002)
        seen[message.data["id"]] += 1

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, reconnect_interval=0.2)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": CONCURRENCY, "max_demand": MAX_DEMAND},
    )
    async with pipeline:
        deadline = time.monotonic() + 30
        while len(seen) < TOTAL // 5:
            assert time.monotonic() < deadline, f"only {len(seen)} messages handled"
            await asyncio.sleep(0.01)
        try:
            started = time.monotonic()
            stopped = await asyncio.to_thread(_run, ctl, "stop_app")
            assert stopped.returncode == 0, f"stop_app failed: {stopped.stdout}{stopped.stderr}"
            before = len(seen)
        finally:
            await asyncio.to_thread(_ensure_running, ctl)
        back = time.monotonic()
        assert before < TOTAL, "every message was handled before the restart"
        print(f"restart took {back - started:.2f}s with {TOTAL - before} messages left")

        deadline = time.monotonic() + 60
        while len(seen) < TOTAL or pipeline.in_flight:
            assert time.monotonic() < deadline, (
                f"{TOTAL - len(seen)} messages never handled after the restart"
            )
            await asyncio.sleep(0.05)
    assert producer.reconnects == 1
    assert set(seen) == set(range(TOTAL))
    twice = sorted(n for n, count in seen.items() if count > 1)
    print(f"messages handled twice (unacknowledged at the restart): {len(twice)} {twice[:10]}")
    assert max(seen.values()) <= 2
    assert len(twice) <= CONCURRENCY * MAX_DEMAND
    assert await _ready(queue) == 0
    listed = _run(ctl, "list_queues", "-q", "--no-table-headers", "name", "messages")
    assert f"{queue}\t0" in listed.stdout.splitlines(), listed.stdout
