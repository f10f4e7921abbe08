"""Parameters of the PostgreSQL engine's statements: one array per column for batches, and
a :class:`~underway.jobs.engines.base.JobFilter` for ``sql/fragments/job_filter.sql``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from underway.jobs.engines.base import JobFilter
from underway.jobs.job import JobState
from underway.jobs.outcomes import Ack

__all__ = ["ack_params", "filter_params"]

_ACK_COLUMNS = (
    *("c_id", "c_at", "c_result", "c_attempt"),
    *("f_id", "f_state", "f_at", "f_attempt", "f_scheduled_at", "f_error", "f_traceback"),
    *("s_id", "s_at", "s_scheduled_at", "s_attempt"),
)


def ack_params(acks: Sequence[Ack], node: str) -> dict[str, Any]:
    """The array parameters of ``sql/ack.sql`` for ``acks``: one array per column of each
    kind of outcome (``c_`` completed, ``f_`` failed, ``s_`` snoozed; empty when absent)."""
    columns: dict[str, list[Any]] = {name: [] for name in _ACK_COLUMNS}
    for a in acks:
        at = float(a.at)
        if a.state is JobState.COMPLETED:
            _append(columns, c_id=a.job_id, c_at=at, c_result=a.result, c_attempt=a.attempt)
        elif a.snoozed:
            due = float(a.scheduled_at if a.scheduled_at is not None else a.at)
            _append(columns, s_id=a.job_id, s_at=at, s_scheduled_at=due, s_attempt=a.attempt)
        else:
            _append(
                columns,
                f_id=a.job_id,
                f_state=a.state.value,
                f_at=at,
                f_attempt=a.attempt,
                f_scheduled_at=None if a.scheduled_at is None else float(a.scheduled_at),
                f_error=a.error,
                f_traceback=a.traceback,
            )
    return {**columns, "node": node}


def _append(columns: dict[str, list[Any]], **values: Any) -> None:
    for key, value in values.items():
        columns[key].append(value)


def filter_params(where: JobFilter) -> dict[str, Any]:
    """The named parameters of the filter fragment for ``where`` (``None``: no condition)."""
    return {
        "states": [s.value for s in where.states] or None,
        "queues": list(where.queues) or None,
        "workers": list(where.workers) or None,
        "tags": json.dumps(list(where.tags)) if where.tags else None,
        "node": where.node,
        "inserted_after": where.inserted_after,
        "inserted_before": where.inserted_before,
        "finished_after": where.finished_after,
        "finished_before": where.finished_before,
        "args": where.args,
        "meta": where.meta,
        "ids": list(where.ids) or None,
        "before_id": where.before_id,
    }
