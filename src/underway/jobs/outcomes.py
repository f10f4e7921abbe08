"""What a worker can return, and the pure decision of what happens to the job next."""

from __future__ import annotations

import json
import re
import traceback as tb
from dataclasses import dataclass, replace
from typing import Any

from underway.jobs.job import JobState

__all__ = [
    "Ack",
    "Cancel",
    "Error",
    "Snooze",
    "decide",
    "for_claim",
    "storable_json",
    "storable_text",
]


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


def storable_text(text: str) -> str:
    """``text`` as every engine can store it: valid UTF-8 with no NUL character.

    Error messages often quote file names or bytes decoded with ``surrogateescape``; such
    lone surrogates are written as ``\\udcff`` escapes and NUL as ``\\x00``, so one
    odd message never holds up the batch of acks it travels in.
    """
    if text.isascii() and "\x00" not in text:
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8").replace("\x00", "\\x00")


_SURROGATE = re.compile("[\ud800-\udfff]")
_JSON_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")  # an escaped NUL, not an escaped backslash
_ENCODE_RESULT = json.JSONEncoder(separators=(",", ":"), allow_nan=False, ensure_ascii=False).encode


def storable_json(value: Any) -> str:
    """A job's result as JSON every engine can store: lone surrogates and NUL characters,
    which PostgreSQL's jsonb refuses, become U+FFFD."""
    text = _ENCODE_RESULT(value)
    if text.isascii() and "\\u0000" not in text:
        return text
    return _SURROGATE.sub("\ufffd", _JSON_NUL.sub("\\1\ufffd", text))


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
        reason = storable_text(f"cancelled: {outcome.reason}")
        return Ack(job_id, JobState.CANCELLED, now, attempt, error=reason)
    if isinstance(outcome, BaseException | Error):
        if isinstance(outcome, Error):
            message, trace = storable_text(str(outcome.reason)), None
        else:
            message = storable_text(f"{type(outcome).__name__}: {outcome}")
            trace = storable_text("".join(tb.format_exception(outcome)))
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
    if result is not None and ("\\u" in result or not result.isascii()):
        result = storable_json(json.loads(result))
    return Ack(job_id, JobState.COMPLETED, now, attempt, result=result)


def for_claim(ack: Ack, attempt: int, max_attempts: int) -> Ack:
    """``ack`` recorded for the claim ``attempt`` (the newest one its run holds).

    A failure that would be retried is final when that claim is the last attempt.
    """
    if attempt == ack.attempt:
        return ack
    state = ack.state
    if state is JobState.RETRYABLE and attempt >= max_attempts:
        state = JobState.DISCARDED
    return replace(ack, attempt=attempt, state=state)
