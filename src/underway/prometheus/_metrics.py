"""The metrics, fed by telemetry handlers and, on the leader, by the database's job counts."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from underway import _telemetry as telemetry
from underway.errors import ConfigError
from underway.jobs.app import Jobs
from underway.jobs.job import JobState

__all__ = ["BATCH_BUCKETS", "DURATION_BUCKETS", "Metrics", "instrument", "multiprocess"]

_log = logging.getLogger("underway.prometheus")

# Seconds: from quick jobs to hour-long ones.
DURATION_BUCKETS = (
    *(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    *(30.0, 60.0, 300.0, 900.0, 3600.0),
)
BATCH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
# The state an attempt leaves its job in is its outcome, but for a snooze (``scheduled``).
_OUTCOMES = {JobState.SCHEDULED.value: "snoozed"}


def multiprocess() -> bool:
    """Whether prometheus-client keeps values in ``PROMETHEUS_MULTIPROC_DIR`` files."""
    return "PROMETHEUS_MULTIPROC_DIR" in os.environ or "prometheus_multiproc_dir" in os.environ


class Metrics:
    """The metrics of one :func:`instrument` call, registered in ``registry``.

    Attributes:
        jobs_total: ``underway_jobs_total{queue,worker,outcome}``.
        job_duration: ``underway_job_duration_seconds{queue,worker}``.
        queue_jobs: ``underway_queue_jobs{queue,state}``.
        messages_total: ``underway_messages_total{pipeline,stage,outcome}``.
        batch_size: ``underway_batch_size{pipeline,batcher}``.
    """

    def __init__(self, jobs: Jobs | None, registry: CollectorRegistry, interval: float) -> None:
        self.registry = registry
        self.interval = interval
        self.jobs_total = Counter(
            "underway_jobs_total",
            "Job attempts finished, by the state they left the job in (completed, retryable, "
            "discarded, cancelled, snoozed).",
            ["queue", "worker", "outcome"],
            registry=None,
        )
        self.job_duration = Histogram(
            "underway_job_duration_seconds",
            "How long job attempts ran, in seconds.",
            ["queue", "worker"],
            buckets=DURATION_BUCKETS,
            registry=None,
        )
        self.queue_jobs = Gauge(
            "underway_queue_jobs",
            "Jobs in the database by queue and state, history included (read by the leader).",
            ["queue", "state"],
            multiprocess_mode="livemostrecent",
            registry=None,
        )
        self.messages_total = Counter(
            "underway_messages_total",
            "Pipeline messages settled, each once: by the stage that settled it (processor, "
            "batch_processor) and its outcome (ok, failed).",
            ["pipeline", "stage", "outcome"],
            registry=None,
        )
        self.batch_size = Histogram(
            "underway_batch_size",
            "Messages per batch handed to handle_batch.",
            ["pipeline", "batcher"],
            buckets=BATCH_BUCKETS,
            registry=None,
        )
        self._collectors = [
            self.jobs_total,
            self.job_duration,
            self.queue_jobs,
            self.messages_total,
            self.batch_size,
        ]
        self._register()
        self._jobs = jobs
        self._queues: set[str] = set()  # the queues the gauge shows
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._tokens = [
            telemetry.attach(self._job_finished, prefix="job.stop"),
            telemetry.attach(self._job_finished, prefix="job.exception"),
            telemetry.attach(self._settled, prefix="pipeline.settled"),
            telemetry.attach(self._batch, prefix="pipeline.batch.stop"),
            telemetry.attach(self._batch, prefix="pipeline.batch.exception"),
        ]
        self._thread: threading.Thread | None = None
        if jobs is not None:
            self._thread = threading.Thread(
                target=self._refresh_every_interval, name="underway-metrics", daemon=True
            )
            self._thread.start()

    def _register(self) -> None:
        done = []
        try:
            for collector in self._collectors:
                self.registry.register(collector)
                done.append(collector)
        except ValueError as exc:
            for collector in done:
                self.registry.unregister(collector)
            raise ConfigError(
                f"the underway metrics are already in this registry ({exc}); detach the "
                "earlier instrument() first, or pass another registry"
            ) from None

    # -- from telemetry -----------------------------------------------------------------------

    def _job_finished(
        self, event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        queue, worker = str(metadata.get("queue")), str(metadata.get("worker"))
        state = str(metadata.get("state"))
        self.jobs_total.labels(queue, worker, _OUTCOMES.get(state, state)).inc()
        duration = measurements.get("duration")
        if duration is not None:
            self.job_duration.labels(queue, worker).observe(duration)

    def _settled(
        self, event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        pipeline, stage = str(metadata.get("pipeline")), str(metadata.get("stage"))
        for outcome in ("ok", "failed"):
            count = int(measurements.get(outcome, 0))
            if count:
                self.messages_total.labels(pipeline, stage, outcome).inc(count)

    def _batch(
        self, event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]
    ) -> None:
        pipeline, batcher = str(metadata.get("pipeline")), str(metadata.get("batcher"))
        self.batch_size.labels(pipeline, batcher).observe(int(measurements.get("size", 0)))

    # -- from the database, on the leader -----------------------------------------------------

    def refresh(self) -> bool:
        """Read the job counts into ``underway_queue_jobs`` if this process's node leads.

        Every queue seen gets a value for every state, zeros included. A node that stops
        leading clears the gauge (in multiprocess mode, where values cannot be removed, the
        new leader's newer values win instead).

        Returns:
            Whether the counts were read (a node runs here and holds the leader lease).

        Raises:
            UnderwayError: The database could not be read.
        """
        jobs = self._jobs
        if jobs is None:
            return False
        with self._lock:
            node = jobs.node
            if node is None or not node.leader.is_leader:
                if self._queues and not multiprocess():
                    self.queue_jobs.clear()
                    self._queues = set()
                return False
            counts = jobs.counts_sync()
            self._queues |= set(jobs.config.queues) | {queue for queue, _ in counts}
            for queue in sorted(self._queues):
                for state in JobState:
                    self.queue_jobs.labels(queue, state.value).set(counts.get((queue, state), 0))
            return True

    def _refresh_every_interval(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                self.refresh()
            except Exception as exc:  # the next interval tries again
                _log.warning("could not read the job counts for the metrics: %s", exc)

    # -- the end ------------------------------------------------------------------------------

    def detach(self) -> None:
        """Stop recording: detach the handlers, stop the counts, unregister the metrics.

        Values already written to multiprocess files stay there. Calling it again does
        nothing.
        """
        for token in self._tokens:
            telemetry.detach(token)
        self._tokens = []
        self._stopped.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        for collector in self._collectors:
            with suppress(KeyError):  # unregistered already, by someone else
                self.registry.unregister(collector)
        self._collectors = []

    def __enter__(self) -> Metrics:
        return self

    def __exit__(self, *exc: object) -> None:
        self.detach()


def instrument(
    jobs: Jobs | None = None,
    *,
    registry: CollectorRegistry | None = None,
    interval: float = 15.0,
) -> Metrics:
    """Record underway's metrics in this process, from now until :meth:`Metrics.detach`.

    Job and pipeline metrics come from every ``Jobs`` node and ``Pipeline`` of the process.

    Args:
        jobs: The app whose job counts feed ``underway_queue_jobs``: every ``interval``
            seconds, if its node holds the leader lease, one query counts the jobs by queue
            and state. ``None``: no gauge.
        registry: Where the metrics are registered (default: prometheus-client's
            ``REGISTRY``).
        interval: Seconds between two readings of the job counts.

    Returns:
        The metrics; ``detach()`` (or leaving its ``with`` block) stops recording.

    Raises:
        ConfigError: A bad argument, or the metrics are already in ``registry``.
    """
    if jobs is not None and not isinstance(jobs, Jobs):
        raise ConfigError(f"jobs must be an underway.jobs.Jobs app, got {type(jobs).__name__}")
    if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
        raise ConfigError(f"interval must be a number of seconds > 0, got {interval!r}")
    return Metrics(jobs, REGISTRY if registry is None else registry, float(interval))
