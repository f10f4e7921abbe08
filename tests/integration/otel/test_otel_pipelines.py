"""OpenTelemetry spans of pipelines: a message joins the trace its headers carry."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from opentelemetry import propagate, trace
from opentelemetry.sdk.trace import SpanProcessor
from opentelemetry.trace import SpanKind, StatusCode

from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline
from underway.pipelines.testing import test_batch, test_message

from .conftest import Instrument, Spans, parent_id, span_id, trace_id

# A sender's context: trace 4bf9..., span 00f0... (sampled).
TRACE = 0x4BF92F3577B34DA6A3CE929D0E0E4736
SENDER = 0x00F067AA0BA902B7
TRACEPARENT = f"00-{TRACE:032x}-{SENDER:016x}-01"


def traceparent(sender: int) -> str:
    return f"00-{TRACE:032x}-{sender:016x}-01"


@pytest.fixture
async def started() -> AsyncIterator[list[Pipeline]]:
    """Pipelines the test starts; stopped at teardown."""
    pipelines: list[Pipeline] = []
    yield pipelines
    for pipeline in pipelines:
        await pipeline.stop()


async def start(started: list[Pipeline], **options: Any) -> Pipeline:
    pipeline = Pipeline(producer=DummyProducer(), name="orders", **options)
    await pipeline.start()
    started.append(pipeline)
    return pipeline


async def test_a_message_joins_the_trace_its_headers_carry(
    spans: Spans, instrument: Instrument, started: list[Pipeline]
) -> None:
    instrument()
    current: list[int] = []

    async def handle(message: Message) -> Message:
        current.append(trace.get_current_span().get_span_context().span_id)
        with spans.tracer.start_as_current_span("user"):
            pass
        return message

    pipeline = await start(started, handle_message=handle)
    metadata = {"headers": {"traceparent": TRACEPARENT}, "topic": "orders.v1", "message_id": "m-1"}
    ok, failed = await test_message(pipeline, {"id": 1}, metadata=metadata)
    assert (len(ok), failed) == (1, [])
    consumer = spans.one("orders.v1 process")
    assert consumer.kind is SpanKind.CONSUMER
    assert trace_id(consumer) == TRACE
    assert parent_id(consumer) == SENDER
    assert consumer.parent is not None
    assert consumer.parent.is_remote
    assert consumer.attributes == {
        "messaging.system": "underway",
        "messaging.destination.name": "orders.v1",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.operation": "process",
        "messaging.message.id": "m-1",
        "messaging.underway.pipeline": "orders",
        "messaging.underway.outcome": "ok",
    }
    assert current == [span_id(consumer)]
    assert parent_id(spans.one("user")) == span_id(consumer)


@pytest.mark.parametrize(
    "metadata",
    [
        {"headers": [("traceparent", TRACEPARENT.encode())]},  # Kafka
        {"headers": {"Traceparent": TRACEPARENT.encode()}},  # RabbitMQ, as bytes
        {"attributes": {"traceparent": TRACEPARENT}},  # Pub/Sub
        {"attributes": {"googclient_traceparent": TRACEPARENT}},  # Pub/Sub's client library
        {"message_attributes": {"traceparent": {"DataType": "String", "StringValue": TRACEPARENT}}},
    ],
    ids=["kafka", "rabbitmq-bytes", "pubsub", "pubsub-client-library", "sqs"],
)
async def test_every_broker_s_place_for_headers_is_read(
    spans: Spans, instrument: Instrument, started: list[Pipeline], metadata: dict[str, Any]
) -> None:
    instrument()
    pipeline = await start(started, handle_message=lambda m: m)
    await test_message(pipeline, "x", metadata=metadata)
    consumer = spans.one("orders process")  # no destination in the metadata: the pipeline
    assert trace_id(consumer) == TRACE
    assert parent_id(consumer) == SENDER


async def test_a_message_without_context_starts_a_trace_whatever_is_current(
    spans: Spans, instrument: Instrument, started: list[Pipeline]
) -> None:
    instrument()
    with spans.tracer.start_as_current_span("around start"):  # the processors' tasks copy it
        pipeline = await start(started, handle_message=lambda m: m)
    await test_message(pipeline, "x", metadata={"headers": {"traceparent": "garbage"}})
    consumer = spans.one("orders process")
    assert consumer.parent is None
    assert consumer.links == ()


async def test_a_failed_message_fails_its_span(
    spans: Spans, instrument: Instrument, started: list[Pipeline]
) -> None:
    instrument()

    def handle(message: Message) -> Message:
        if message.data == "raise":
            raise ValueError("bad payload")
        if message.data == "mark":
            return message.failed("no such customer")
        return message

    pipeline = await start(started, handle_message=handle)
    _, failed = await test_batch(pipeline, ["raise", "mark", "fine"])
    assert len(failed) == 2
    raised, marked, fine = spans.named("orders process")
    assert raised.status.status_code is StatusCode.ERROR
    assert raised.status.description == "ValueError: bad payload"
    assert [e.name for e in raised.events] == ["exception"]
    assert marked.status.status_code is StatusCode.ERROR
    assert marked.status.description == "no such customer"
    assert marked.events == ()
    assert fine.status.status_code is StatusCode.UNSET
    outcomes = [s.attributes["messaging.underway.outcome"] for s in (raised, marked, fine)]  # type: ignore[index]
    assert outcomes == ["failed", "failed", "ok"]


async def test_a_new_message_returned_by_the_handler_is_what_its_span_records(
    spans: Spans, instrument: Instrument, started: list[Pipeline]
) -> None:
    instrument()

    def handle(message: Message) -> Message:
        if message.data == "reject":
            return Message(data="rejected").failed("no such customer")
        return Message(data="to s3").put_batcher("s3")

    async def handle_batch(batcher: str, messages: list[Message], info: BatchInfo) -> None:
        pass

    pipeline = await start(
        started,
        handle_message=handle,
        batchers={"s3": {"batch_size": 1}},
        handle_batch=handle_batch,
    )
    _, failed = await test_batch(pipeline, ["reject", "keep"])
    assert [m.data for m in failed] == ["rejected"]
    by_outcome = {
        s.attributes["messaging.underway.outcome"]: s  # type: ignore[index]
        for s in spans.named("orders process")
    }
    assert set(by_outcome) == {"failed", "ok"}
    assert by_outcome["failed"].status.description == "no such customer"
    assert by_outcome["ok"].attributes is not None
    assert by_outcome["ok"].attributes["messaging.underway.batcher"] == "s3"


async def test_link_starts_a_new_trace_linked_to_the_sender(
    spans: Spans, instrument: Instrument, started: list[Pipeline]
) -> None:
    instrument(link=True)
    pipeline = await start(started, handle_message=lambda m: m)
    await test_message(pipeline, "x", metadata={"headers": {"traceparent": TRACEPARENT}})
    consumer = spans.one("orders process")
    assert consumer.parent is None
    assert trace_id(consumer) != TRACE
    assert [(link.context.trace_id, link.context.span_id) for link in consumer.links] == [
        (TRACE, SENDER)
    ]


async def test_a_batch_span_links_to_each_message_s_context(
    spans: Spans, instrument: Instrument, started: list[Pipeline]
) -> None:
    instrument()
    current: list[int] = []

    def to_batch(message: Message) -> Message:
        return message.put_batcher("s3")

    async def handle_batch(batcher: str, messages: list[Message], info: BatchInfo) -> None:
        current.append(trace.get_current_span().get_span_context().span_id)
        if messages[0].data == "bad batch":
            raise RuntimeError("upload failed")
        messages[0].failed("one rejected")

    pipeline = await start(
        started,
        handle_message=to_batch,
        batchers={"s3": {"batch_size": 3, "batch_timeout": 5.0}},
        handle_batch=handle_batch,
    )
    senders = [0x1111, 0x2222]
    with_context = [
        Message(data=sender, metadata={"headers": {"traceparent": traceparent(sender)}})
        for sender in senders
    ]
    pipeline.push_messages([*with_context, Message(data="no headers")])
    await _until(lambda: spans.named("s3 process"))
    batch = spans.one("s3 process")
    assert batch.kind is SpanKind.CONSUMER
    assert batch.parent is None
    assert [(lk.context.trace_id, lk.context.span_id) for lk in batch.links] == [
        (TRACE, sender) for sender in senders
    ]
    assert batch.attributes == {
        "messaging.system": "underway",
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.operation": "process",
        "messaging.batch.message_count": 3,
        "messaging.underway.pipeline": "orders",
        "messaging.underway.batcher": "s3",
        "messaging.underway.batch_trigger": "size",
        "messaging.underway.outcome": "ok",
        "messaging.underway.failed_count": 1,
    }
    assert current == [span_id(batch)]  # current while handle_batch ran
    message_spans = spans.named("orders process")
    assert len(message_spans) == 3
    assert {s.attributes["messaging.underway.batcher"] for s in message_spans} == {"s3"}  # type: ignore[index]

    pipeline.push_messages([Message(data="bad batch")], flush=True)
    await _until(lambda: len(spans.named("s3 process")) == 2)
    broken = spans.named("s3 process")[1]
    assert broken.status.status_code is StatusCode.ERROR
    assert broken.status.description == "RuntimeError: upload failed"
    assert [e.name for e in broken.events] == ["exception"]
    assert broken.attributes is not None
    assert broken.attributes["messaging.underway.outcome"] == "failed"
    assert broken.attributes["messaging.underway.batch_trigger"] == "flush"


async def test_uninstrument_stops_message_spans(
    spans: Spans, instrument: Instrument, started: list[Pipeline]
) -> None:
    instrumentation = instrument()
    pipeline = await start(started, handle_message=lambda m: m)
    await test_message(pipeline, "x", metadata={"headers": {"traceparent": TRACEPARENT}})
    assert len(spans.named("orders process")) == 1
    instrumentation.uninstrument()
    await test_message(pipeline, "y", metadata={"headers": {"traceparent": TRACEPARENT}})
    assert len(spans.named("orders process")) == 1


class _Broken(SpanProcessor):
    """A span processor that fails on every span it starts or ends (an exporter down)."""

    def __init__(self, *, on: str) -> None:
        self.on = on

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        if self.on == "start":
            raise ConnectionError("exporter down")

    def on_end(self, span: Any) -> None:
        if self.on == "end":
            raise ConnectionError("exporter down")


@pytest.mark.parametrize("on", ["start", "end"])
async def test_a_failing_tracer_fails_no_message_and_no_batch(
    spans: Spans, instrument: Instrument, started: list[Pipeline], on: str, caplog: Any
) -> None:
    spans.provider.add_span_processor(_Broken(on=on))
    instrument()
    handled: list[Any] = []

    async def handle_batch(batcher: str, messages: list[Message], info: BatchInfo) -> None:
        handled.extend(m.data for m in messages)

    pipeline = await start(
        started,
        handle_message=lambda m: m.put_batcher("s3") if m.data == "batched" else m,
        batchers={"s3": {"batch_size": 1}},
        handle_batch=handle_batch,
    )
    metadata = {"headers": {"traceparent": TRACEPARENT}}
    ok, failed = await test_batch(pipeline, ["alone", "batched"], metadata=metadata)
    assert sorted(m.data for m in ok) == ["alone", "batched"]
    assert failed == []
    assert handled == ["batched"]
    assert "exporter down" in caplog.text


async def _until(condition: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


@pytest.mark.rabbitmq
async def test_a_rabbitmq_message_published_in_a_trace_is_handled_in_it(
    spans: Spans, instrument: Instrument
) -> None:
    import aio_pika

    from underway.pipelines.producers.rabbitmq import RabbitMQProducer

    from ..pipelines._rabbitmq import URL

    instrument()
    queue = f"underway-test-otel-{uuid.uuid4().hex[:10]}"
    connection = await aio_pika.connect(URL, timeout=5)
    try:
        channel = await connection.channel()
        await channel.declare_queue(queue, durable=True)
        with spans.tracer.start_as_current_span("sender") as sender:
            headers: dict[str, Any] = {}
            propagate.inject(headers)
            body = aio_pika.Message(b"{}", headers=headers, message_id="r-1")
            await channel.default_exchange.publish(body, routing_key=queue)
        handled: list[Message] = []
        pipeline = Pipeline(
            producer=RabbitMQProducer(queue, url=URL), handle_message=handled.append
        )
        async with pipeline:
            await _until(lambda: handled, timeout=20)
        consumer = spans.one(f"{queue} process")
        assert trace_id(consumer) == sender.get_span_context().trace_id
        assert parent_id(consumer) == sender.get_span_context().span_id
        assert consumer.attributes is not None
        assert consumer.attributes["messaging.system"] == "rabbitmq"
        assert consumer.attributes["messaging.message.id"] == "r-1"
        await channel.queue_delete(queue)
    finally:
        await connection.close()
