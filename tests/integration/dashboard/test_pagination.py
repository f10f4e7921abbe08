"""The jobs list a page at a time by id, on both engines: no job skipped or repeated while
new ones arrive, filters kept from page to page, and the same few statements per page
whether the table holds a hundred jobs or a hundred thousand, on page 1 or page 5."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from underway import dashboard
from underway.jobs import Jobs

from ..conftest import Database
from .conftest import BEARER, Board, client_of

T0 = 1_700_000_000.0


def listed(page: str) -> list[int]:
    return [int(i) for i in re.findall(r'<td><a href="/jobs/(\d+)">', page)]


def older_link(page: str) -> str | None:
    found = re.search(r'href="([^"]+)" rel="next"', page)
    return found.group(1).replace("&amp;", "&") if found else None


async def test_paging_by_id_skips_and_repeats_nothing_while_jobs_arrive(
    board: Board, jobs: Jobs
) -> None:
    first = [board.add("completed") for _ in range(11)]
    app = dashboard.app(jobs, auth=dashboard.allow_all, page_size=3)
    seen: list[int] = []
    address: str | None = "/jobs"
    pages = 0
    async with client_of(app) as client:
        while address is not None:
            page = (await client.get(address)).text
            seen += listed(page)
            pages += 1
            board.add("completed")  # newer jobs keep arriving
            address = older_link(page)
    assert seen == sorted(first, reverse=True)
    assert pages == 4


async def test_the_pages_keep_the_filters(board: Board, jobs: Jobs) -> None:
    mail = [board.add("discarded", queue="mail") for _ in range(5)]
    for _ in range(5):
        board.add("discarded", queue="default")
    app = dashboard.app(jobs, auth=dashboard.allow_all, page_size=2)
    async with client_of(app) as client:
        page = (await client.get("/jobs?queue=mail")).text
        assert listed(page) == mail[::-1][:2]
        assert "Newest" not in page  # the first page
        link = older_link(page)
        assert link == f"/jobs?queue=mail&before={mail[3]}"
        page = (await client.get(link)).text
        assert listed(page) == mail[::-1][2:4]
        assert '<a href="/jobs?queue=mail">« Newest</a>' in page
        last_link = older_link(page)
        assert last_link is not None
        last = (await client.get(last_link)).text
        assert listed(last) == [mail[0]]
        assert older_link(last) is None


# -- a fixed number of statements per page ---------------------------------------------------


def fill(database: Database, count: int) -> None:
    """Insert ``count`` completed jobs in one statement."""
    if database.postgres:
        database.sql(
            "INSERT INTO underway_jobs (state, queue, worker, args, attempt, inserted_at,"
            " scheduled_at, attempted_at, completed_at)"
            " SELECT 'completed', 'default', 'app.work', jsonb_build_object('n', i), 1,"
            " to_timestamp(?), to_timestamp(?), to_timestamp(?), to_timestamp(?)"
            " FROM generate_series(1, ?::int) AS i",
            T0, T0, T0 + 1, T0 + 2, count,
        )  # fmt: skip
        database.sql("ANALYZE underway_jobs")
        return
    database.sql(
        "INSERT INTO underway_jobs (state, queue, worker, args, attempt, inserted_at,"
        " scheduled_at, attempted_at, completed_at)"
        " WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)"
        " SELECT 'completed', 'default', 'app.work', json_object('n', i), 1, ?, ?, ?, ?"
        " FROM n",
        count, T0, T0, T0 + 1, T0 + 2,
    )  # fmt: skip


@pytest.fixture
def statements(
    jobs: Jobs, database: Database, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[[], list[str]]]:
    """Records every statement the engine of ``jobs`` sends; the fixture's value reads and
    clears the record."""
    sent: list[str] = []
    if database.postgres:
        real = psycopg.Cursor.execute

        def execute(cursor: Any, query: Any, *args: Any, **kwargs: Any) -> Any:
            sent.append(str(query))
            return real(cursor, query, *args, **kwargs)

        monkeypatch.setattr(psycopg.Cursor, "execute", execute)
    else:
        conn = jobs.engine._db.connect()  # type: ignore[attr-defined]
        conn.set_trace_callback(sent.append)

    def taken() -> list[str]:
        found = list(sent)
        sent.clear()
        return found

    yield taken
    if not database.postgres:
        conn.set_trace_callback(None)


@pytest.mark.slow
async def test_the_list_issues_the_same_statements_on_any_page_of_any_history(
    jobs: Jobs, database: Database, statements: Callable[[], list[str]]
) -> None:
    app = dashboard.app(jobs, auth=dashboard.allow_all, page_size=10)
    counts: dict[tuple[int, int], int] = {}
    async with client_of(app) as client:
        await client.get("/jobs")  # connections opened and set up
        for total in (100, 100_000):
            fill(database, total - (100 if total > 100 else 0))
            top = jobs.list_jobs_sync(limit=1)[0].id
            statements()
            address: str | None = "/jobs"
            for number in range(1, 6):
                assert address is not None
                page = await client.get(address, headers=BEARER)
                assert page.status_code == 200
                sent = statements()
                counts[(total, number)] = len(sent)
                assert sent, "no statement was recorded"
                shown = list(range(top - 10 * (number - 1), top - 10 * number, -1))
                assert listed(page.text) == shown
                address = older_link(page.text)
    assert set(counts.values()) == {1}, counts  # the listing, nothing else


@pytest.mark.slow
async def test_filters_no_index_serves_still_answer_on_a_long_history(
    jobs: Jobs, database: Database
) -> None:
    fill(database, 100_000)
    app = dashboard.app(jobs, auth=dashboard.allow_all, page_size=10)
    top = jobs.list_jobs_sync(limit=1)[0].id
    async with client_of(app) as client:
        for query, count in (
            ("args=%7B%22n%22%3A+99990%7D", 1),  # a value of the args: no index
            ("args=%7B%22missing%22%3A+1%7D", 0),  # matching none reads every row
            ("meta=%7B%22a%22%3A+1%7D", 0),
            ("node=elsewhere", 0),
            ("tags=a", 0),
            ("worker=app.work&args=%7B%22n%22%3A+5%7D", 1),
            ("finished_after=2030-01-01", 0),
            ("args=%7B%22n%22%3A+7%7D&before=" + str(top), 1),
        ):
            page = await client.get(f"/jobs?{query}")
            assert page.status_code == 200, query
            assert len(listed(page.text)) == count, query
