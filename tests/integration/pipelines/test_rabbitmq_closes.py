"""RabbitMQProducer when the broker closes the pipeline's connection again and again under load.

A connection closed mid-stream takes its channel with it, while processors and batch
processors are still acknowledging that channel's deliveries. Those acknowledgements must be
dropped (the broker redelivers the messages) without waiting on the dead channel, and the
pipeline must go on consuming on the new connection: never stall, finish every message, and
stop with its drain complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import subprocess
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aio_pika
import aiormq
import pytest

from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.rabbitmq import RabbitMQProducer
from underway.pipelines.producers.rabbitmq import _session as _rabbitmq_session

from ..conftest import wait_until
from ._rabbitmq import RABBITMQCTL, URL, needs_rabbitmqctl

pytestmark = pytest.mark.rabbitmq


CLOSES = 6
PHASE = 800  # messages handled between two closes
TOTAL = PHASE * (CLOSES + 1)
# Bounds on what a stall would make wait forever; a healthy run needs a fraction of each.
# They catch hangs and measure nothing: the tests assert what happened, never how fast.
PROGRESS_BOUND = 20.0
DRAIN_BOUND = 20.0  # the pipeline's shutdown_timeout: only a stalled drain reaches it
# stop() waits at most DRAIN_BOUND for the drain, then on the producer's own bounded closes
# (5 s each): well past their sum, stop() is hung, not slow.
STOP_BOUND = 60.0


QueueFactory = Callable[[int], Awaitable[str]]


@pytest.fixture
async def new_queue() -> AsyncIterator[QueueFactory]:
    """``await new_queue(total)``: a durable queue of the test's own with ``total`` messages.

    The messages are JSON ``{"id": n}`` for ``n`` in ``range(total)``; the queues are
    deleted at teardown.
    """
    connection = await aio_pika.connect(URL, timeout=5)
    channel = await connection.channel(publisher_confirms=False)
    names: list[str] = []

    async def new_queue(total: int) -> str:
        name = f"underway-test-{uuid.uuid4().hex[:10]}-closes"
        await channel.declare_queue(name, durable=True)
        names.append(name)
        for n in range(total):
            body = json.dumps({"id": n}).encode()
            await channel.default_exchange.publish(aio_pika.Message(body), routing_key=name)
        await wait_until(lambda: _ready(channel, name, total), timeout=20, message="published")
        return name

    try:
        yield new_queue
    finally:
        for name in names:
            with contextlib.suppress(Exception):
                await channel.queue_delete(name)
        await connection.close()


async def _ready(channel: aio_pika.abc.AbstractChannel, queue: str, count: int) -> bool:
    declared = await channel.declare_queue(queue, passive=True)
    return declared.declaration_result.message_count == count


async def _left_in(queue: str) -> int:
    """Messages of ``queue`` still at the broker once nobody consumes it (ready ones)."""
    connection = await aio_pika.connect(URL, timeout=5)
    try:
        channel = await connection.channel(publisher_confirms=False)
        declared = await channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count
    finally:
        await connection.close()


async def _stop(pipeline: Pipeline) -> None:
    """``pipeline.stop()``, failing the test if it hangs (``STOP_BOUND`` is no speed limit)."""
    bound = asyncio.timeout(STOP_BOUND)
    try:
        async with bound:
            await pipeline.stop()
    except TimeoutError:
        if not bound.expired():
            raise
        pytest.fail(f"pipeline.stop() hung: not returned after {STOP_BOUND:g}s", pytrace=False)


def _drain_gave_up(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The pipeline's warnings that stop() abandoned messages at its drain bound."""
    return [r.getMessage() for r in caplog.records if "shutdown bound reached" in r.getMessage()]


def _rabbitmqctl(*args: str) -> str:
    assert RABBITMQCTL is not None
    done = subprocess.run(
        [RABBITMQCTL, *args], capture_output=True, text=True, timeout=30, check=True
    )
    return done.stdout


def _connections_named(name: str) -> list[str]:
    """The pids of the connections whose client properties contain ``name``.

    ``name`` holds the test's own queue, so no other test's connection is listed.
    """
    listed = _rabbitmqctl(
        "list_connections", "-q", "--no-table-headers", "pid", "client_properties"
    )
    return [line.split("\t", 1)[0] for line in listed.splitlines() if name in line]


def _close_connections(pids: list[str]) -> None:
    """Have the broker close these connections, as an operator or a policy would."""
    for pid in pids:
        _rabbitmqctl("close_connection", pid, "test: closed by the broker")


@needs_rabbitmqctl
async def test_repeated_broker_closes_under_load_never_stall_the_pipeline(
    new_queue: QueueFactory, caplog: pytest.LogCaptureFixture
) -> None:
    queue = await new_queue(TOTAL)
    handled: Counter[int] = Counter()
    rng = random.Random(8)

    async def handle_message(message: Message) -> Message:
        # Finishing out of delivery order leaves gaps between the acknowledged tags, so
        # that one ack call sends many frames.
        if rng.random() < 0.3:
            await asyncio.sleep(0)
        message.put_batcher("even" if message.data["id"] % 2 == 0 else "odd")
        return message

    allowed = PHASE  # handled messages the sink accepts before the next close is issued

    async def handle_batch(batcher: str, messages: Sequence[Message], info: Any) -> None:
        # A slow sink, so that messages flow while a close is being issued; it waits for
        # the close when done with its phase, so that messages are left for after it.
        await asyncio.sleep(0.1)
        while len(handled) >= allowed:
            await asyncio.sleep(0.01)
        for message in messages:
            handled[message.data["id"]] += 1

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, reconnect_interval=0.05)
    batcher = {"batch_size": 20, "batch_timeout": 0.02, "concurrency": 2}
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle_message,
        processors={"concurrency": 4, "max_demand": 10},
        batchers={"even": batcher, "odd": batcher},
        handle_batch=handle_batch,
        shutdown_timeout=DRAIN_BOUND,  # a stalled drain would take it all
    )
    connection_name = f"underway pipeline ({queue})"
    caplog.set_level(logging.WARNING, logger="underway.pipelines")
    await pipeline.start()
    try:
        for closed in range(CLOSES):
            # Consuming goes on after each close: a phase of messages is handled, on the
            # new connection, before the broker closes that one too, mid-phase.
            await wait_until(
                lambda: len(handled) >= allowed,  # noqa: B023 (awaited in this iteration)
                timeout=PROGRESS_BOUND,
                message=f"progress after {closed} close(s)",
            )
            pids = await asyncio.to_thread(_connections_named, connection_name)
            assert len(pids) == 1
            allowed += PHASE  # the next phase flows while the broker closes the connection
            await asyncio.to_thread(_close_connections, pids)
            await wait_until(
                lambda: producer.reconnects == closed + 1,  # noqa: B023
                timeout=PROGRESS_BOUND,
                message=f"reconnection {closed + 1}",
            )
        allowed = TOTAL + 1  # redelivered messages may still come: let them through
        await wait_until(
            lambda: len(handled) == TOTAL, timeout=PROGRESS_BOUND, message="every message handled"
        )
        await wait_until(lambda: pipeline.in_flight == 0, timeout=PROGRESS_BOUND)
    finally:
        await _stop(pipeline)
    assert _drain_gave_up(caplog) == []  # stop() drained: it abandoned nothing
    assert producer.reconnects == CLOSES
    # Every message acknowledged: none is left at the broker now that the pipeline's
    # connection is closed (an unacknowledged one would be ready again).
    assert await _left_in(queue) == 0
    assert sorted(handled) == list(range(TOTAL))


@pytest.mark.parametrize(
    "ending",
    [
        pytest.param("broker closes the connection", marks=needs_rabbitmqctl),
        "settling gives up past its bound",
    ],
)
async def test_an_ack_stuck_on_a_channel_is_dropped_and_consuming_goes_on(
    ending: str,
    new_queue: QueueFactory,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue = await new_queue(100)
    # The first channel's acknowledgements never get written, like frames queued to a
    # connection whose writer died with it: the ack waits until the channel closes.
    sends = aiormq.Channel.basic_ack
    stuck_on: list[aiormq.Channel] = []
    stuck = asyncio.Event()

    async def basic_ack(self: aiormq.Channel, *args: Any, **kwargs: Any) -> None:
        if not stuck_on:
            stuck_on.append(self)
        if self is stuck_on[0]:
            stuck.set()
            await asyncio.Event().wait()
        await sends(self, *args, **kwargs)

    monkeypatch.setattr(aiormq.Channel, "basic_ack", basic_ack)
    if ending == "settling gives up past its bound":
        monkeypatch.setattr(_rabbitmq_session, "_SEND_TIMEOUT", 0.5)
    handled: Counter[int] = Counter()

    async def handle_message(message: Message) -> None:
        handled[message.data["id"]] += 1

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, reconnect_interval=0.05)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle_message,
        processors={"concurrency": 2, "max_demand": 5},
        shutdown_timeout=DRAIN_BOUND,  # a stalled drain would take it all
    )
    caplog.set_level(logging.WARNING, logger="underway.pipelines")
    await pipeline.start()
    try:
        await wait_until(stuck.is_set, timeout=PROGRESS_BOUND, message="an ack stuck")
        if ending == "broker closes the connection":
            pids = await asyncio.to_thread(_connections_named, f"underway pipeline ({queue})")
            assert len(pids) == 1
            await asyncio.to_thread(_close_connections, pids)
        # The stuck ack is dropped with its channel; the pipeline goes on, on a new one.
        await wait_until(
            lambda: len(handled) == 100 and pipeline.in_flight == 0,
            timeout=PROGRESS_BOUND,
            message="every message handled and acknowledged",
        )
    finally:
        await _stop(pipeline)
    assert _drain_gave_up(caplog) == []  # stop() drained: it abandoned nothing
    assert producer.reconnects == 1
    assert await _left_in(queue) == 0
    # The first channel's messages were delivered again, none of them lost.
    assert sorted(handled) == list(range(100))
    assert max(handled.values()) <= 2
