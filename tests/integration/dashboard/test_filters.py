"""The jobs list's filters on both engines, and bad input: a 400 with the reason, a 404 for
what does not exist, never a 500."""

from __future__ import annotations

import re

import pytest

from .conftest import Board

T0 = 1_700_000_000.0


def listed(page: str) -> list[int]:
    """The ids of the jobs a list page shows, in order."""
    return [int(i) for i in re.findall(r'<td><a href="/jobs/(\d+)">', page)]


@pytest.fixture
def jobs_by_name(board: Board) -> dict[str, int]:
    return {
        "a": board.add(
            "completed",
            queue="mail",
            worker="app.send",
            tags=["x", "y"],
            args={"user": 1, "kind": "welcome"},
            meta={"source": "api"},
            attempted_by="node-1",
            inserted_at=T0 + 10,
            completed_at=T0 + 20,
        ),
        "b": board.add(
            "discarded",
            queue="mail",
            worker="app.send",
            tags=["x"],
            args={"user": 2},
            meta={"source": "cron"},
            attempted_by="node-2",
            inserted_at=T0 + 30,
            discarded_at=T0 + 40,
        ),
        "c": board.add(
            "available",
            queue="default",
            worker="app.bill",
            args={"user": 1},
            inserted_at=T0 + 50,
        ),
        "d": board.add(
            "retryable",
            queue="default",
            worker="app.bill",
            tags=["y"],
            args={"user": 3, "items": [1, 2]},
            inserted_at=T0 + 60,
            errors=[{"attempt": 1, "at": T0 + 61, "error": "timeout"}],
        ),
    }


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", "dcba"),
        ("state=completed", "a"),
        ("state=completed&state=discarded", "ba"),
        ("state=completed,retryable", "da"),
        ("queue=mail", "ba"),
        ("queue=default,mail", "dcba"),
        ("worker=app.bill", "dc"),
        ("tags=x", "ba"),
        ("tags=x,y", "a"),
        ("node=node-2", "b"),
        ("inserted_after=2023-11-14T22:13:45", "dcb"),  # T0 + 25, UTC
        ("inserted_after=2023-11-14T23:13:45%2B01:00", "dcb"),  # the same moment
        ("inserted_before=2023-11-14T22:13:45", "a"),
        ("finished_after=2023-11-14T22:13:45", "b"),
        ("finished_before=2023-11-14T22:13:45", "a"),
        ("args=%7B%22user%22%3A+1%7D", "ca"),  # {"user": 1}
        ("args=%7B%22items%22%3A+%5B2%5D%7D", "d"),  # {"items": [2]}
        ("meta=%7B%22source%22%3A+%22cron%22%7D", "b"),
        ("queue=mail&args=%7B%22user%22%3A+1%7D", "a"),
        ("queue=&worker=&state=discarded", "b"),  # blank fields are no filter
        ("queue=nowhere", ""),
    ],
)
async def test_filters(
    board: Board, jobs_by_name: dict[str, int], query: str, expected: str
) -> None:
    response = await board.get(f"/jobs?{query}")
    assert response.status_code == 200, response.text
    assert listed(response.text) == [jobs_by_name[name] for name in expected]


async def test_the_id_filter_finds_one_job(board: Board, jobs_by_name: dict[str, int]) -> None:
    page = await board.get(f"/jobs?id={jobs_by_name['b']}")
    assert listed(page.text) == [jobs_by_name["b"]]


async def test_the_form_keeps_the_filters_given(board: Board, jobs_by_name: dict[str, int]) -> None:
    page = (await board.get("/jobs?state=discarded&queue=mail&args=%7B%22user%22%3A2%7D")).text
    assert 'value="discarded" checked' in page
    assert 'name="queue" value="mail"' in page
    assert 'name="args" value="{&#34;user&#34;:2}"' in page
    assert "No job matches." not in page


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ("state=bogus", "unknown job state &#39;bogus&#39;"),
        ("colour=red", "unknown filter &#39;colour&#39;; the filters are"),
        ("args=%7Bnot+json", "args is not valid JSON"),
        ("args=%5B1%2C2%5D", "args must be a JSON object"),
        ("meta=42", "meta must be a JSON object"),
        ("args=%7B%7D", "args is an empty dict"),
        ("args=%7B%22x%22%3A+NaN%7D", "not a JSON number"),
        ("args=%7B%22x%22%3A+%7B%22y%22%3A+%5B%7B%7D%5D%7D%7D", "a list may hold only"),
        ("inserted_after=yesterday", "inserted_after: &#39;yesterday&#39; is not a date and time"),
        ("finished_before=2024-13-01", "finished_before: &#39;2024-13-01&#39; is not a date"),
        (
            "inserted_after=2024-02-01&inserted_before=2024-01-01",
            "inserted_after must be earlier than inserted_before",
        ),
        ("id=abc", "&#39;abc&#39; is not a job id"),
        ("id=-3", "is not a job id"),
        ("id=99999999999999999999", "is not a job id"),
        ("id=%C2%B2", "&#39;²&#39; is not a job id"),  # a digit int() does not read
        ("id=" + "9" * 5000, "is not a job id"),  # past int()'s 4300 digits
        ("before=%C2%B2", "before must be a job id"),
        ("before=" + "9" * 5000, "before must be a job id"),
        ("before=0", "before must be a job id"),
        ("before=x", "before must be a job id"),
        ("node=a&node=b", "node is given 2 times; give it once"),
        ("queue=bad%20name", "queue name must be"),
        ("args=" + "%5B" * 5000 + "%5D" * 5000, "nested too deeply"),
    ],
)
async def test_bad_filters_are_a_400_with_the_reason(board: Board, query: str, reason: str) -> None:
    response = await board.get(f"/jobs?{query}")
    assert response.status_code == 400, response.text[-500:]
    assert "400 · Bad request" in response.text
    assert reason in response.text


@pytest.mark.parametrize(
    ("path", "reason"),
    [
        ("/jobs/424242", "there is no job 424242"),
        ("/jobs/abc", "&#39;abc&#39; is not a job id"),
        ("/jobs/0", "there is no job 0"),
        ("/jobs/99999999999999999999", "there is no job 99999999999999999999"),
        ("/jobs/%C2%B2", "&#39;²&#39; is not a job id"),
        ("/jobs/" + "9" * 5000, "there is no job 9999"),
        ("/nowhere", "no page has this address"),
        ("/static/nothing.css", "no page has this address"),
    ],
)
async def test_what_does_not_exist_is_a_404(board: Board, path: str, reason: str) -> None:
    response = await board.get(path)
    assert response.status_code == 404
    assert reason in response.text
    assert '<a class="brand" href="/">' in response.text
    assert 'href="/static/dashboard.css"' in response.text
