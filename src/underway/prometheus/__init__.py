"""Prometheus metrics of jobs and pipelines (the ``prometheus`` extra: prometheus-client).

:func:`instrument` turns underway's telemetry events into metrics::

    underway_jobs_total{queue,worker,outcome}         counter: job attempts finished
    underway_job_duration_seconds{queue,worker}       histogram: how long attempts ran
    underway_queue_jobs{queue,state}                  gauge: jobs by queue and state
    underway_messages_total{pipeline,stage,outcome}   counter: messages handled
    underway_batch_size{pipeline,batcher}             histogram: messages per batch

The gauge counts every job in the database (history included) and is read by the
cluster's leader alone, every ``interval`` seconds; the other nodes never query for it.

:func:`serve` answers ``/metrics`` over plain HTTP in a thread of its own;
:func:`exposition` gives the same text for a web application to serve (with
:data:`CONTENT_TYPE`). Both merge every process's metrics in prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set before the import of
prometheus_client), which ``underway start --processes N --metrics-port PORT`` sets up.

Example::

    metrics = instrument(jobs)
    server = serve(9464)
    ...
    server.close()
    metrics.detach()
"""

try:
    import prometheus_client  # noqa: F401 - fail here, with the extra to install
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f"underway.prometheus needs prometheus-client ({exc}): pip install 'underway[prometheus]'",
        name=exc.name,
    ) from exc

from underway.prometheus._expose import (
    CONTENT_TYPE,
    MetricsServer,
    exposition,
    forget_process,
    scrape_registry,
    serve,
)
from underway.prometheus._metrics import Metrics, instrument

__all__ = [
    "CONTENT_TYPE",
    "Metrics",
    "MetricsServer",
    "exposition",
    "forget_process",
    "instrument",
    "scrape_registry",
    "serve",
]
