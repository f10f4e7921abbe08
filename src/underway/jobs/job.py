"""Job values: the states a job moves through, a stored job, and a job about to be inserted."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

__all__ = ["FINISHED_STATES", "Job", "JobError", "JobSpec", "JobState", "to_datetime"]

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
