"""``instrument()``: registers the job and message hooks that make OpenTelemetry spans."""

from __future__ import annotations

import threading
from typing import Any

from opentelemetry import trace
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.trace import TracerProvider

from underway import __version__
from underway.errors import ConfigError
from underway.jobs import _hooks as job_hooks
from underway.otel._jobs import JobSpans
from underway.otel._pipelines import MessageSpans
from underway.otel._tracing import Tracing
from underway.pipelines import _hooks as pipeline_hooks

__all__ = ["Instrumentation", "instrument"]

_lock = threading.Lock()
_active: Instrumentation | None = None


class Instrumentation:
    """Spans for jobs and pipelines, made while :attr:`active` (see :func:`instrument`).

    Attributes:
        tracer_provider: The provider the spans come from (``None``: the global one).
        propagator: How trace context is written and read (``None``: the global one).
        link: Whether consumer spans start new traces linked to the producer's.
        jobs: Whether jobs are traced.
        pipelines: Whether pipeline messages are traced.
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None,
        propagator: TextMapPropagator | None,
        link: bool,
        jobs: bool,
        pipelines: bool,
    ) -> None:
        self.tracer_provider = tracer_provider
        self.propagator = propagator
        self.link = link
        self.jobs = jobs
        self.pipelines = pipelines
        tracer = trace.get_tracer("underway", __version__, tracer_provider=tracer_provider)
        tracing = Tracing(tracer, propagator, link)
        job_spans, message_spans = JobSpans(tracing), MessageSpans(tracing)
        self._hooks: list[tuple[list[Any], Any]] = []
        if jobs:
            self._hooks += [
                (job_hooks.enqueue_hooks, job_spans.enqueue),
                (job_hooks.run_hooks, job_spans.run),
            ]
        if pipelines:
            self._hooks += [
                (pipeline_hooks.message_hooks, message_spans.message),
                (pipeline_hooks.batch_hooks, message_spans.batch),
            ]
        self._active = False

    def __repr__(self) -> str:
        state = "active" if self._active else "uninstrumented"
        return f"<Instrumentation {state} jobs={self.jobs} pipelines={self.pipelines}>"

    @property
    def active(self) -> bool:
        """Whether spans are being made (until :meth:`uninstrument`)."""
        return self._active

    def uninstrument(self) -> None:
        """Stop making spans; jobs and messages run as if never instrumented.

        Calling it again does nothing. Jobs already enqueued keep the trace context in
        their meta, which is read again once :func:`instrument` is called again.
        """
        global _active
        with _lock:
            if not self._active:
                return
            for hooks, hook in self._hooks:
                hooks.remove(hook)
            self._active = False
            _active = None

    def _options(self) -> tuple[Any, ...]:
        return (self.tracer_provider, self.propagator, self.link, self.jobs, self.pipelines)

    def _install(self) -> None:
        for hooks, hook in self._hooks:
            hooks.append(hook)
        self._active = True


def instrument(
    *,
    tracer_provider: TracerProvider | None = None,
    propagator: TextMapPropagator | None = None,
    link: bool = False,
    jobs: bool = True,
    pipelines: bool = True,
) -> Instrumentation:
    """Trace jobs and pipeline messages with OpenTelemetry, in this process.

    Jobs get a producer span per job enqueued (``<queue> publish``) whose context is
    stored in the job's meta under ``"otel"``, and a consumer span per attempt
    (``<queue> process``) on whichever node runs it, child of the producer span (or
    linked to it with ``link=True``) and current while the job's body runs, in its
    thread too for a sync worker. Pipeline messages get a consumer span around
    ``handle_message`` in the trace their headers carry, and each batch a span around
    ``handle_batch`` linked to its messages.

    Calling it again with the same options returns the same :class:`Instrumentation`.

    Args:
        tracer_provider: Where spans go; ``None``: the global provider.
        propagator: Writes and reads trace context; ``None``: the global propagator
            (W3C ``traceparent`` and ``tracestate``, and baggage, unless configured).
        link: Consumer spans start new traces, linked to the context they received,
            instead of joining the producer's trace.
        jobs: Trace jobs (enqueue, cron and inline included).
        pipelines: Trace pipeline messages and batches.

    Returns:
        The instrumentation; :meth:`Instrumentation.uninstrument` ends it.

    Raises:
        ConfigError: An option is invalid, both ``jobs`` and ``pipelines`` are off, or
            this process is already instrumented with other options.
    """
    _check(tracer_provider, propagator, link=link, jobs=jobs, pipelines=pipelines)
    global _active
    with _lock:
        wanted = (tracer_provider, propagator, link, jobs, pipelines)
        if _active is not None:
            if _active._options() == wanted:
                return _active
            raise ConfigError(
                f"this process is already instrumented with other options ({_active!r}); "
                "call uninstrument() on it first"
            )
        made = Instrumentation(
            tracer_provider=tracer_provider,
            propagator=propagator,
            link=link,
            jobs=jobs,
            pipelines=pipelines,
        )
        made._install()
        _active = made
        return made


def _check(tracer_provider: Any, propagator: Any, **flags: Any) -> None:
    if tracer_provider is not None and not callable(getattr(tracer_provider, "get_tracer", None)):
        raise ConfigError(
            f"tracer_provider must be an OpenTelemetry TracerProvider, got {tracer_provider!r}"
        )
    if propagator is not None and not all(
        callable(getattr(propagator, name, None)) for name in ("inject", "extract")
    ):
        raise ConfigError(
            "propagator must be an OpenTelemetry TextMapPropagator (with inject and extract), "
            f"got {propagator!r}"
        )
    for name, value in flags.items():
        if not isinstance(value, bool):
            raise ConfigError(f"{name} must be True or False, got {value!r}")
    if not flags["jobs"] and not flags["pipelines"]:
        raise ConfigError("jobs and pipelines are both False: there would be nothing to trace")
