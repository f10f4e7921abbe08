"""RabbitMQProducer against the real broker: demand, ordering, settlement, drain, reconnection.

Every test works on its own queues (and exchanges), deleted at teardown. Counts are read at
the broker: a passive declare gives the ready messages; ``rabbitmqctl`` (when installed
beside the broker) gives the unacknowledged ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import socket
import subprocess
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterable
from typing import Any

import aio_pika
import pytest

from underway.errors import ConfigError, DecodeError
from underway.pipelines import Message, Pipeline
from underway.pipelines.producers.rabbitmq import RabbitMQProducer

from ..conftest import wait_until
from ._rabbitmq import HOST, PORT, RABBITMQCTL, URL, needs_rabbitmqctl

pytestmark = pytest.mark.rabbitmq


class Broker:
    """The test's side of the broker: declares, publishes, counts and cleans up."""

    def __init__(self, connection: aio_pika.abc.AbstractConnection) -> None:
        self.connection = connection
        self.channel: aio_pika.abc.AbstractChannel
        self.prefix = f"underway-test-{uuid.uuid4().hex[:10]}"
        self.queues: list[str] = []
        self.exchanges: list[str] = []

    def name(self, what: str) -> str:
        return f"{self.prefix}-{what}"

    async def queue(self, what: str, **arguments: Any) -> str:
        name = self.name(what)
        await self.channel.declare_queue(name, durable=True, arguments=arguments or None)
        self.queues.append(name)
        return name

    async def dead_letter_pair(self) -> tuple[str, str]:
        """A fanout dead-letter exchange with its queue: ``(exchange, queue)``."""
        exchange = self.name("dlx")
        await self.channel.declare_exchange(exchange, aio_pika.ExchangeType.FANOUT, durable=True)
        self.exchanges.append(exchange)
        dlq = await self.queue("dlq")
        await (await self.channel.get_queue(dlq)).bind(exchange)
        return exchange, dlq

    async def publish(self, queue: str, bodies: Iterable[bytes], *, wait: bool = True) -> int:
        before = await self.ready(queue)
        count = 0
        for body in bodies:
            message = aio_pika.Message(body, delivery_mode=aio_pika.DeliveryMode.PERSISTENT)
            await self.channel.default_exchange.publish(message, routing_key=queue)
            count += 1
        if wait:
            await wait_until(
                lambda: self._has(queue, before + count), timeout=20, message="published"
            )
        return count

    async def publish_json(self, queue: str, items: Iterable[Any], *, wait: bool = True) -> int:
        bodies = (json.dumps(item).encode() for item in items)
        return await self.publish(queue, bodies, wait=wait)

    async def _has(self, queue: str, count: int) -> bool:
        return await self.ready(queue) >= count

    async def ready(self, queue: str) -> int:
        """Messages ready for delivery in ``queue`` (not counting unacknowledged ones)."""
        declared = await self.channel.declare_queue(queue, passive=True)
        count = declared.declaration_result.message_count
        assert count is not None
        return count

    async def exists(self, queue: str) -> bool:
        """Whether ``queue`` exists (checked on a channel of its own, which NOT_FOUND closes)."""
        channel = await self.connection.channel(publisher_confirms=False)
        try:
            await channel.declare_queue(queue, passive=True)
        except aio_pika.exceptions.ChannelNotFoundEntity:
            return False
        await channel.close()
        return True

    async def drain(self, queue: str) -> list[bytes]:
        """Take (and acknowledge) every ready message of ``queue``."""
        source = await self.channel.get_queue(queue)
        bodies: list[bytes] = []
        while (message := await source.get(no_ack=True, fail=False)) is not None:
            bodies.append(message.body)
        return bodies

    async def cleanup(self) -> None:
        for queue in self.queues:
            with contextlib.suppress(Exception):
                await self.channel.queue_delete(queue)
        for exchange in self.exchanges:
            with contextlib.suppress(Exception):
                await self.channel.exchange_delete(exchange)


@pytest.fixture
async def broker() -> AsyncIterator[Broker]:
    connection = await aio_pika.connect(URL, timeout=5)
    helper = Broker(connection)
    helper.channel = await connection.channel(publisher_confirms=False)
    try:
        yield helper
    finally:
        if helper.channel.is_closed:
            helper.channel = await connection.channel(publisher_confirms=False)
        await helper.cleanup()
        await connection.close()


def unacked(queue: str) -> int:
    """Unacknowledged messages of ``queue``, as ``rabbitmqctl`` reports them."""
    return _queue_count(queue, "messages_unacknowledged")


def _queue_count(queue: str, column: str) -> int:
    """One count ``column`` of ``rabbitmqctl list_queues`` for ``queue``."""
    assert RABBITMQCTL is not None
    done = subprocess.run(
        [RABBITMQCTL, "list_queues", "-q", "--no-table-headers", "name", column],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    for line in done.stdout.splitlines():
        name, _, count = line.rpartition("\t")
        if name == queue:
            return int(count)
    raise AssertionError(f"queue {queue} not listed by rabbitmqctl: {done.stdout!r}")


def ids_of(bodies: Iterable[bytes]) -> list[int]:
    return [json.loads(body)["id"] for body in bodies]


# -- construction and start ----------------------------------------------------------------


def test_invalid_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="queue must be a non-empty str"):
        RabbitMQProducer("")
    with pytest.raises(ConfigError, match="on_failure must be one of"):
        RabbitMQProducer("q", on_failure="drop")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="on_success must be 'ack'"):
        RabbitMQProducer("q", on_success="requeue")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="prefetch must be an int from 1 to 65535"):
        RabbitMQProducer("q", prefetch=0)
    with pytest.raises(ConfigError, match="reconnect_interval must be a number > 0"):
        RabbitMQProducer("q", reconnect_interval=0)
    with pytest.raises(
        ConfigError, match=r"amqp:// or amqps:// URL, got 'http://u:\*\*\*\*\*\*@h/'"
    ):
        RabbitMQProducer("q", url="http://u:secret@h/")


async def test_unreachable_broker_is_a_clear_connection_error() -> None:
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"amqp://guest:secret@127.0.0.1:{port}/"
    producer = RabbitMQProducer("q", url=url, connect_timeout=3)
    pipeline = Pipeline(producer=producer, handle_message=lambda m: m)
    async with asyncio.timeout(10):
        with pytest.raises(ConnectionError, match=f"127.0.0.1:{port}") as caught:
            await pipeline.start()
    assert "secret" not in str(caught.value)
    assert "******" in str(caught.value)
    assert not pipeline.running


async def test_broker_that_never_answers_is_a_connection_error_within_the_bound() -> None:
    accepted: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)  # accept the TCP connection, never speak AMQP

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    producer = RabbitMQProducer(
        "q", url=f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout=0.5
    )
    try:
        async with asyncio.timeout(10):  # not the 10 s default: the 0.5 s bound
            with pytest.raises(ConnectionError, match=r"within 0.5s: TimeoutError"):
                await producer.prepare_for_start(10)
        assert accepted
    finally:
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_a_start_cancelled_mid_connect_leaves_no_connection_open() -> None:
    readers: list[asyncio.StreamReader] = []
    writers: list[asyncio.StreamWriter] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        readers.append(reader)
        writers.append(writer)

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    producer = RabbitMQProducer(
        "q", url=f"amqp://guest:guest@127.0.0.1:{port}/", connect_timeout=60
    )
    starting = asyncio.create_task(producer.prepare_for_start(10))
    try:
        await wait_until(lambda: bool(readers), timeout=10)
        starting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await starting
        async with asyncio.timeout(10):  # the client closed its end: EOF, not a hang
            await readers[0].read()
        assert readers[0].at_eof()
    finally:
        starting.cancel()  # a no-op unless a step above failed before cancelling it
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        for writer in writers:
            writer.close()
        server.close()
        await server.wait_closed()


async def test_missing_queue_without_declare_is_a_config_error(broker: Broker) -> None:
    producer = RabbitMQProducer(broker.name("absent"), url=URL, declare=False)
    with pytest.raises(ConfigError, match="NOT_FOUND"):
        await producer.prepare_for_start(10)


async def test_queue_with_other_arguments_is_a_config_error(broker: Broker) -> None:
    queue = await broker.queue("main", **{"x-max-length": 10})
    producer = RabbitMQProducer(queue, url=URL, queue_arguments={"x-max-length": 20})
    with pytest.raises(ConfigError, match="PRECONDITION_FAILED - inequivalent arg 'x-max-length'"):
        await producer.prepare_for_start(10)


# -- demand and ordering -------------------------------------------------------------------


async def test_slow_pipeline_bounds_unacked_messages_at_the_broker(broker: Broker) -> None:
    queue = await broker.queue("main")
    total = await broker.publish(queue, (b"x" for _ in range(2_000)))
    producer = RabbitMQProducer(queue, url=URL)
    running = seen_running = seen_in_flight = seen_held = 0
    done = 0
    pipeline: Pipeline

    async def slow(message: Message) -> None:
        nonlocal running, seen_running, seen_in_flight, seen_held, done
        running += 1
        seen_running = max(seen_running, running)
        seen_in_flight = max(seen_in_flight, pipeline.in_flight)
        seen_held = max(seen_held, pipeline.in_flight + producer.buffered)
        await asyncio.sleep(0.01)
        running -= 1
        done += 1

    pipeline = Pipeline(
        producer=producer,
        handle_message=slow,
        processors={"concurrency": 2, "max_demand": 5, "min_demand": 2},
    )
    async with pipeline:
        await wait_until(lambda: done >= 100, timeout=10)
        if RABBITMQCTL is not None:
            at_broker = unacked(queue)
            assert 0 < at_broker <= 10  # prefetch = capacity = 2 * 5
        assert await broker.ready(queue) >= total - done - 10
        assert done < total // 2
    assert seen_running <= 2
    assert seen_in_flight <= 10
    assert seen_held <= 10
    assert await broker.ready(queue) == total - done


async def test_a_stuck_message_does_not_grow_the_ack_bookkeeping(broker: Broker) -> None:
    queue = await broker.queue("main")
    total = await broker.publish_json(queue, ({"id": n} for n in range(3_000)))
    gate = asyncio.Event()
    done = 0
    sessions: set[Any] = set()

    async def handle(message: Message) -> None:
        nonlocal done
        sessions.add(message.acknowledger)
        if message.data["id"] == 0:
            await gate.wait()  # its processor is stuck; the other one carries on
        done += 1

    pipeline = Pipeline(
        producer=RabbitMQProducer(queue, url=URL, decoder=json.loads),
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5, "min_demand": 1},
    )
    async with pipeline:
        try:
            await wait_until(lambda: done >= total - 10, timeout=15)
            (session,) = sessions
            assert session.unsettled.tracked <= 2 * 10 + 1_024 + 1
        finally:
            gate.set()
        await wait_until(lambda: done == total, timeout=5)
    assert await broker.ready(queue) == 0


async def test_partitioned_processors_keep_order_per_key(broker: Broker) -> None:
    queue = await broker.queue("main")
    total = await broker.publish_json(queue, ({"account": n % 7, "seq": n} for n in range(1_500)))
    seen: defaultdict[int, list[int]] = defaultdict(list)
    rng = random.Random(7)

    async def handle(message: Message) -> None:
        if rng.random() < 0.1:
            await asyncio.sleep(0.001)
        seen[message.data["account"]].append(message.data["seq"])

    pipeline = Pipeline(
        producer=RabbitMQProducer(queue, url=URL, decoder=json.loads),
        handle_message=handle,
        processors={
            "concurrency": 4,
            "max_demand": 10,
            "partition_by": lambda message: message.data["account"],
        },
    )
    async with pipeline:
        await wait_until(lambda: sum(map(len, seen.values())) >= total, timeout=15)
    assert sorted(seen) == list(range(7))
    for account, sequence in seen.items():
        assert sequence == sorted(set(sequence)), f"account {account} out of order"
        assert sequence == list(range(account, 1_500, 7))


# -- settlement ------------------------------------------------------------------------------


async def test_random_failures_settle_every_message_once(broker: Broker) -> None:
    exchange, dlq = await broker.dead_letter_pair()
    queue = await broker.queue("main", **{"x-dead-letter-exchange": exchange})
    total = 10_000
    fate = random.Random(20_240_601)
    rejected = {n for n in range(total) if fate.random() < 0.05}
    requeued = {n for n in range(total) if n not in rejected and fate.random() < 0.05}
    await broker.publish_json(queue, ({"id": n} for n in range(total)))
    succeeded: Counter[int] = Counter()
    requeues: Counter[int] = Counter()

    async def handle(message: Message) -> None:
        n = message.data["id"]
        if n % 3 == 0:
            await asyncio.sleep(0)  # processors interleave: chunks finish out of order
        if n in rejected:
            raise RuntimeError(f"{n} is bad")
        if n in requeued and not message.metadata["redelivered"]:
            requeues[n] += 1
            message.configure_ack(on_failure="requeue")
            raise RuntimeError(f"{n} once more")
        succeeded[n] += 1

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, on_failure="reject")
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 8, "max_demand": 20},
    )
    async with pipeline:
        await wait_until(lambda: len(succeeded) >= total - len(rejected), timeout=25)
        await wait_until(lambda: pipeline.in_flight == 0, timeout=5)
    assert producer.reconnects == 0  # no channel error (such as an unknown delivery tag)
    assert await broker.ready(queue) == 0
    if RABBITMQCTL is not None:
        assert unacked(queue) == 0
    assert set(succeeded) == set(range(total)) - rejected
    assert max(succeeded.values()) == 1
    assert set(requeues) == requeued
    assert max(requeues.values()) == 1
    dead = Counter(ids_of(await broker.drain(dlq)))
    assert set(dead) == rejected
    assert max(dead.values()) == 1


async def run_until_settled(
    producer: RabbitMQProducer, handle: Any, count: int, **options: Any
) -> list[Message]:
    """Run a pipeline until ``count`` messages reached ``handle``; return the failed ones."""
    handled = 0
    failed: list[Message] = []

    async def wrapped(message: Message) -> Any:
        nonlocal handled
        handled += 1
        return await handle(message)

    async def record_failed(messages: list[Message]) -> None:
        failed.extend(messages)

    pipeline = Pipeline(
        producer=producer, handle_message=wrapped, handle_failed=record_failed, **options
    )
    async with pipeline:
        await wait_until(lambda: handled >= count, timeout=10)
        await wait_until(lambda: pipeline.in_flight == 0, timeout=5)
    return failed


async def test_reject_dead_letters_and_ack_on_failure_drops(broker: Broker) -> None:
    exchange, dlq = await broker.dead_letter_pair()
    queue = await broker.queue("main", **{"x-dead-letter-exchange": exchange})
    await broker.publish_json(queue, ({"id": n} for n in range(6)))

    async def handle(message: Message) -> None:
        n = message.data["id"]
        if n in (1, 2):
            raise ValueError("bad")
        if n == 3:
            message.configure_ack(on_failure="ack")  # failed, but dropped
            raise ValueError("not worth keeping")

    arguments = {"x-dead-letter-exchange": exchange}
    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, queue_arguments=arguments)
    failed = await run_until_settled(producer, handle, 6)
    assert sorted(m.data["id"] for m in failed) == [1, 2, 3]
    assert await broker.ready(queue) == 0
    assert sorted(ids_of(await broker.drain(dlq))) == [1, 2]


async def test_reject_without_dead_letter_exchange_drops(broker: Broker) -> None:
    queue = await broker.queue("main")
    await broker.publish_json(queue, ({"id": n} for n in range(3)))

    async def handle(message: Message) -> None:
        raise ValueError("bad")

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, on_failure="reject")
    assert len(await run_until_settled(producer, handle, 3)) == 3
    assert await broker.ready(queue) == 0


async def test_requeue_on_failure_redelivers(broker: Broker) -> None:
    queue = await broker.queue("main")
    await broker.publish_json(queue, ({"id": n} for n in range(4)))
    deliveries: list[tuple[int, bool]] = []

    async def handle(message: Message) -> None:
        deliveries.append((message.data["id"], message.metadata["redelivered"]))
        if message.data["id"] % 2 and not message.metadata["redelivered"]:
            raise ValueError("try again")

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, on_failure="requeue")
    failed = await run_until_settled(producer, handle, 6)
    assert sorted(m.data["id"] for m in failed) == [1, 3]
    assert sorted(deliveries) == [
        (0, False),
        (1, False),
        (1, True),
        (2, False),
        (3, False),
        (3, True),
    ]
    assert await broker.ready(queue) == 0


async def test_unknown_per_message_option_falls_back_to_the_default(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    exchange, dlq = await broker.dead_letter_pair()
    queue = await broker.queue("main", **{"x-dead-letter-exchange": exchange})
    await broker.publish_json(queue, ({"id": n} for n in range(3)))

    async def handle(message: Message) -> None:
        # Options set on the dict itself skip configure_ack's check: settled by default.
        message.ack_options["on_failure"] = "drop-it"
        raise ValueError("bad")

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, on_failure="reject")
    with caplog.at_level(logging.ERROR, logger="underway.pipelines.rabbitmq"):
        await run_until_settled(producer, handle, 3)
    errors = [r.getMessage() for r in caplog.records if "drop-it" in r.getMessage()]
    assert len(errors) == 1, errors  # reported once, not per message
    assert "using 'reject'" in errors[0]
    assert sorted(ids_of(await broker.drain(dlq))) == [0, 1, 2]


async def test_configure_ack_refuses_what_rabbitmq_cannot_do_and_fails_the_message(
    broker: Broker,
) -> None:
    exchange, dlq = await broker.dead_letter_pair()
    queue = await broker.queue("main", **{"x-dead-letter-exchange": exchange})
    await broker.publish_json(queue, ({"id": n} for n in range(3)))
    reasons: list[Any] = []

    async def handle(message: Message) -> None:
        option = [{"on_failure": "drop-it"}, {"on_success": "requeue"}, {"priority": 1}]
        message.configure_ack(**option[message.data["id"]])

    async def record(messages: list[Message]) -> None:
        reasons.extend(m.reason for m in messages)

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, on_failure="reject")
    pipeline = Pipeline(producer=producer, handle_message=handle, handle_failed=record)
    async with pipeline:
        await wait_until(lambda: len(reasons) == 3, timeout=10)
        await wait_until(lambda: pipeline.in_flight == 0, timeout=5)
    assert all(isinstance(r, ConfigError) for r in reasons)
    texts = sorted(str(r) for r in reasons)
    assert "on_failure='drop-it' is not one of" in texts[0]
    assert "on_success='requeue': RabbitMQ supports only 'ack'" in texts[1]
    assert "unknown RabbitMQ ack option(s) ['priority']" in texts[2]
    assert sorted(ids_of(await broker.drain(dlq))) == [0, 1, 2]  # rejected per the default


async def test_undecodable_body_fails_with_decode_error_and_is_dead_lettered(
    broker: Broker,
) -> None:
    exchange, dlq = await broker.dead_letter_pair()
    queue = await broker.queue("main", **{"x-dead-letter-exchange": exchange})
    await broker.publish(queue, [b'{"id": 1}', b"not json {", b'{"id": 3}'])
    handled: list[int] = []

    async def handle(message: Message) -> None:
        handled.append(message.data["id"])

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads)
    failed: list[Message] = []

    async def record_failed(messages: list[Message]) -> None:
        failed.extend(messages)

    pipeline = Pipeline(producer=producer, handle_message=handle, handle_failed=record_failed)
    async with pipeline:
        await wait_until(lambda: len(handled) + len(failed) >= 3, timeout=10)
        await wait_until(lambda: pipeline.in_flight == 0, timeout=5)
    assert handled == [1, 3]
    assert len(failed) == 1
    assert failed[0].data == b"not json {"
    assert isinstance(failed[0].reason, DecodeError)
    assert failed[0].metadata["delivery_tag"] == 2
    assert failed[0].metadata["routing_key"] == queue
    assert failed[0].metadata["exchange"] == ""
    assert failed[0].metadata["redelivered"] is False
    assert await broker.drain(dlq) == [b"not json {"]
    assert await broker.ready(queue) == 0


# -- shutdown ------------------------------------------------------------------------------


async def test_stop_mid_stream_acks_exactly_what_was_processed(broker: Broker) -> None:
    queue = await broker.queue("main")
    total = await broker.publish_json(queue, ({"id": n} for n in range(600)))
    finished: list[int] = []

    async def handle(message: Message) -> None:
        await asyncio.sleep(0.002)
        finished.append(message.data["id"])

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, prefetch=40)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5},
    )
    await pipeline.start()
    try:
        await wait_until(lambda: len(finished) >= 100, timeout=10)
    finally:
        await pipeline.stop()
    assert len(set(finished)) == len(finished)
    remaining = ids_of(await broker.drain(queue))
    assert len(finished) + len(remaining) == total
    assert sorted(finished + remaining) == list(range(total))


async def test_draining_requeues_buffered_messages_at_once(broker: Broker) -> None:
    queue = await broker.queue("main")
    total = await broker.publish_json(queue, ({"id": n} for n in range(100)))
    gate = asyncio.Event()
    started: list[int] = []

    async def handle(message: Message) -> None:
        started.append(message.data["id"])
        await gate.wait()

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, prefetch=50)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5},
    )
    stopping: asyncio.Task[None] | None = None
    await pipeline.start()
    try:
        await wait_until(
            lambda: len(started) == 2 and producer.buffered + pipeline.in_flight == 50,
            timeout=10,
        )
        held = pipeline.in_flight  # the handlers are blocked: nothing leaves, nothing comes
        assert producer.buffered >= 40
        stopping = asyncio.create_task(pipeline.stop(timeout=10))
        # The messages the pipeline never asked for are back in the queue while the ones
        # in flight are still being handled.
        await wait_until(lambda: _ready_is(broker, queue, total - held), timeout=5)
        assert producer.buffered == 0
        assert not stopping.done()
        gate.set()
        await stopping
    finally:
        gate.set()
        if stopping is not None:
            await stopping  # returns at once if awaited above
        await pipeline.stop()
    assert await broker.ready(queue) == total - held
    remaining = set(ids_of(await broker.drain(queue)))
    assert remaining.isdisjoint(started)


async def _ready_is(broker: Broker, queue: str, count: int) -> bool:
    return await broker.ready(queue) == count


# -- reconnection --------------------------------------------------------------------------


class Proxy:
    """A TCP proxy to the broker whose connections can be cut, like a network failure."""

    def __init__(self) -> None:
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"amqp://guest:guest@127.0.0.1:{port}/"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, PORT)
        self.writers |= {writer, up_writer}
        pipes = [
            asyncio.create_task(self._pipe(reader, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        self.tasks.update(pipes)
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        self.cut()

    @staticmethod
    async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65_536):
                writer.write(data)
                await writer.drain()

    def cut(self) -> None:
        """Abort every proxied connection, both ways."""
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


@pytest.fixture
async def proxy() -> AsyncIterator[Proxy]:
    proxy = Proxy()
    try:
        yield proxy
    finally:
        await proxy.close()


async def test_dropped_connection_reconnects_and_drops_stale_acks(
    broker: Broker, proxy: Proxy, caplog: pytest.LogCaptureFixture
) -> None:
    queue = await broker.queue("main")
    total = await broker.publish_json(queue, ({"id": n} for n in range(300)))
    first_gate, second_gate = asyncio.Event(), asyncio.Event()
    seen: Counter[int] = Counter()
    first_channel: list[Any] = []
    first_done = 0

    async def handle(message: Message) -> None:
        nonlocal first_done
        seen[message.data["id"]] += 1
        if not first_channel:
            first_channel.append(message.acknowledger)
        if message.acknowledger is first_channel[0]:
            await first_gate.wait()
            first_done += 1
        else:
            await second_gate.wait()

    producer = RabbitMQProducer(
        queue, url=await proxy.start(), decoder=json.loads, reconnect_interval=0.05
    )
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 5},
    )
    with caplog.at_level(logging.INFO, logger="underway.pipelines.rabbitmq"):
        await pipeline.start()
        try:
            # Both processors hold a message: all 10 deliveries of the first channel
            # (prefetch = capacity) are unacknowledged, in the pipeline or in the buffer.
            await wait_until(
                lambda: len(seen) == 2 and pipeline.in_flight + producer.buffered == 10,
                timeout=10,
            )
            before_cut, held = set(seen), pipeline.in_flight
            proxy.cut()
            await wait_until(lambda: producer.reconnects == 1, timeout=10)
            # The new channel delivers tags 1..10 again, naming other deliveries.
            await wait_until(lambda: producer.buffered == 10, timeout=10)
            first_gate.set()
            # The first channel's messages finish; their acks must be dropped. Sent on
            # the new channel, they would settle the 10 deliveries now held unprocessed
            # (and the broker would send 10 more).
            await wait_until(lambda: first_done == held and pipeline.in_flight == 10, timeout=10)
            await asyncio.sleep(0.2)
            assert pipeline.in_flight == 10
            assert producer.buffered == 0
            assert await broker.ready(queue) == total - 10
            second_gate.set()
            await wait_until(lambda: len(seen) == total, timeout=15)
            await wait_until(lambda: pipeline.in_flight == 0, timeout=5)
        finally:
            first_gate.set()
            second_gate.set()
            await pipeline.stop()
    assert producer.reconnects == 1
    assert await broker.ready(queue) == 0
    duplicates = {n for n, count in seen.items() if count > 1}
    assert max(seen.values()) == 2
    assert before_cut <= duplicates
    assert len(duplicates) == held  # exactly the ones the pipeline held at the cut
    messages = [r.getMessage() for r in caplog.records]
    assert sum("lost" in m for m in messages) == 1
    assert sum("dropping acknowledgements of" in m for m in messages) == 1
    assert sum("restored" in m for m in messages) == 1


async def test_deleted_queue_is_declared_again(
    broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    queue = await broker.queue("main")
    await broker.publish_json(queue, [{"id": 1}])
    seen: list[int] = []

    async def handle(message: Message) -> None:
        seen.append(message.data["id"])

    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, reconnect_interval=0.05)
    with caplog.at_level(logging.WARNING, logger="underway.pipelines.rabbitmq"):
        async with Pipeline(producer=producer, handle_message=handle):
            await wait_until(lambda: seen == [1], timeout=5)
            await broker.channel.queue_delete(queue)
            await wait_until(lambda: producer.reconnects == 1, timeout=5)
            await wait_until(lambda: broker.exists(queue), timeout=5)
            await broker.publish_json(queue, [{"id": 2}], wait=False)
            await wait_until(lambda: seen == [1, 2], timeout=5)
    assert any("cancelled the consumer" in r.getMessage() for r in caplog.records)


@needs_rabbitmqctl
async def test_connection_closed_by_the_broker_reconnects(broker: Broker) -> None:
    queue = await broker.queue("main")
    total = await broker.publish_json(queue, ({"id": n} for n in range(2_000)))
    seen: Counter[int] = Counter()

    async def handle(message: Message) -> None:
        await asyncio.sleep(0.001)
        seen[message.data["id"]] += 1

    name = f"underway pipeline ({queue})"
    producer = RabbitMQProducer(queue, url=URL, decoder=json.loads, reconnect_interval=0.1)
    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 4, "max_demand": 10},
    )
    async with pipeline:
        await wait_until(lambda: len(seen) >= 200, timeout=10)
        await asyncio.to_thread(_close_connection_named, name)
        await wait_until(lambda: len(seen) == total, timeout=20)

        # The old channel's unacked deliveries come again: every one is settled before stop.
        async def settled() -> bool:
            return await asyncio.to_thread(_unsettled, queue) == 0

        await wait_until(settled, timeout=30, interval=0.2, message="every delivery settled")
        await wait_until(lambda: pipeline.in_flight == 0, timeout=5)
    assert producer.reconnects == 1
    assert await broker.ready(queue) == 0
    assert sum(count - 1 for count in seen.values()) <= 40  # prefetch = capacity


def _unsettled(queue: str) -> int:
    """Messages of ``queue`` the broker still holds, ready or delivered and not yet acked."""
    return _queue_count(queue, "messages")


def _close_connection_named(name: str) -> None:
    assert RABBITMQCTL is not None
    listed = subprocess.run(
        [RABBITMQCTL, "list_connections", "-q", "--no-table-headers", "pid", "client_properties"],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    pids = [line.split("\t", 1)[0] for line in listed.stdout.splitlines() if name in line]
    assert len(pids) == 1, listed.stdout
    subprocess.run(
        [RABBITMQCTL, "close_connection", pids[0], "test: closed by the broker"],
        capture_output=True,
        timeout=30,
        check=True,
    )
