"""Pairing the rows an insert returned with the jobs that were asked for (every engine)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any, TypeVar

from underway.jobs.job import Job, JobSpec, JobState, make_job, to_datetime

__all__ = ["chunks", "match_inserted"]

T = TypeVar("T")


def chunks(items: Sequence[T], size: int) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for i in range(0, len(items), size):
        yield items[i : i + size]


def match_inserted(
    specs: Sequence[JobSpec],
    returned: list[tuple[int, str | None]],
    existing: dict[str, Job[Any]],
    now: float,
) -> list[Job[Any]]:
    """Pair each spec with its new id, or with the unique job it conflicted with.

    Rows come back from one insert with ids rising in insertion order; a unique spec whose
    key is not next in that order was skipped as a duplicate.
    """
    out: list[Job[Any]] = []
    new_by_key: dict[str, Job[Any]] = {}
    pos = 0
    inserted_at = to_datetime(now)  # datetimes are immutable: one object serves every job
    for s in specs:
        if pos < len(returned) and returned[pos][1] == s.unique_key:
            at = now if s.scheduled_at is None else s.scheduled_at
            job = make_job(
                returned[pos][0],
                JobState.SCHEDULED if at > now else JobState.AVAILABLE,
                s.queue,
                s.worker,
                s.args,
                {} if s.meta_json == "{}" else json.loads(s.meta_json),
                s.tags,
                (),
                0,
                s.max_attempts,
                s.priority,
                inserted_at,
                inserted_at if at == now else to_datetime(at),
                None,
                None,
                None,
                None,
                None,
                None,
                False,
            )
            out.append(job)
            if s.unique_key is not None:
                new_by_key[s.unique_key] = job
            pos += 1
        else:
            assert s.unique_key is not None, "a job without a unique key was not inserted"
            earlier = new_by_key.get(s.unique_key)
            out.append(replace(earlier, conflict=True) if earlier else existing[s.unique_key])
    return out
