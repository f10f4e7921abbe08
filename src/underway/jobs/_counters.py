"""Per-minute counters of finished attempts: what :meth:`~underway.jobs.Jobs.job_counters`
returns, and the checks of its arguments before any SQL.

The engines keep one row per minute, queue and worker, added to by the acks of each batch
in the statement (PostgreSQL) or transaction (SQLite) that writes them, by jobs
cancelled by request, and by the rescue of a silent node's jobs (their attempts failed, or
were discarded out of attempts); a chart of throughput reads a range of those rows, never
the jobs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime

from underway.errors import ConfigError
from underway.jobs._bulk import _names, _time, _worker_name
from underway.jobs._queue_name import validate_queue_name
from underway.jobs.engines.base import CounterRow, JobCounters

__all__ = ["CounterQuery", "MinuteCount", "counter_query", "read_counters"]


@dataclass(frozen=True, slots=True)
class MinuteCount:
    """The attempts of one queue and worker that finished in one minute.

    Attributes:
        minute: The start of the minute (an aware datetime in UTC), by the clock of the
            node that recorded the attempts as they finished.
        queue: The jobs' queue.
        worker: The worker's full name.
        completed: Attempts that completed.
        failed: Attempts that failed and will be retried.
        discarded: Attempts that failed with no attempt left.
        cancelled: Jobs cancelled: by a ``Cancel`` outcome, or by request
            (``cancel_job``, ``cancel_all_jobs``).
        snoozed: Attempts that snoozed.
    """

    minute: datetime
    queue: str
    worker: str
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
    (``since`` rounded down to its minute), and the queues and workers (empty: all)."""

    since: float
    until: float
    queues: tuple[str, ...] = ()
    workers: tuple[str, ...] = ()


def counter_query(
    *,
    since: object,
    until: object = None,
    queue: object = None,
    worker: object = None,
) -> CounterQuery:
    """Check the arguments of :meth:`~underway.jobs.Jobs.job_counters`.

    Raises:
        ConfigError: An argument is missing, of the wrong type or empty (named in the
            message), or ``since`` is not earlier than ``until``.
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
    )


def read_counters(engine: object, query: CounterQuery) -> list[MinuteCount]:
    """The counters ``query`` asks for, ordered by minute, queue and worker.

    Raises:
        ConfigError: ``engine`` keeps no counters (the ``inline`` testing mode).
    """
    if not isinstance(engine, JobCounters):
        raise ConfigError(f"{engine!r} keeps no job counters")
    rows = engine.job_counters(query.since, query.until, queues=query.queues, workers=query.workers)
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
