"""Bulk job actions: retry, cancel or delete every job matching a filter, in one statement.

The filters are checked here, before any SQL, and become one
:class:`~underway.jobs.engines.base.JobFilter`, which each engine translates in one place
for listing and for every action. What each action touches:

* retry: jobs ``scheduled``, ``retryable``, ``completed``, ``discarded`` or ``cancelled``
  become available now, with at least one attempt left (as ``retry_job``). An executing job
  is left to its run; an available one is already waiting, and keeps its place.
* cancel: jobs not finished (as ``cancel_job``). One that is executing is marked cancelled
  and a cancel signal goes to every node in the same transaction: the node running it
  interrupts it (a coroutine; a sync job's thread runs to its end and its outcome is
  ignored).
* delete: finished jobs only. A waiting job deleted would vanish without a trace (cancel
  it, and it stays in the history until pruned), and an executing one would be deleted
  under its run. Deleting is the pruner's work done now, for jobs of one's choosing.

A filter that names states outside the action's is an error, not an empty result.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, TypedDict

from underway.errors import ConfigError
from underway.jobs._queue_name import validate_queue_name
from underway.jobs.engines.base import (
    BULK_CANCEL_STATES,
    BULK_DELETE_STATES,
    BULK_RETRY_STATES,
    BulkActions,
    BulkResult,
    JobFilter,
)
from underway.jobs.job import JobState
from underway.jobs.worker import Worker

__all__ = ["ACTION_STATES", "JobFilters", "bulk", "bulk_filter", "job_filter"]

_log = logging.getLogger("underway.jobs")
_SCALARS = (str, int, float, bool, type(None))
_MAX_ID = 2**63 - 1  # a bigint: a larger id names no job (and would fail PostgreSQL's cast)
# Epoch seconds a datetime can hold (years 1 to 9999): what both engines compare alike
# (PostgreSQL's timestamps end earlier than a float does; milliseconds by mistake overflow).
_FIRST_SECOND, _AFTER_LAST_SECOND = -62_135_596_800.0, 253_402_300_800.0
_VERBS = {
    "retry": ("retries", "retried"),
    "cancel": ("cancels", "cancelled"),
    "delete": ("deletes", "deleted"),
}


class JobFilters(TypedDict, total=False):
    """The filters of :meth:`~underway.jobs.Jobs.list_jobs` and of the bulk actions.

    Every filter given must hold; ``None`` is the same as leaving a filter out. A list may
    not be empty (it would match nothing, and leaving it out would match everything).
    """

    state: JobState | str | Iterable[JobState | str] | None
    """One state or several."""
    queue: str | Iterable[str] | None
    """One queue or several."""
    worker: Worker | str | Iterable[Worker | str] | None
    """One worker or several (workers or their full names)."""
    tags: Iterable[str] | None
    """Tags the job must all have."""
    node: str | None
    """The node the job's last attempt ran (or runs) on."""
    inserted_after: datetime | float | None
    """Inserted at or after this time (an aware datetime or epoch seconds)."""
    inserted_before: datetime | float | None
    """Inserted before this time."""
    finished_after: datetime | float | None
    """Completed, discarded or cancelled at or after this time."""
    finished_before: datetime | float | None
    """Completed, discarded or cancelled before this time."""
    args: Mapping[str, Any] | None
    """A JSON object contained in the job's args (as PostgreSQL's ``@>``)."""
    meta: Mapping[str, Any] | None
    """A JSON object contained in the job's meta."""
    id: int | Iterable[int] | None
    """One job id or several."""


FILTER_NAMES = JobFilters.__optional_keys__ | JobFilters.__required_keys__
ACTION_STATES: dict[str, tuple[JobState, ...]] = {
    "retry": BULK_RETRY_STATES,
    "cancel": BULK_CANCEL_STATES,
    "delete": BULK_DELETE_STATES,
}


def job_filter(
    filters: Mapping[str, Any],
    *,
    limit: int = 100,
    offset: int = 0,
    before_id: int | None = None,
) -> JobFilter:
    """Check ``filters`` (see :class:`JobFilters`) and make them one :class:`JobFilter`.

    ``limit``, ``offset`` and ``before_id`` (the cursor of a newest-first page: only jobs
    with a smaller id) are listing's; bulk actions leave them at their defaults.

    Raises:
        ConfigError: A filter is unknown, of the wrong type, empty or out of range, or
            ``limit``, ``offset`` or ``before_id`` is not a whole number in range (named in
            the message).
    """
    unknown = sorted(set(filters) - FILTER_NAMES)
    if unknown:
        raise ConfigError(
            f"unknown job filter {', '.join(map(repr, unknown))}; "
            f"the filters are {', '.join(sorted(FILTER_NAMES))}"
        )
    given = {k: v for k, v in filters.items() if v is not None}
    where = JobFilter(
        states=_states(given["state"]) if "state" in given else (),
        queues=_names("queue", given.get("queue"), validate_queue_name),
        workers=_names("worker", given.get("worker"), _worker_name),
        tags=_tags(given["tags"]) if "tags" in given else (),
        node=_node(given["node"]) if "node" in given else None,
        inserted_after=_time("inserted_after", given.get("inserted_after")),
        inserted_before=_time("inserted_before", given.get("inserted_before")),
        finished_after=_time("finished_after", given.get("finished_after")),
        finished_before=_time("finished_before", given.get("finished_before")),
        args=_contained("args", given["args"]) if "args" in given else None,
        meta=_contained("meta", given["meta"]) if "meta" in given else None,
        ids=_ids(given["id"]) if "id" in given else (),
        before_id=None if before_id is None else _whole("before_id", before_id, 1),
        limit=_whole("limit", limit, 1),
        offset=_whole("offset", offset, 0),
    )
    for kind in ("inserted", "finished"):
        after, before = getattr(where, f"{kind}_after"), getattr(where, f"{kind}_before")
        if after is not None and before is not None and after >= before:
            raise ConfigError(f"{kind}_after must be earlier than {kind}_before")
    return where


def bulk_filter(action: str, filters: Mapping[str, Any], *, everything: object) -> JobFilter:
    """The :class:`JobFilter` of one bulk ``action`` (``retry``, ``cancel``, ``delete``).

    A filter that matches every job must be asked for: ``everything`` (the ``all=True`` of
    the API) with no filter at all; one without the other is an error.

    Raises:
        ConfigError: As :func:`job_filter`; or the states given are not the action's; or no
            filter is given without ``all=True``, or ``all=True`` comes with filters.
    """
    if not isinstance(everything, bool):
        raise ConfigError(f"all must be True or False, got {everything!r}")
    where = job_filter(filters)
    allowed = ACTION_STATES[action]
    outside = [s.value for s in where.states if s not in allowed]
    if outside:
        raise ConfigError(
            f"{action} never touches {', '.join(outside)} jobs; it {_VERBS[action][0]} jobs "
            f"that are {', '.join(s.value for s in allowed)}"
        )
    if where.empty and not everything:
        raise ConfigError(
            f"no filter given: pass all=True to {action} every job that can be, or filter "
            f"by {', '.join(sorted(FILTER_NAMES))}"
        )
    if everything and not where.empty:
        raise ConfigError("all=True means every job: give it without filters")
    return where


def bulk(engine: object, action: str, where: JobFilter) -> BulkResult:
    """Run ``action`` on the jobs matching ``where`` (checked by :func:`bulk_filter`).

    The caller wakes the queues of retried jobs and interrupts the cancelled ones that run
    in its process (:attr:`BulkResult.executing`).

    Raises:
        ConfigError: ``engine`` has no bulk actions.
    """
    if not isinstance(engine, BulkActions):
        raise ConfigError(f"{engine!r} has no bulk actions")
    if action == "retry":
        result = engine.retry_jobs(where, time.time())
    elif action == "cancel":
        result = engine.cancel_jobs(where, time.time())
    else:
        result = engine.delete_jobs(where)
    _log.info("%d job(s) %s", result.count, _VERBS[action][1])
    return result


def _states(value: object) -> tuple[JobState, ...]:
    items = _items("state", value, (str,))
    states = []
    for item in items:
        try:
            states.append(JobState(item))
        except ValueError:
            raise ConfigError(
                f"unknown job state {item!r}; the states are {', '.join(s.value for s in JobState)}"
            ) from None
    return tuple(dict.fromkeys(states))


def _names(name: str, value: object, check: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    items = _items(name, value, (str, Worker) if name == "worker" else (str,))
    return tuple(dict.fromkeys(check(item) for item in items))


def _items(name: str, value: object, kinds: tuple[type, ...]) -> list[Any]:
    """``value`` as a non-empty list of ``kinds`` (one of them alone is a list of one)."""
    if isinstance(value, kinds):
        return [value]
    if isinstance(value, Mapping | bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"{name} must be a string or a list of strings, got {value!r}")
    items = list(value)
    if not items:
        raise ConfigError(f"{name} is an empty list, which would match no job; leave it out")
    for item in items:
        if not isinstance(item, kinds):
            raise ConfigError(f"{name} must be a string or a list of strings, got {item!r}")
    return items


def _worker_name(worker: Worker | str) -> str:
    name = worker.name if isinstance(worker, Worker) else worker
    if not name:
        raise ConfigError("worker must be a worker or its full name, got ''")
    return name


def _ids(value: object) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        items: list[Any] = [value]
    elif isinstance(value, Mapping | str | bytes) or not isinstance(value, Iterable):
        raise ConfigError(f"id must be a job id or a list of job ids, got {value!r}")
    else:
        items = list(value)
    if not items:
        raise ConfigError("id is an empty list, which would match no job; leave it out")
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int) or not 0 < item <= _MAX_ID:
            raise ConfigError(f"id must be a job id (a whole number > 0), got {item!r}")
    return tuple(dict.fromkeys(items))


def _whole(name: str, value: object, least: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not least <= value <= _MAX_ID:
        raise ConfigError(f"{name} must be a whole number >= {least}, got {value!r}")
    return value


def _tags(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        raise ConfigError(f"tags must be a list of strings, got the string {value!r}")
    items = _items("tags", value, (str,))
    if not all(items):
        raise ConfigError(f"tags must be non-empty strings, got {items!r}")
    return tuple(dict.fromkeys(items))


def _node(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"node must be a node's name, got {value!r}")
    return value


def _time(name: str, value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ConfigError(f"{name} must be an aware datetime (with a timezone), got {value}")
        return value.timestamp()
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a datetime or epoch seconds, got {value!r}")
    if not _FIRST_SECOND <= value < _AFTER_LAST_SECOND:
        raise ConfigError(f"{name} must be epoch seconds of the years 1 to 9999, got {value!r}")
    return float(value)


def _contained(name: str, value: object) -> str:
    """``value`` (a non-empty JSON object) as JSON text, checked for what both engines can
    match: objects, scalars, and arrays of scalars."""
    if not isinstance(value, Mapping):
        raise ConfigError(f"{name} must be a dict (a JSON object), got {value!r}")
    if not value:
        raise ConfigError(f"{name} is an empty dict, which every job matches; leave it out")
    _check_json(name, value, name)
    return json.dumps(value, allow_nan=False)


def _check_json(name: str, value: object, where: str) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str) or '"' in key:
                raise ConfigError(
                    f"{name}: keys must be strings without a double quote, got {key!r} in {where}"
                )
            _check_json(name, item, f"{where}[{key!r}]")
    elif isinstance(value, list | tuple):
        for item in value:
            if not isinstance(item, _SCALARS):
                raise ConfigError(
                    f"{name}: a list may hold only strings, numbers, booleans and None, "
                    f"got {item!r} in {where}"
                )
            _check_json(name, item, where)
    elif not isinstance(value, _SCALARS):
        raise ConfigError(f"{name}: {where} is a {type(value).__name__}, not a JSON value")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{name}: {where} is {value}, not a JSON number")
