"""Job values: the states a job moves through, a stored job, and a job about to be inserted."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

__all__ = ["FINISHED_STATES", "Job", "JobError", "JobSpec", "JobState", "make_job", "to_datetime"]

A = TypeVar("A")


class JobState(enum.StrEnum):
    """The life of a job, as in Oban.

    ``scheduled`` and ``retryable`` wait for their time; ``available`` waits for a free slot
    in its queue; ``executing`` is running on a node; the last three are final.
    """

    SCHEDULED = "scheduled"
    AVAILABLE = "available"
    EXECUTING = "executing"
    RETRYABLE = "retryable"
    COMPLETED = "completed"
    DISCARDED = "discarded"
    CANCELLED = "cancelled"

    @property
    def bit(self) -> int:
        """This state's bit in a state mask (stored for unique jobs)."""
        return 1 << _STATE_ORDER.index(self)


_STATE_ORDER = list(JobState)
FINISHED_STATES = frozenset({JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED})


def to_datetime(ts: float | None) -> datetime | None:
    """An epoch timestamp as an aware UTC datetime (``None`` stays ``None``)."""
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


@dataclass(frozen=True, slots=True)
class JobError:
    """One failed attempt, as kept in :attr:`Job.errors`."""

    attempt: int
    at: datetime
    error: str
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class Job(Generic[A]):
    """A job as stored, handed to workers and returned by enqueue.

    ``args`` is the JSON object given at enqueue, or an instance of the worker's ``args``
    schema when it has one. ``conflict`` is true when enqueue found an existing unique job
    and returned it instead of inserting a new one.
    """

    id: int
    state: JobState
    queue: str
    worker: str
    args: A
    meta: dict[str, Any] = field(default_factory=dict)
    tags: tuple[str, ...] = ()
    errors: tuple[JobError, ...] = ()
    attempt: int = 0
    max_attempts: int = 20
    priority: int = 0
    inserted_at: datetime | None = None
    scheduled_at: datetime | None = None
    attempted_at: datetime | None = None
    attempted_by: str | None = None
    completed_at: datetime | None = None
    discarded_at: datetime | None = None
    cancelled_at: datetime | None = None
    result: Any = None
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class JobSpec:
    """A validated job ready to insert, as built by ``Worker.new``.

    ``scheduled_at`` is an epoch timestamp, ``None`` for "now". ``unique_key``,
    ``unique_states`` (a mask of :attr:`JobState.bit`) and ``unique_period`` (seconds,
    ``None`` for forever) are set for unique jobs only.
    """

    worker: str
    queue: str
    args: dict[str, Any]
    args_json: str
    meta_json: str = "{}"
    tags: tuple[str, ...] = ()
    priority: int = 0
    max_attempts: int = 20
    scheduled_at: float | None = None
    unique_key: str | None = None
    unique_states: int = 0
    unique_period: float | None = None


_SET = {f.name: getattr(Job, f.name).__set__ for f in fields(Job)}
_set_id, _set_state, _set_queue, _set_worker = (_SET[n] for n in ("id", "state", "queue", "worker"))
_set_args, _set_meta, _set_tags, _set_errors = (_SET[n] for n in ("args", "meta", "tags", "errors"))
_set_attempt, _set_max, _set_priority = (_SET[n] for n in ("attempt", "max_attempts", "priority"))
_set_inserted, _set_scheduled = _SET["inserted_at"], _SET["scheduled_at"]
_set_attempted, _set_by = _SET["attempted_at"], _SET["attempted_by"]
_set_completed, _set_discarded = _SET["completed_at"], _SET["discarded_at"]
_set_cancelled, _set_result, _set_conflict = (
    _SET[n] for n in ("cancelled_at", "result", "conflict")
)


def make_job(*fields_in_order: Any) -> Job[Any]:
    """A :class:`Job` from all twenty fields in declaration order, without ``__init__``.

    Engines build a Job for every job they insert or claim; filling the slots directly
    costs about half of what the frozen dataclass's ``__init__`` does.
    """
    (
        id_, state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority,
        inserted_at, scheduled_at, attempted_at, attempted_by, completed_at, discarded_at,
        cancelled_at, result, conflict,
    ) = fields_in_order  # fmt: skip
    job: Job[Any] = object.__new__(Job)
    _set_id(job, id_)
    _set_state(job, state)
    _set_queue(job, queue)
    _set_worker(job, worker)
    _set_args(job, args)
    _set_meta(job, meta)
    _set_tags(job, tags)
    _set_errors(job, errors)
    _set_attempt(job, attempt)
    _set_max(job, max_attempts)
    _set_priority(job, priority)
    _set_inserted(job, inserted_at)
    _set_scheduled(job, scheduled_at)
    _set_attempted(job, attempted_at)
    _set_by(job, attempted_by)
    _set_completed(job, completed_at)
    _set_discarded(job, discarded_at)
    _set_cancelled(job, cancelled_at)
    _set_result(job, result)
    _set_conflict(job, conflict)
    return job
