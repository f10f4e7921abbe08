"""Claimed rows to jobs, on the fast path (every engine: times as epoch floats, JSON as text).

Rows are selected with :func:`~underway.jobs.engines.postgres._sql.columns`, in the order of
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
from underway.jobs.job import Job, JobState, make_job

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
    return make_job(
        row[0],
        _STATES[row[1]],
        row[2],
        row[3],
        args,
        {},
        (),
        (),
        row[8],
        row[9],
        row[10],
        None if inserted is None else _at(inserted, UTC),
        None if scheduled is None else _at(scheduled, UTC),
        None if attempted is None else _at(attempted, UTC),
        row[14],
        None if row[15] is None else _at(row[15], UTC),
        None if row[16] is None else _at(row[16], UTC),
        None if row[17] is None else _at(row[17], UTC),
        None,
        False,
    )
