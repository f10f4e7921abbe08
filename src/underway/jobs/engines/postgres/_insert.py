"""Inserting jobs on PostgreSQL as (sql, params) steps that any driver can run.

An insert is at most three statements: free the unique keys whose period is over (only when
the batch has unique jobs), the insert itself (one statement for the whole batch, which also
notifies the queues that got available jobs, on commit), and a look-up of the jobs that hold
the keys of the duplicates. :func:`insert_steps` yields them one by one and receives each
statement's rows, so the same logic runs on the engine's pool, on an application's psycopg
connection, or through another driver: give :func:`run_steps` (or :func:`run_steps_async`)
a function ``execute(sql, params) -> rows``. Parameters are positional ``%b`` placeholders
(psycopg's, binary); :func:`numbered` turns them into ``$1, $2...`` for drivers that want those.

This module imports no driver.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Awaitable, Callable, Generator, Sequence
from datetime import datetime
from typing import Any

from underway.errors import DatabaseError
from underway.jobs.engines._inserted import match_inserted
from underway.jobs.engines._rows import job_from_row
from underway.jobs.engines.postgres._sql import Statements
from underway.jobs.job import Job, JobSpec, JobState, to_datetime

__all__ = [
    "Rows",
    "Step",
    "build_insert",
    "insert_params",
    "insert_steps",
    "numbered",
    "run_steps",
    "run_steps_async",
    "statements",
]

Rows = list[tuple[Any, ...]]
Step = tuple[str, Sequence[Any] | None]
Steps = Generator[Step, Rows, Any]
_RETRIES = 3  # look-ups of a duplicate's key that was freed meanwhile
_SCHEDULED, _AVAILABLE = JobState.SCHEDULED.value, JobState.AVAILABLE.value
_ARGS = 3  # the args column, always an array
_INSERTED_AT = 7  # the insertion time comes after this many per-column values
_COLUMNS = 12  # per-column values: one array each (and a constant each but args)
_NULLS_BEFORE_ARGS, _NULLS_AFTER_ARGS = (None,) * _ARGS, (None,) * (_COLUMNS - _ARGS - 1)


@functools.cache
def statements(schema: str = "public") -> Statements:
    """The statements of ``schema`` (shared by every engine and adapter)."""
    return Statements(schema)


def numbered(sql: str) -> str:
    """``sql`` with its ``%s``/``%b`` placeholders as ``$1, $2...`` (asyncpg's style)."""
    counter = iter(range(1, 10_000))
    return re.sub(r"%[sb]", lambda _: f"${next(counter)}", sql)


def insert_params(specs: Sequence[JobSpec], now: float) -> tuple[Any, ...]:
    """The parameters of the ``insert`` statement for ``specs`` (see ``insert.sql``).

    Each job's state and times are computed here exactly as
    :func:`~underway.jobs.engines._inserted.match_inserted` computes them for the jobs it
    returns, so what is stored and what the caller gets agree to the microsecond.
    """
    now = float(now)
    inserted_at = to_datetime(now)
    if len(specs) == 1:
        return _one_job_params(specs[0], now, inserted_at)
    return _batch_params(specs, now, inserted_at)


def _batch_params(
    specs: Sequence[JobSpec], now: float, inserted_at: datetime | None
) -> tuple[Any, ...]:
    """:func:`insert_params` of any number of jobs: a column with the same value for every
    job is sent once, as its constant (its array is NULL); args always as an array."""
    rows = [_values(s, now, inserted_at) for s in specs]
    columns = [list(c) for c in zip(*rows, strict=True)] or [[] for _ in range(_COLUMNS)]
    constants: list[Any] = []  # one per column but args, in the statement's order
    arrays: list[list[Any] | None] = []
    for i, column in enumerate(columns):
        if i != _ARGS and column and column.count(column[0]) == len(column):
            constants.append(column[0])  # the same for every job: sent once
            arrays.append(None)
        else:
            arrays.append(column)
            if i != _ARGS:
                constants.append(None)
    return (*constants[:_INSERTED_AT], inserted_at, *constants[_INSERTED_AT:], *arrays)


def _one_job_params(s: JobSpec, now: float, inserted_at: datetime | None) -> tuple[Any, ...]:
    """:func:`insert_params` of a single job (the common enqueue): every column but args is
    sent as its constant, every array but args is NULL."""
    values = _values(s, now, inserted_at)
    constants = (*values[:_ARGS], *values[_ARGS + 1 :])
    return (
        *constants[:_INSERTED_AT],
        inserted_at,
        *constants[_INSERTED_AT:],
        *_NULLS_BEFORE_ARGS,
        [values[_ARGS]],
        *_NULLS_AFTER_ARGS,
    )


def _values(s: JobSpec, now: float, inserted_at: datetime | None) -> tuple[Any, ...]:
    """One job's column values in the statement's order; its state and times computed as
    :func:`~underway.jobs.engines._inserted.match_inserted` computes them."""
    when = now if s.scheduled_at is None else float(s.scheduled_at)
    period = s.unique_period
    return (
        _SCHEDULED if when > now else _AVAILABLE,
        s.queue,
        s.worker,
        s.args_json,
        s.meta_json,
        _json_strings(s.tags),
        s.priority,
        s.max_attempts,
        inserted_at if when == now else to_datetime(when),
        s.unique_key,
        s.unique_states,
        None if s.unique_key is None or period is None else to_datetime(now + period),
    )


def _json_strings(tags: tuple[str, ...]) -> str:
    return json.dumps(list(tags)) if tags else "[]"


def build_insert(
    specs: Sequence[JobSpec], now: float, *, schema: str = "public"
) -> tuple[str, tuple[Any, ...]]:
    """The one INSERT statement (and its parameters) for ``specs``.

    It returns ``(id, unique_key)`` of each inserted job; unique duplicates are skipped.
    :func:`insert_steps` adds what unique jobs need around it.
    """
    return statements(schema)["insert"], insert_params(specs, now)


def insert_steps(
    specs: Sequence[JobSpec], now: float, *, schema: str = "public"
) -> Generator[Step, Rows, list[Job[Any]]]:
    """The statements of one insert; returns the jobs in the order of ``specs``.

    Unique duplicates come back as the existing job with ``conflict=True``. Run the steps in
    one transaction when the batch has unique jobs.
    """
    if not specs:
        return []
    sql = statements(schema)
    keys = [s.unique_key for s in specs if s.unique_key is not None]
    if keys:
        yield sql["unique_expire"], (keys, float(now))
    returned = yield sql["insert"], insert_params(specs, now)
    pairs = sorted((row[0], row[1]) for row in returned)
    if not keys:  # every job was inserted
        return match_inserted(specs, pairs, {}, now)
    inserted = {key for _, key in pairs}
    existing: dict[str, Job[Any]] = {}
    wanted = sorted({k for k in keys if k not in inserted})
    for _ in range(_RETRIES):
        if not wanted:
            break
        for row in (yield sql["unique_existing"], (wanted,)):
            existing[row[-1]] = job_from_row(row, conflict=True, lenient=True)
        # a key freed between the insert and the look-up: insert its first job again
        for key in [k for k in wanted if k not in existing]:
            spec = next(s for s in specs if s.unique_key == key)
            rows = yield sql["insert"], insert_params([spec], now)
            if rows:
                existing[key] = match_inserted([spec], [(rows[0][0], rows[0][1])], {}, now)[0]
        wanted = [k for k in wanted if k not in existing]
    if wanted:
        raise DatabaseError(f"unique jobs kept changing while inserting (keys {wanted!r})")
    return match_inserted(specs, pairs, existing, now)


def run_steps(steps: Steps, execute: Callable[[str, Sequence[Any] | None], Rows]) -> Any:
    """Run ``steps`` with a synchronous ``execute(sql, params) -> rows``; return the result."""
    try:
        step = next(steps)
        while True:
            step = steps.send(execute(*step))
    except StopIteration as done:
        return done.value


async def run_steps_async(
    steps: Steps, execute: Callable[[str, Sequence[Any] | None], Awaitable[Rows]]
) -> Any:
    """Run ``steps`` with an asynchronous ``execute(sql, params) -> rows``; return the result."""
    try:
        step = next(steps)
        while True:
            step = steps.send(await execute(*step))
    except StopIteration as done:
        return done.value
