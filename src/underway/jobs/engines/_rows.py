"""Turning stored rows into Job values, the same way for every engine."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from underway.jobs.job import Job, JobError, JobState, to_datetime

__all__ = ["COLUMNS", "job_from_row"]

COLUMNS = (
    "id, state, queue, worker, args, meta, tags, errors, attempt, max_attempts, priority, "
    "inserted_at, scheduled_at, attempted_at, attempted_by, completed_at, discarded_at, "
    "cancelled_at, result"
)

_STATES = {s.value: s for s in JobState}


def _errors(text: str) -> tuple[JobError, ...]:
    if text == "[]":
        return ()
    return tuple(
        JobError(
            attempt=int(e.get("attempt") or 0),
            at=to_datetime(float(e.get("at") or 0.0)),  # type: ignore[arg-type]
            error=str(e.get("error")),
            traceback=e.get("traceback"),
        )
        for e in json.loads(text)
    )


def job_from_row(row: Sequence[Any], *, conflict: bool = False) -> Job[Any]:
    """A Job from a row selected with :data:`COLUMNS`."""
    meta = row[5]
    result = row[18]
    return Job(
        id=row[0],
        state=_STATES[row[1]],
        queue=row[2],
        worker=row[3],
        args=json.loads(row[4]),
        meta={} if meta == "{}" else json.loads(meta),
        tags=tuple(json.loads(row[6])) if row[6] != "[]" else (),
        errors=_errors(row[7]),
        attempt=row[8],
        max_attempts=row[9],
        priority=row[10],
        inserted_at=to_datetime(row[11]),
        scheduled_at=to_datetime(row[12]),
        attempted_at=to_datetime(row[13]),
        attempted_by=row[14],
        completed_at=to_datetime(row[15]),
        discarded_at=to_datetime(row[16]),
        cancelled_at=to_datetime(row[17]),
        result=None if result is None else json.loads(result),
        conflict=conflict,
    )
