"""The inline engine: inserting a job runs it at once, in the caller, and stores nothing.

It is what ``Jobs(testing="inline")`` enqueues through. Each job runs as a node would run
its first attempt (args JSON round-tripped, the worker's timeout, outcomes decided the
same way) and comes back in its final state: ``completed``, ``retryable``, ``discarded``,
``cancelled`` or ``scheduled`` (snoozed). Nothing is written, so nothing is retried: a
retryable job is returned as such, with its error and the time of its next attempt.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any

from underway._aio import run_sync
from underway.jobs._runtime.executor import Executor
from underway.jobs.engines.base import Inserts
from underway.jobs.job import Job, JobError, JobSpec, JobState, to_datetime
from underway.jobs.outcomes import Ack
from underway.jobs.worker import Worker

__all__ = ["InlineEngine"]  # job_from_spec and next_id serve underway.jobs.testing too

NODE = "inline"  # what a job run inline records as ``attempted_by``
_ids = itertools.count(1)


def next_id() -> int:
    """A new id for a job that is never stored (unique within this process)."""
    return next(_ids)


def job_from_spec(spec: JobSpec, job_id: int) -> Job[Any]:
    """The job ``spec`` would be in its first attempt, executing, with id ``job_id``."""
    return Job(
        id=job_id,
        state=JobState.EXECUTING,
        queue=spec.queue,
        worker=spec.worker,
        args=json.loads(spec.args_json),
        meta=json.loads(spec.meta_json),
        tags=spec.tags,
        attempt=1,
        max_attempts=spec.max_attempts,
        priority=spec.priority,
        attempted_by=NODE,
    )


def finished(job: Job[Any], ack: Ack) -> Job[Any]:
    """``job`` as an engine would record ``ack``, its outcome."""
    at = to_datetime(ack.at)
    errors = job.errors
    if ack.error is not None and at is not None:
        errors = (*errors, JobError(ack.attempt, at, ack.error, ack.traceback))
    attempt, meta = job.attempt, job.meta
    if ack.snoozed:  # as the engines record it: the attempt is not counted
        attempt, meta = attempt - 1, {**meta, "snoozed": int(meta.get("snoozed", 0)) + 1}
    return replace(
        job,
        state=ack.state,
        attempt=attempt,
        meta=meta,
        errors=errors,
        completed_at=at if ack.state is JobState.COMPLETED else None,
        discarded_at=at if ack.state is JobState.DISCARDED else None,
        cancelled_at=at if ack.state is JobState.CANCELLED else None,
        scheduled_at=to_datetime(ack.scheduled_at),
        result=None if ack.result is None else json.loads(ack.result),
    )


class InlineEngine(Inserts):
    """Runs each inserted job at once with ``workers`` and returns it finished.

    It has the inserting half of the engine interface only: with nothing stored there is
    nothing to fetch, ack, stage or look up, and a ``Jobs`` app in inline mode runs no
    node. The app's own engine still answers look-ups.

    Args:
        workers: The workers by name (the app's own mapping: workers registered later are
            found too).
    """

    def __init__(self, workers: Mapping[str, Worker]) -> None:
        self.workers = workers

    async def insert(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Run each job now, in order, and return them finished (``conn`` is not used)."""
        with ThreadPoolExecutor(4, thread_name_prefix="underway-inline") as threads:
            executor = Executor(self.workers, NODE, threads)
            out = []
            for spec in specs:
                job = job_from_spec(spec, next_id())
                out.append(finished(job, await executor.run(job)))
            return out

    def insert_sync(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """:meth:`insert` for synchronous callers (also on a thread that runs a loop)."""
        return run_sync(self.insert(specs, conn=conn))
