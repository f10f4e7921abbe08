"""The acks of a batch as one PostgreSQL statement, made of the kinds of outcome present.

``sql/ack.sql`` holds the statement around a CTE per kind (``sql/fragments/ack_completed``,
``ack_failed``, ``ack_snoozed``): a batch names only the kinds it has, so the usual batch
of completed attempts runs one ``UPDATE`` and the upsert of its counts, not two more
``UPDATE``\\ s of empty arrays. Each combination of kinds is one statement text, prepared
by the driver like any other.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from underway.jobs.engines._sql import fragment, query, uncommented
from underway.jobs.job import JobState
from underway.jobs.outcomes import Ack

__all__ = ["KINDS", "ack_params", "ack_statement"]

KINDS = ("completed", "failed", "snoozed")
"""The kinds of outcome, each a CTE of the statement, in the order they are written."""
_COLUMNS = {
    "completed": ("c_id", "c_at", "c_result", "c_attempt"),
    "failed": ("f_id", "f_state", "f_at", "f_attempt", "f_scheduled_at", "f_error", "f_traceback"),
    "snoozed": ("s_id", "s_at", "s_scheduled_at", "s_attempt"),
}


def ack_params(acks: Sequence[Ack], node: str) -> tuple[tuple[str, ...], dict[str, Any]]:
    """The kinds of outcome present in ``acks`` and the statement's parameters: one array
    per column of each kind (``c_`` completed, ``f_`` failed, ``s_`` snoozed)."""
    columns: dict[str, list[Any]] = {name: [] for names in _COLUMNS.values() for name in names}
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
    kinds = tuple(k for k in KINDS if columns[_COLUMNS[k][0]])
    params = {name: columns[name] for kind in kinds for name in _COLUMNS[kind]}
    return kinds, {**params, "node": node}


def _append(columns: dict[str, list[Any]], **values: Any) -> None:
    for key, value in values.items():
        columns[key].append(value)


@functools.cache
def ack_statement(schema_sql: str, kinds: tuple[str, ...]) -> str:
    """The statement that writes acks of ``kinds`` (some of :data:`KINDS`, in that order)
    and adds them to the counters, for the quoted schema ``schema_sql``."""
    if not kinds or any(k not in KINDS for k in kinds):
        raise ValueError(f"kinds must be some of {KINDS}, got {kinds!r}")
    ctes = ",\n".join(uncommented(fragment("postgres", f"ack_{k}")).strip() for k in kinds)
    acked = " UNION ALL ".join(f"SELECT * FROM {k}" for k in kinds)
    text = query("postgres", "ack").replace("{acks}", ctes).replace("{acked}", acked)
    return text.replace("{schema}", schema_sql)
