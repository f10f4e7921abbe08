"""Helpers for testing code that uses underway.jobs.

Two modes, set with ``Jobs(testing=...)`` or :func:`use_testing`:

- ``"inline"``: ``enqueue`` runs the job at once, in the caller, with no database, and
  returns it in its final state (``completed``, ``retryable``, ``cancelled``...); the
  app's own engine is not written to.
- ``"manual"``: jobs are stored but no queue runs; check them with
  :func:`assert_enqueued` and run them with :func:`drain_queue`.

``perform_job`` runs one worker on given args the way a node would (args validated and
JSON round-tripped) and returns what the worker returned.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from underway._aio import run_sync
from underway.jobs._runtime.executor import Executor
from underway.jobs.engines import open_engine
from underway.jobs.engines._inline import job_from_spec, next_id
from underway.jobs.job import Job, JobState
from underway.jobs.schema import dump_args
from underway.jobs.worker import Worker

if TYPE_CHECKING:
    from underway.jobs.app import Jobs, TestingMode

__all__ = [
    "DrainResult",
    "all_enqueued",
    "assert_enqueued",
    "drain_queue",
    "drain_queue_sync",
    "perform_job",
    "perform_job_sync",
    "refute_enqueued",
    "use_testing",
]

_WAITING = (JobState.AVAILABLE, JobState.SCHEDULED)


# -- running jobs -------------------------------------------------------------------------


async def perform_job(worker: Worker, args: Any = None, **options: Any) -> Any:
    """Run ``worker`` once on ``args`` as a node would and return what it returned.

    Args are validated against the worker's schema and JSON round-tripped first, so the
    worker sees exactly what it would see in production. Exceptions propagate.

    Args:
        worker: The worker to run.
        args: The job's args.
        **options: Job options for ``worker.new`` (``meta``, ``queue``...), plus
            ``attempt`` (default 1).
    """
    attempt = options.pop("attempt", 1)
    spec = worker.new(args, **options)
    job = replace(job_from_spec(spec, next_id()), attempt=attempt)
    typed = worker.typed_job(job)
    if worker.is_async:
        return await worker.call(typed)
    return await asyncio.to_thread(worker.call, typed)


def perform_job_sync(worker: Worker, args: Any = None, **options: Any) -> Any:
    """:func:`perform_job` for synchronous tests."""
    return run_sync(perform_job(worker, args, **options))


@dataclass(frozen=True, slots=True)
class DrainResult:
    """What :func:`drain_queue` did, by outcome."""

    completed: int = 0
    retryable: int = 0
    discarded: int = 0
    cancelled: int = 0
    snoozed: int = 0

    @property
    def total(self) -> int:
        """Attempts run."""
        return self.completed + self.retryable + self.discarded + self.cancelled + self.snoozed


async def drain_queue(
    jobs: Jobs,
    queue: str = "default",
    *,
    with_scheduled: bool | datetime = False,
    with_recursion: bool = True,
    with_safety: bool = True,
    with_limit: int | None = None,
) -> DrainResult:
    """Run the jobs of ``queue`` one by one in this task, until none is available.

    Args:
        jobs: The application (in ``manual`` mode, or with no node running).
        queue: The queue to drain.
        with_scheduled: ``True`` also runs scheduled and retryable jobs whatever their
            time (so retries run until the job completes or is discarded); a datetime
            runs those due up to that time.
        with_recursion: Keep going while jobs enqueue more jobs (False: one pass).
        with_safety: False records a worker's exception on its job, then re-raises it
            and stops.
        with_limit: Run at most this many jobs.

    Raises:
        RuntimeError: One job ran more than ``max(100, max_attempts)`` times in this drain
            (a worker that always snoozes, drained ``with_scheduled=True``).
    """
    counts = dict.fromkeys(("completed", "retryable", "discarded", "cancelled", "snoozed"), 0)
    engine = jobs.engine
    run = 0
    with ThreadPoolExecutor(4, thread_name_prefix="underway-drain") as threads:
        executor = _KeepingExecutor(jobs.workers, "drain", threads)
        runs: dict[int, int] = {}
        while True:
            await engine.stage(_horizon(with_scheduled), queue=queue)
            limit = 1000 if with_limit is None else min(1000, with_limit - run)
            batch = await engine.fetch(queue, limit, "drain", time.time()) if limit > 0 else []
            if not batch:
                break
            finished = 0
            try:
                for job in batch:
                    runs[job.id] = runs.get(job.id, 0) + 1
                    if runs[job.id] > max(100, job.max_attempts):
                        raise RuntimeError(
                            f"job {job.id} ({job.worker}) ran {runs[job.id] - 1} times in one "
                            "drain and is due again: it keeps snoozing; pass with_limit, or a "
                            "datetime as with_scheduled"
                        )
                    ack = await executor.run(job)
                    await engine.ack([ack], "drain")
                    finished += 1
                    counts["snoozed" if ack.snoozed else ack.state.value] += 1
                    run += 1
                    if not with_safety and executor.raised is not None:
                        raise executor.raised
            finally:  # jobs claimed but not run go back to the queue, whatever happened
                rest = [(j.id, j.attempt) for j in batch[finished:]]
                if rest:
                    await engine.release(rest, "drain", time.time())
            if not with_recursion:
                break
    return DrainResult(**counts)


def _horizon(with_scheduled: bool | datetime) -> float:
    if isinstance(with_scheduled, datetime):
        return with_scheduled.timestamp()
    return 1e18 if with_scheduled else time.time()


class _KeepingExecutor(Executor):
    """An executor that also keeps the exception a worker raised (for ``with_safety``)."""

    raised: BaseException | None = None

    async def _perform(self, worker: Worker, job: Job[Any]) -> Any:
        self.raised = None
        outcome = await super()._perform(worker, job)
        if isinstance(outcome, BaseException):
            self.raised = outcome
        return outcome


def drain_queue_sync(jobs: Jobs, queue: str = "default", **options: Any) -> DrainResult:
    """:func:`drain_queue` for synchronous tests."""
    return run_sync(drain_queue(jobs, queue, **options))


# -- assertions ---------------------------------------------------------------------------


def _matches(job: Job[Any], expected: Mapping[str, Any]) -> bool:
    for key, want in expected.items():
        have = getattr(job, key)
        if key in ("args", "meta"):
            if not isinstance(have, Mapping) or any(
                k not in have or have[k] != v for k, v in want.items()
            ):
                return False
        elif key == "tags":
            if not set(want) <= set(have):
                return False
        elif have != want:
            return False
    return True


def _expected(filters: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in filters.items():
        if key not in ("worker", "queue", "args", "meta", "tags", "priority", "max_attempts"):
            raise TypeError(f"unknown filter {key!r}")
        if key == "worker" and isinstance(value, Worker):
            value = value.name
        if key == "args" and not isinstance(value, Mapping):
            value = _args_of(filters.get("worker"), value)
        if key in ("args", "meta"):
            value = json.loads(json.dumps(value))
        out[key] = value
    return out


def _args_of(worker: Any, value: Any) -> dict[str, Any]:
    return dump_args(worker.schema if isinstance(worker, Worker) else None, value)


def all_enqueued(jobs: Jobs, *, state: Any = _WAITING, **filters: Any) -> list[Job[Any]]:
    """Every enqueued job (available or scheduled, as in Oban) that matches ``filters``.

    Filters: ``worker`` (a Worker or its name), ``queue``, ``args`` and ``meta`` (the job's
    must contain these keys and values), ``tags`` (must include these), ``priority``,
    ``max_attempts``. ``state`` widens or narrows the states searched.
    """
    expected = _expected(filters)
    found = jobs.list_jobs_sync(
        state=state, queue=expected.get("queue"), worker=expected.get("worker"), limit=1_000_000
    )
    return [j for j in reversed(found) if _matches(j, expected)]


def assert_enqueued(jobs: Jobs, **filters: Any) -> Job[Any]:
    """Assert that a matching job is waiting; return it. See :func:`all_enqueued`."""
    found = all_enqueued(jobs, **filters)
    if not found:
        waiting = all_enqueued(jobs)
        listing = (
            "\n".join(
                f"  #{j.id} {j.worker} queue={j.queue} args={j.args} meta={j.meta}"
                for j in waiting[:20]
            )
            or "  (no waiting jobs)"
        )
        raise AssertionError(f"expected a job matching {filters}, found none; waiting:\n{listing}")
    return found[0]


def refute_enqueued(jobs: Jobs, **filters: Any) -> None:
    """Assert that no matching job is waiting. See :func:`all_enqueued`."""
    found = all_enqueued(jobs, **filters)
    if found:
        ids = ", ".join(f"#{j.id}" for j in found[:20])
        raise AssertionError(f"expected no job matching {filters}, found {len(found)}: {ids}")


# -- switching an app into a testing mode ----------------------------------------------


_temp_counter = itertools.count(1)


@contextmanager
def use_testing(
    jobs: Jobs, mode: TestingMode = "manual", *, database: str | None = None
) -> Iterator[Jobs]:
    """Put ``jobs`` in a testing mode on a fresh database for the duration of the block.

    Without ``database`` a new SQLite file in a temporary folder is used and removed after.
    The app's previous mode and database come back at the end.
    """
    old_mode, old_engine, old_url = jobs.testing, jobs.engine, jobs.database
    with tempfile.TemporaryDirectory(prefix="underway-test-") as tmp:
        url = database or f"sqlite:///{Path(tmp) / f'jobs-{next(_temp_counter)}.db'}"
        engine = open_engine(url)
        jobs.engine, jobs.database, jobs.testing = engine, url, mode
        try:
            yield jobs
        finally:
            jobs.engine, jobs.database, jobs.testing = old_engine, old_url, old_mode
            close = getattr(engine, "close_sync", None)
            if close is not None:
                close()
