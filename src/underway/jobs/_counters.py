"""Per-minute counters of finished attempts: what :meth:`~underway.jobs.Jobs.job_counters`
returns, and the checks of its arguments before any SQL.

The engines keep one row per minute, queue and worker, added to by the acks of each batch
in the statement (PostgreSQL) or transaction (SQLite) that writes them, by jobs
cancelled by request, and by the rescue of a silent node's jobs (their attempts failed, or
were discarded out of attempts); a chart of throughput reads a range of those rows, never
the jobs. A read may ask the database to add them up: per bucket of several minutes,
counted from its start, and by queue, by worker, by both or neither (the dashboard's charts
read one row per bucket and queue, however many workers there are).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from underway.errors import ConfigError
from underway.jobs._bulk import _names, _time, _worker_name
from underway.jobs._queue_name import validate_queue_name
from underway.jobs.engines.base import CounterRow, JobCounters

__all__ = [
    "DIMENSIONS",
    "MAX_BUCKET",
    "CounterQuery",
    "MinuteCount",
    "counter_query",
    "read_counters",
]

DIMENSIONS = ("queue", "worker")
"""What counters can be grouped by, in the order of the rows' key (the default: both)."""
MAX_BUCKET = 10_000 * 366 * 86_400
"""The longest bucket, in seconds: more than the whole calendar (years 1 to 9999), so any
range fits in one."""


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """The attempts of one queue and worker that finished in one minute, or their sum over
    a bucket of minutes and over the queues or workers a read does not group by.

    Attributes:
        minute: The start of the minute (an aware datetime in UTC), by the clock of the
            node that recorded the attempts as they finished; the start of the bucket
            when the read asked for buckets longer than a minute.
        queue: The jobs' queue; ``None`` when the read does not group by queue (the
            sum of every queue read).
        worker: The worker's full name; ``None`` when the read does not group by worker
            (the sum of every worker read).
        completed: Attempts that completed.
        failed: Attempts that failed and will be retried.
        discarded: Attempts that failed with no attempt left.
        cancelled: Jobs cancelled: by a ``Cancel`` outcome, or by request
            (``cancel_job``, ``cancel_all_jobs``).
        snoozed: Attempts that snoozed.
    """

    minute: datetime
    queue: str | None
    worker: str | None
    completed: int
    failed: int
    discarded: int
    cancelled: int
    snoozed: int

    @property
    def finished(self) -> int:
        """Jobs that finished in the minute: completed, discarded or cancelled."""
        return self.completed + self.discarded + self.cancelled


@dataclass(frozen=True, slots=True)
class CounterQuery:
    """Checked arguments of one read: minutes starting in ``[since, until)``, epoch seconds
    (``since`` rounded down to its minute), the queues and workers (empty: all), the
    buckets' length in seconds (counted from ``since``) and the dimensions grouped by (of
    :data:`DIMENSIONS`, in its order)."""

    since: float
    until: float
    queues: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()
    bucket: int = 60
    by: tuple[str, ...] = DIMENSIONS


def counter_query(
    *,
    since: object,
    until: object = None,
    queue: object = None,
    worker: object = None,
    bucket: object = 60,
    by: object = DIMENSIONS,
) -> CounterQuery:
    """Check the arguments of :meth:`~underway.jobs.Jobs.job_counters`.

    Raises:
        ConfigError: An argument is missing, of the wrong type or empty (named in the
            message), ``since`` is not earlier than ``until``, ``bucket`` is not a
            multiple of 60 seconds, or ``by`` names something other than queue and worker.
    """
    start = _time("since", since)
    if start is None:
        raise ConfigError("since is required: an aware datetime or epoch seconds")
    end = _time("until", until)
    stop = time.time() if end is None else end
    if start >= stop:
        shown = "now" if until is None else repr(until)
        raise ConfigError(f"since must be earlier than until, got since={since!r}, until={shown}")
    return CounterQuery(
        since=float(start // 60 * 60),
        until=stop,
        queues=_names("queue", queue, validate_queue_name),
        workers=_names("worker", worker, _worker_name),
        bucket=_bucket(bucket),
        by=_by(by),
    )


def _bucket(value: object) -> int:
    if (
        not isinstance(value, int)
        or isinstance(value, bool)
        or not 60 <= value <= MAX_BUCKET
        or value % 60
    ):
        raise ConfigError(
            f"bucket must be seconds, a multiple of 60 from 60 to {MAX_BUCKET}, got {value!r}"
        )
    return value


def _by(value: object) -> tuple[str, ...]:
    """The dimensions of ``value`` (one name, or a list, possibly empty) in key order."""
    if isinstance(value, str):
        value = (value,)
    if isinstance(value, Mapping | bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"by must be a list of 'queue' and 'worker', got {value!r}")
    names = list(value)
    for name in names:
        if name not in DIMENSIONS:
            raise ConfigError(f"by must list only 'queue' and 'worker', got {name!r}")
    if len(set(names)) != len(names):
        raise ConfigError(f"by names a dimension twice: {value!r}")
    return tuple(d for d in DIMENSIONS if d in names)


def read_counters(engine: object, query: CounterQuery) -> list[MinuteCount]:
    """The counters ``query`` asks for, ordered by minute (or bucket), queue and worker.

    Raises:
        ConfigError: ``engine`` keeps no counters (the ``inline`` testing mode).
    """
    if not isinstance(engine, JobCounters):
        raise ConfigError(f"{engine!r} keeps no job counters")
    rows = engine.job_counters(
        query.since,
        query.until,
        queues=query.queues,
        workers=query.workers,
        bucket=query.bucket,
        by=query.by,
    )
    return [_minute_count(row) for row in rows]


def _minute_count(row: CounterRow) -> MinuteCount:
    minute, queue, worker, completed, failed, discarded, cancelled, snoozed = row
    return MinuteCount(
        datetime.fromtimestamp(minute, UTC),
        queue,
        worker,
        int(completed),
        int(failed),
        int(discarded),
        int(cancelled),
        int(snoozed),
    )
