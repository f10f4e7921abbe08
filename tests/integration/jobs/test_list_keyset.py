"""Listing by pages of ids (``before_id``) and the ``id`` filter, on both engines."""

from __future__ import annotations

from typing import Any

import pytest

from underway.errors import ConfigError
from underway.jobs import Jobs

from ..conftest import Database, MakeJobs


def _add(
    database: Database, count: int, *, state: str = "completed", queue: str = "q"
) -> list[int]:
    return [database.add_job(state, queue=queue, worker="w") for _ in range(count)]


async def _pages(jobs: Jobs, size: int, **filters: Any) -> list[list[int]]:
    pages: list[list[int]] = []
    before: int | None = None
    while True:
        found = await jobs.list_jobs(limit=size, before_id=before, **filters)
        if not found:
            return pages
        pages.append([j.id for j in found])
        before = found[-1].id


async def test_pages_by_id_cover_every_job_once_newest_first(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    await jobs.list_jobs(limit=1)  # creates the tables
    ids = _add(database, 23)
    pages = await _pages(jobs, 5)
    assert [len(p) for p in pages] == [5, 5, 5, 5, 3]
    assert [i for p in pages for i in p] == sorted(ids, reverse=True)


async def test_jobs_inserted_while_paging_are_neither_skipped_nor_repeated(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    await jobs.list_jobs(limit=1)
    ids = _add(database, 12)
    seen: list[int] = []
    first = await jobs.list_jobs(limit=4)
    seen += [j.id for j in first]
    before = first[-1].id
    while True:
        _add(database, 3)  # newer jobs arrive between pages
        found = await jobs.list_jobs(limit=4, before_id=before)
        if not found:
            break
        seen += [j.id for j in found]
        before = found[-1].id
    assert seen == sorted(ids, reverse=True)


async def test_before_id_combines_with_filters(make_jobs: MakeJobs, database: Database) -> None:
    jobs = make_jobs()
    await jobs.list_jobs(limit=1)
    mine = []
    for _ in range(6):
        mine += _add(database, 1, queue="mine")
        _add(database, 1, queue="other", state="discarded")
    pages = await _pages(jobs, 4, queue="mine", state="completed")
    assert [i for p in pages for i in p] == sorted(mine, reverse=True)
    assert await jobs.list_jobs(before_id=min(mine), queue="mine") == []


async def test_the_id_filter_lists_and_acts_on_those_jobs_only(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    await jobs.list_jobs(limit=1)
    ids = _add(database, 5)
    found = await jobs.list_jobs(id=[ids[1], ids[3]])
    assert [j.id for j in found] == [ids[3], ids[1]]
    assert [j.id for j in jobs.list_jobs_sync(id=ids[2])] == [ids[2]]
    assert await jobs.delete_all_jobs(id=[ids[0], ids[4], 10**12]) == 2
    assert sorted(j.id for j in await jobs.list_jobs()) == ids[1:4]
    assert await jobs.retry_all_jobs(id=ids[1]) == 1
    assert (await jobs.get_job(ids[1])).state.value == "available"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"id": []}, "id is an empty list"),
        ({"id": 0}, r"id must be a job id \(a whole number > 0\), got 0"),
        ({"id": True}, "id must be a job id or a list of job ids, got True"),
        ({"id": "7"}, "id must be a job id or a list of job ids, got '7'"),
        ({"id": [1, "2"]}, r"id must be a job id \(a whole number > 0\), got '2'"),
        ({"id": [2**63]}, "id must be a job id"),
        ({"before_id": 0}, "before_id must be a whole number >= 1, got 0"),
        ({"before_id": 1.5}, "before_id must be a whole number >= 1, got 1.5"),
        ({"before_id": 2**64}, "before_id must be a whole number >= 1"),
        ({"limit": 0}, "limit must be a whole number >= 1, got 0"),
        ({"offset": -1}, "offset must be a whole number >= 0, got -1"),
    ],
)
async def test_bad_ids_and_cursors_are_refused(
    make_jobs: MakeJobs, kwargs: dict[str, Any], message: str
) -> None:
    jobs = make_jobs()
    with pytest.raises(ConfigError, match=message):
        await jobs.list_jobs(**kwargs)


async def test_an_id_filter_is_a_filter_for_the_bulk_actions(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    with pytest.raises(ConfigError, match="all=True means every job: give it without filters"):
        await jobs.delete_all_jobs(all=True, id=1)
