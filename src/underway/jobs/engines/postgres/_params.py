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

__all__ = ["ack_batches", "filter_params"]


def ack_batches(acks: Sequence[Ack], node: str) -> list[tuple[str, dict[str, Any]]]:
    """One (statement, array parameters) per kind of outcome present in ``acks``."""
    done: dict[str, list[Any]] = {"id": [], "at": [], "result": [], "attempt": []}
    snoozed: dict[str, list[Any]] = {"id": [], "scheduled_at": [], "attempt": []}
    failed: dict[str, list[Any]] = {
        k: [] for k in ("id", "state", "at", "attempt", "scheduled_at", "error", "traceback")
    }
    for a in acks:
        if a.state is JobState.COMPLETED:
            _append(done, id=a.job_id, at=float(a.at), result=a.result, attempt=a.attempt)
        elif a.snoozed:
            at = float(a.scheduled_at if a.scheduled_at is not None else a.at)
            _append(snoozed, id=a.job_id, scheduled_at=at, attempt=a.attempt)
        else:
            _append(
                failed,
                id=a.job_id,
                state=a.state.value,
                at=float(a.at),
                attempt=a.attempt,
                scheduled_at=None if a.scheduled_at is None else float(a.scheduled_at),
                error=a.error,
                traceback=a.traceback,
            )
    batches = []
    for name, params in (("ack_completed", done), ("ack_failed", failed), ("ack_snoozed", snoozed)):
        if params["id"]:
            batches.append((name, {**params, "node": node}))
    return batches


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
