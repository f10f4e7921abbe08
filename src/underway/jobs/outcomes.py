"""What a worker can return, and the pure decision of what happens to the job next."""

from __future__ import annotations

import traceback as tb
from dataclasses import dataclass
from typing import Any

from underway.jobs.job import JobState

__all__ = ["Ack", "Cancel", "Error", "Snooze", "decide"]


@dataclass(frozen=True, slots=True)
class Snooze:
    """Run the job again in ``seconds``; the attempt is not counted."""

    seconds: float

    def __post_init__(self) -> None:
        bad_type = not isinstance(self.seconds, int | float) or isinstance(self.seconds, bool)
        if bad_type or not self.seconds >= 0:
            raise ValueError(f"Snooze seconds must be a number >= 0, got {self.seconds!r}")


@dataclass(frozen=True, slots=True)
class Cancel:
    """Stop the job for good: it is marked ``cancelled`` and never retried."""

    reason: str = "cancelled"


@dataclass(frozen=True, slots=True)
class Error:
    """Fail this attempt without raising: retried with backoff, discarded after the last."""

    reason: str


@dataclass(frozen=True, slots=True)
class Ack:
    """The change to write for one finished attempt (built by :func:`decide`).

    ``state`` is the job's next state; ``scheduled_at`` is set for retryable and snoozed
    jobs; ``error`` (and ``traceback``) for failed attempts; ``result`` is JSON text or
    ``None``.
    """

    job_id: int
    state: JobState
    at: float
    attempt: int
    scheduled_at: float | None = None
    error: str | None = None
    traceback: str | None = None
    result: str | None = None
    snoozed: bool = False


def decide(
    job_id: int,
    attempt: int,
    max_attempts: int,
    outcome: Any,
    *,
    now: float,
    backoff: float,
    result: str | None = None,
) -> Ack:
    """Turn what a worker returned or raised into the job's next state.

    Args:
        job_id: The job.
        attempt: The attempt that just ran (1 for the first run).
        max_attempts: The job's limit.
        outcome: The worker's return value, or the exception it raised.
        now: The current epoch time.
        backoff: Seconds to wait before the next attempt if this one failed.
        result: The JSON text to record for a completed job, if the worker records results.
    """
    if isinstance(outcome, Snooze):
        return Ack(
            job_id,
            JobState.SCHEDULED,
            now,
            attempt,
            scheduled_at=now + outcome.seconds,
            snoozed=True,
        )
    if isinstance(outcome, Cancel):
        return Ack(job_id, JobState.CANCELLED, now, attempt, error=f"cancelled: {outcome.reason}")
    if isinstance(outcome, BaseException | Error):
        if isinstance(outcome, Error):
            message, trace = outcome.reason, None
        else:
            message = f"{type(outcome).__name__}: {outcome}"
            trace = "".join(tb.format_exception(outcome))
        if attempt >= max_attempts:
            return Ack(job_id, JobState.DISCARDED, now, attempt, error=message, traceback=trace)
        return Ack(
            job_id,
            JobState.RETRYABLE,
            now,
            attempt,
            scheduled_at=now + backoff,
            error=message,
            traceback=trace,
        )
    return Ack(job_id, JobState.COMPLETED, now, attempt, result=result)
