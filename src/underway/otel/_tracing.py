"""What job and message spans share: attribute names, context in and out, failures."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from opentelemetry import propagate, trace
from opentelemetry.context import Context
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import Link, Span, SpanKind, Status, StatusCode, Tracer

__all__ = [
    "ATTEMPT",
    "BATCHER",
    "BATCH_COUNT",
    "DESTINATION",
    "MESSAGE_ID",
    "NODE",
    "OUTCOME",
    "PIPELINE",
    "PROCESS",
    "SEND",
    "SYSTEM",
    "WORKER",
    "Tracing",
    "fail",
]

_log = logging.getLogger("underway.otel")

SYSTEM = "messaging.system"
DESTINATION = "messaging.destination.name"
MESSAGE_ID = "messaging.message.id"
BATCH_COUNT = "messaging.batch.message_count"
WORKER = "messaging.underway.worker"
ATTEMPT = "messaging.underway.attempt"
NODE = "messaging.underway.node"
OUTCOME = "messaging.underway.outcome"
PIPELINE = "messaging.underway.pipeline"
BATCHER = "messaging.underway.batcher"

# The operation, under the current names (type and name) and the older one that
# dashboards built on earlier conventions still query.
SEND: Mapping[str, str] = {
    "messaging.operation.type": "send",
    "messaging.operation.name": "publish",
    "messaging.operation": "publish",
}
PROCESS: Mapping[str, str] = {
    "messaging.operation.type": "process",
    "messaging.operation.name": "process",
    "messaging.operation": "process",
}


class Tracing:
    """The tracer, the propagator and the choice between parent and link for consumers.

    Args:
        tracer: Makes the spans.
        propagator: Injects and extracts trace context; ``None``: the global one, as
            set when the context travels (``opentelemetry.propagate``).
        link: Consumer spans start a new trace linked to the context they received,
            instead of joining it as its children.
    """

    def __init__(self, tracer: Tracer, propagator: TextMapPropagator | None, link: bool) -> None:
        self.tracer = tracer
        self._propagator = propagator
        self.link = link

    @property
    def propagator(self) -> TextMapPropagator:
        """The propagator in use now."""
        return self._propagator or propagate.get_global_textmap()

    def inject(self, span: Span) -> dict[str, str]:
        """The fields that carry ``span``'s context (empty for a span that is not real)."""
        carrier: dict[str, str] = {}
        if span.get_span_context().is_valid:
            self.propagator.inject(carrier, context=trace.set_span_in_context(span))
        return carrier

    def extract(self, carrier: Mapping[str, str]) -> Context:
        """The context ``carrier`` holds, on an empty context (whatever is current here does
        not count); an empty context when the propagator cannot read it."""
        if not carrier:
            return Context()
        try:
            return self.propagator.extract(carrier, context=Context())
        except Exception:  # a propagator's bug must not fail the job or message
            _log.exception("the propagator could not read %r", carrier)
            return Context()

    def received(self, carrier: Mapping[str, str]) -> trace.SpanContext | None:
        """The span context ``carrier`` holds, if it holds a valid one."""
        context = trace.get_current_span(self.extract(carrier)).get_span_context()
        return context if context.is_valid else None

    def consumer(
        self, name: str, carrier: Mapping[str, str], attributes: Mapping[str, str | int]
    ) -> Span:
        """A consumer span, child of (or linked to) the context ``carrier`` holds; a new
        trace when it holds none."""
        parent = self.extract(carrier)
        links: list[Link] = []
        if self.link:
            received = trace.get_current_span(parent).get_span_context()
            if received.is_valid:
                links.append(Link(received))
            parent = trace.set_span_in_context(trace.INVALID_SPAN, parent)  # baggage kept
        return self.tracer.start_span(
            name, context=parent, kind=SpanKind.CONSUMER, attributes=attributes, links=links
        )

    def links(self, carriers: Iterable[Mapping[str, str]]) -> list[Link]:
        """A link to each valid context among ``carriers``."""
        links = []
        for carrier in carriers:
            received = self.received(carrier)
            if received is not None:
                links.append(Link(received))
        return links


def fail(span: Span, error: object, description: str) -> None:
    """Mark ``span`` failed: ``error`` recorded when it is an exception, status ERROR."""
    if isinstance(error, BaseException):
        span.record_exception(error)
    span.set_status(Status(StatusCode.ERROR, description))
