"""Job spans: a producer span per job enqueued, a consumer span per attempt run."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind

from underway.jobs._hooks import Enqueueing, Running
from underway.jobs._runtime.executor import INTERRUPTED
from underway.jobs.job import JobSpec, JobState
from underway.otel._carrier import META_KEY, job_carrier
from underway.otel._tracing import (
    ATTEMPT,
    DESTINATION,
    MESSAGE_ID,
    NODE,
    OUTCOME,
    PROCESS,
    SEND,
    SYSTEM,
    WORKER,
    Tracing,
    fail,
)

__all__ = ["JobSpans"]

_ENCODE = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_OUTCOMES = {
    JobState.COMPLETED: "completed",
    JobState.RETRYABLE: "failed",
    JobState.DISCARDED: "discarded",
    JobState.CANCELLED: "cancelled",
    JobState.SCHEDULED: "snoozed",
}
_FAILED = frozenset({JobState.RETRYABLE, JobState.DISCARDED})


class JobSpans:
    """The enqueue and run hooks that trace jobs (see :mod:`underway.otel`)."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    @contextmanager
    def enqueue(self, insert: Enqueueing) -> Iterator[None]:
        """A producer span per job around the insert; each job's meta carries its span."""
        tracer = self.tracing.tracer
        spans = [
            tracer.start_span(
                f"{spec.queue} publish",
                kind=SpanKind.PRODUCER,
                attributes={
                    SYSTEM: "underway",
                    DESTINATION: spec.queue,
                    WORKER: spec.worker,
                    **SEND,
                },
            )
            for spec in insert.specs
        ]
        try:
            specs = zip(insert.specs, spans, strict=True)
            insert.specs = [self._carry(spec, span) for spec, span in specs]
            yield
        except BaseException as exc:
            for span in spans:
                fail(span, exc, f"{type(exc).__name__}: {exc}")
            raise
        else:
            for span, job in zip(spans, insert.jobs or (), strict=False):  # cron: [] if taken
                span.set_attribute(MESSAGE_ID, str(job.id))
                if job.conflict:
                    span.set_attribute("messaging.underway.conflict", True)
        finally:
            for span in spans:
                span.end()

    def _carry(self, spec: JobSpec, span: Span) -> JobSpec:
        """``spec`` with ``span``'s context in its meta (under :data:`META_KEY`)."""
        carrier = self.tracing.inject(span)
        if spec.meta_json == "{}":
            meta: dict[str, Any] = {}
        else:
            meta = json.loads(spec.meta_json)
            if "cron" in meta:
                span.set_attribute("messaging.underway.cron", str(meta["cron"]))
        if not carrier:
            return spec
        meta[META_KEY] = carrier
        return replace(spec, meta_json=_ENCODE(meta))

    @contextmanager
    def run(self, run: Running) -> Iterator[None]:
        """A consumer span around one attempt, current while the job's body runs."""
        job = run.job
        span = self.tracing.consumer(
            f"{job.queue} process",
            job_carrier(job.meta),
            {
                SYSTEM: "underway",
                DESTINATION: job.queue,
                MESSAGE_ID: str(job.id),
                WORKER: job.worker,
                ATTEMPT: job.attempt,
                NODE: run.node,
                **PROCESS,
            },
        )
        try:
            with trace.use_span(span, record_exception=False, set_status_on_exception=False):
                yield
        except asyncio.CancelledError as exc:  # the job cancelled while it ran, or a stop
            span.set_attribute(
                OUTCOME, "cancelled" if exc.args == (INTERRUPTED,) else "interrupted"
            )
            raise
        except BaseException as exc:
            fail(span, exc, f"{type(exc).__name__}: {exc}")
            raise
        else:
            ack = run.ack
            if ack is not None:
                outcome = "snoozed" if ack.snoozed else _OUTCOMES.get(ack.state, ack.state.value)
                span.set_attribute(OUTCOME, outcome)
                if ack.state in _FAILED:
                    fail(span, run.outcome, ack.error or ack.state.value)
        finally:
            span.end()
