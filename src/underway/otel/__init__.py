"""OpenTelemetry traces of jobs and pipelines (the ``otel`` extra: opentelemetry-api).

:func:`instrument` makes spans that follow the ``messaging.*`` semantic conventions::

    <queue> publish       PRODUCER  a job enqueued (worker.enqueue, enqueue_many, cron)
    <queue> process       CONSUMER  one attempt of a job, on the node that runs it
    <destination> process CONSUMER  handle_message of one pipeline message
    <batcher> process     CONSUMER  handle_batch of one batch, linked to its messages

The trace context of a job's producer span travels in the job's meta, under the reserved
key :data:`META_KEY` (``"otel"``), so the attempt's span joins the enqueuer's trace
whichever process runs it. A pipeline message joins the trace its broker headers carry
(RabbitMQ, Kafka and NATS headers, SQS message attributes, Pub/Sub attributes). The
consumer span is current while the job or handler runs, so the application's own spans
nest under it.

Until :func:`instrument` is called nothing of this runs: the core never imports this
module, and its hooks are empty lists.

Example::

    from underway import otel

    tracing = otel.instrument()            # the global tracer provider and propagator
    ...
    tracing.uninstrument()
"""

try:
    import opentelemetry.trace  # noqa: F401 - fail here, with the extra to install
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f"underway.otel needs opentelemetry-api ({exc}): pip install 'underway[otel]'",
        name=exc.name,
    ) from exc

from underway.otel._carrier import META_KEY, message_headers
from underway.otel._instrument import Instrumentation, instrument

__all__ = ["META_KEY", "Instrumentation", "instrument", "message_headers"]
