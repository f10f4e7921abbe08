"""Fixtures of the OpenTelemetry tests: an SDK provider whose spans stay in memory, and
instrumentations that are always undone at teardown."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, Tracer

from underway import otel


class Spans:
    """The finished spans of the test's provider."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("tests")

    @property
    def finished(self) -> list[ReadableSpan]:
        """Every span finished so far, in the order they ended."""
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        """The finished spans called ``name``."""
        return [s for s in self.finished if s.name == name]

    def of_kind(self, kind: SpanKind) -> list[ReadableSpan]:
        """The finished spans of ``kind``."""
        return [s for s in self.finished if s.kind is kind]

    def one(self, name: str) -> ReadableSpan:
        """The one finished span called ``name``."""
        found = self.named(name)
        assert len(found) == 1, [s.name for s in self.finished]
        return found[0]


class Instrument(Protocol):
    def __call__(self, **options: Any) -> otel.Instrumentation: ...


@pytest.fixture
def spans() -> Iterator[Spans]:
    """A provider of its own (the global one is never set) with an in-memory exporter."""
    made = Spans()
    yield made
    made.provider.shutdown()


@pytest.fixture
def instrument(spans: Spans) -> Iterator[Instrument]:
    """Instruments with the test's provider (options overridable); undone at teardown."""
    made: list[otel.Instrumentation] = []

    def make(**options: Any) -> otel.Instrumentation:
        instrumentation = otel.instrument(**{"tracer_provider": spans.provider, **options})
        made.append(instrumentation)
        return instrumentation

    yield make
    for instrumentation in made:
        instrumentation.uninstrument()


def parent_id(span: ReadableSpan) -> int | None:
    """The span id of ``span``'s parent (``None`` for a root)."""
    return None if span.parent is None else span.parent.span_id


def trace_id(span: ReadableSpan) -> int:
    """``span``'s trace id."""
    assert span.context is not None
    return int(span.context.trace_id)


def span_id(span: ReadableSpan) -> int:
    """``span``'s own id."""
    assert span.context is not None
    return int(span.context.span_id)
