"""Claimed PostgreSQL rows to jobs, on the fast path.

Rows are selected with :func:`~underway.jobs.engines._pg_sql.columns`, in the order of
:data:`~underway.jobs.engines._rows.COLUMNS`. Claiming is the hot path of a node (every job
passes here once), so the common shapes (empty meta, tags and errors, no result) are
decoded without the generic field table; any row the fast path cannot take, including an
undecodable one, goes through :func:`~underway.jobs.engines._rows.job_from_row`, which
raises :class:`~underway.jobs.engines._rows.UndecodableRow` naming the column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from underway.jobs.engines._rows import job_from_row
from underway.jobs.job import Job, JobState

__all__ = ["claimed_job"]

_STATES = {s.value: s for s in JobState}
_loads = json.loads
_at = datetime.fromtimestamp


def claimed_job(row: Sequence[Any]) -> Job[Any]:
    """A Job from a claimed row (see the module docstring).

    Raises:
        UndecodableRow: A column cannot be decoded.
    """
    meta, tags, errors, result = row[5], row[6], row[7], row[18]
    if meta != "{}" or tags != "[]" or errors != "[]" or result is not None:
        return job_from_row(row)
    try:
        args = {} if row[4] == "{}" else _loads(row[4])
    except ValueError:
        return job_from_row(row)
    inserted, scheduled, attempted = row[11], row[12], row[13]
    return Job(
        id=row[0],
        state=_STATES[row[1]],
        queue=row[2],
        worker=row[3],
        args=args,
        meta={},
        attempt=row[8],
        max_attempts=row[9],
        priority=row[10],
        inserted_at=None if inserted is None else _at(inserted, UTC),
        scheduled_at=None if scheduled is None else _at(scheduled, UTC),
        attempted_at=None if attempted is None else _at(attempted, UTC),
        attempted_by=row[14],
        completed_at=None if row[15] is None else _at(row[15], UTC),
        discarded_at=None if row[16] is None else _at(row[16], UTC),
        cancelled_at=None if row[17] is None else _at(row[17], UTC),
    )
