"""Message spans: a consumer span per message handled, one per batch linked to its
messages' contexts."""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from underway.otel._carrier import message_headers
from underway.otel._tracing import (
    BATCH_COUNT,
    BATCHER,
    DESTINATION,
    MESSAGE_ID,
    OUTCOME,
    PIPELINE,
    PROCESS,
    SYSTEM,
    Tracing,
    fail,
)
from underway.pipelines.message import BatchInfo, Message

__all__ = ["MessageSpans", "destination", "system"]

# The package of each broker's producer, and the name the conventions give the broker.
_SYSTEMS = {
    "rabbitmq": "rabbitmq",
    "kafka": "kafka",
    "nats": "nats",
    "sqs": "aws_sqs",
    "pubsub": "gcp_pubsub",
    "redis_streams": "redis",
}
_PRODUCERS = "underway.pipelines.producers."
# Where producers note the destination a message came by, in order of preference.
_DESTINATIONS = ("topic", "subject", "stream", "subscription", "routing_key")


@functools.cache
def _system_of(kind: type) -> str:
    module = kind.__module__
    if not module.startswith(_PRODUCERS):
        return "underway"
    return _SYSTEMS.get(module[len(_PRODUCERS) :].partition(".")[0], "underway")


def system(message: Message) -> str:
    """The broker ``message`` came from (by its acknowledger), as the conventions name it;
    ``"underway"`` for a message of no known broker."""
    return _system_of(type(message.acknowledger))


def destination(metadata: Mapping[str, Any], pipeline: str) -> str:
    """The topic, subject, stream, subscription or routing key a message came by, else
    ``pipeline``."""
    for key in _DESTINATIONS:
        value = metadata.get(key)
        if isinstance(value, str) and value:
            return value
    return pipeline


class MessageSpans:
    """The message and batch hooks that trace pipelines (see :mod:`underway.otel`)."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    @contextmanager
    def message(self, pipeline: str, message: Message) -> Iterator[None]:
        """A consumer span around ``handle_message``, current while it runs."""
        metadata = message.metadata if isinstance(message.metadata, Mapping) else {}
        where = destination(metadata, pipeline)
        attributes: dict[str, str | int] = {
            SYSTEM: system(message),
            DESTINATION: where,
            PIPELINE: pipeline,
            **PROCESS,
        }
        message_id = metadata.get("message_id", metadata.get("id"))
        if isinstance(message_id, str | int) and not isinstance(message_id, bool):
            attributes[MESSAGE_ID] = str(message_id)
        span = self.tracing.consumer(f"{where} process", message_headers(metadata), attributes)
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                yield
        except BaseException:  # cancelled: the pipeline stopped under it
            span.set_attribute(OUTCOME, "interrupted")
            raise
        else:
            if message.is_failed:
                span.set_attribute(OUTCOME, "failed")
                reason = message.reason
                text = f"{type(reason).__name__}: {reason}"
                fail(span, reason, text if isinstance(reason, BaseException) else str(reason))
            else:
                span.set_attribute(OUTCOME, "ok")
                if isinstance(message.batcher, str):
                    span.set_attribute(BATCHER, message.batcher)
        finally:
            span.end()

    @contextmanager
    def batch(self, pipeline: str, batch: list[Message], info: BatchInfo) -> Iterator[None]:
        """A consumer span around ``handle_batch``, in a trace of its own, linked to the
        context each message was sent with."""
        carriers = [message_headers(m.metadata) for m in batch]
        span = self.tracing.tracer.start_span(
            f"{info.batcher} process",
            context=Context(),
            kind=SpanKind.CONSUMER,
            links=self.tracing.links(carriers),
            attributes={
                SYSTEM: system(batch[0]) if batch else "underway",
                PIPELINE: pipeline,
                BATCHER: info.batcher,
                BATCH_COUNT: len(batch),
                "messaging.underway.batch_trigger": info.trigger,
                **PROCESS,
            },
        )
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                yield
        except Exception as exc:
            span.set_attribute(OUTCOME, "failed")
            fail(span, exc, f"{type(exc).__name__}: {exc}")
            raise
        except BaseException:
            span.set_attribute(OUTCOME, "interrupted")
            raise
        else:
            span.set_attribute(OUTCOME, "ok")
            failed = sum(1 for m in batch if m.is_failed)  # failed by the handler, one by one
            if failed:
                span.set_attribute("messaging.underway.failed_count", failed)
        finally:
            span.end()
