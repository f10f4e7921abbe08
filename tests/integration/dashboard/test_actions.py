"""The dashboard's actions on both engines: retry, cancel and delete of one job, of the
selected jobs and of every job matching the filters (with a confirmation when there is no
filter), their counts, flashes and telemetry events."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from underway import _telemetry as telemetry
from underway.jobs import Jobs

from .conftest import Board

Event = tuple[str, dict[str, Any], dict[str, Any]]


@pytest.fixture
def events() -> Iterator[list[Event]]:
    seen: list[Event] = []

    def record(event: str, measurements: Mapping[str, Any], metadata: Mapping[str, Any]) -> None:
        seen.append((event, dict(measurements), dict(metadata)))

    token = telemetry.attach(record, prefix="dashboard.")
    yield seen
    telemetry.detach(token)


def states(jobs: Jobs, *ids: int) -> list[str | None]:
    found = []
    for job_id in ids:
        job = jobs.get_job_sync(job_id)
        found.append(None if job is None else job.state.value)
    return found


async def flash_after(board: Board, response: Any) -> str:
    """The flash message the page a redirect leads to shows."""
    assert response.status_code == 303, response.text
    page = await board.get(response.headers["location"])
    assert page.status_code == 200
    found = re.search(r'<div class="flash flash-(\w+)" role="status">([^<]*)</div>', page.text)
    assert found, "no flash message on the page"
    again = await board.get(response.headers["location"])
    assert 'class="flash' not in again.text  # shown once
    return f"{found.group(1)}: {found.group(2)}"


async def test_retry_one_job(board: Board, events: list[Event]) -> None:
    job_id = board.add("discarded")
    response = await board.post(f"/jobs/{job_id}/retry")
    assert response.headers["location"] == f"/jobs/{job_id}"
    assert await flash_after(board, response) == f"ok: job {job_id} retried"
    assert states(board.jobs, job_id) == ["available"]
    assert events == [
        (
            "dashboard.action",
            {"count": 1},
            {"action": "retry", "target": "job", "filters": {}, "who": "token", "ids": [job_id]},
        )
    ]


async def test_a_retried_job_claimed_at_once_by_a_node_still_counts_as_retried(
    board: Board, events: list[Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A node of another process claims a retried job as soon as it is available, often
    # before the dashboard could read the job back: the retry happened all the same.
    job_id = board.add("discarded")
    engine = board.jobs.engine
    read = engine.get_job
    table = f"{board.database.schema}.underway_jobs" if board.database.postgres else "underway_jobs"

    def claimed_before_any_read(wanted: int) -> Any:
        board.database.sql(
            f"UPDATE {table} SET state = 'executing', attempt = attempt + 1, "
            "attempted_by = 'other-node' WHERE state = 'available'"
        )
        return read(wanted)

    monkeypatch.setattr(engine, "get_job", claimed_before_any_read)
    response = await board.post(f"/jobs/{job_id}/retry")
    assert await flash_after(board, response) == f"ok: job {job_id} retried"
    assert states(board.jobs, job_id) == ["executing"]
    assert events[0][1] == {"count": 1}


async def test_cancel_one_job(board: Board, events: list[Event]) -> None:
    job_id = board.add("scheduled")
    response = await board.post(f"/jobs/{job_id}/cancel")
    assert await flash_after(board, response) == f"ok: job {job_id} cancelled"
    assert states(board.jobs, job_id) == ["cancelled"]
    assert events[0][2]["action"] == "cancel"


async def test_delete_one_job_leads_back_to_the_list(board: Board, events: list[Event]) -> None:
    job_id = board.add("completed")
    response = await board.post(f"/jobs/{job_id}/delete")
    assert response.headers["location"] == "/jobs"
    assert await flash_after(board, response) == f"ok: job {job_id} deleted"
    assert states(board.jobs, job_id) == [None]
    assert (await board.get(f"/jobs/{job_id}")).status_code == 404
    assert events[0][1] == {"count": 1}


@pytest.mark.parametrize(
    ("state", "action", "message"),
    [
        ("executing", "retry", "is executing: retry is for jobs that are scheduled"),
        ("completed", "cancel", "is completed: cancel is for jobs that are scheduled"),
        ("available", "delete", "is available: delete is for jobs that are completed"),
    ],
)
async def test_an_action_the_state_does_not_allow_changes_nothing(
    board: Board, events: list[Event], state: str, action: str, message: str
) -> None:
    job_id = board.add(state)
    response = await board.post(f"/jobs/{job_id}/{action}")
    flash = await flash_after(board, response)
    assert flash.startswith("error: ")
    assert message in flash
    assert states(board.jobs, job_id) == [state]
    assert events[0][1] == {"count": 0}


async def test_the_detail_page_offers_only_the_actions_of_the_state(board: Board) -> None:
    finished = board.add("completed")
    waiting = board.add("scheduled")
    page = (await board.get(f"/jobs/{finished}")).text
    assert f"/jobs/{finished}/retry" in page
    assert f"/jobs/{finished}/delete" in page
    assert f"/jobs/{finished}/cancel" not in page
    page = (await board.get(f"/jobs/{waiting}")).text
    assert f"/jobs/{waiting}/cancel" in page
    assert f"/jobs/{waiting}/delete" not in page


async def test_an_action_on_a_missing_job_or_an_unknown_action_is_a_404(board: Board) -> None:
    job_id = board.add("completed")
    assert (await board.post("/jobs/999999/retry")).status_code == 404
    assert (await board.post(f"/jobs/{job_id}/explode")).status_code == 404
    assert (await board.post("/jobs/abc/retry")).status_code == 404
    assert states(board.jobs, job_id) == ["completed"]


async def test_bulk_actions_on_the_selected_jobs(board: Board, events: list[Event]) -> None:
    discarded = [board.add("discarded") for _ in range(3)]
    running = board.add("executing")
    untouched = board.add("discarded")
    response = await board.post(
        "/jobs/actions",
        [("do", "retry selected"), *(("id", str(i)) for i in [*discarded, running])],
    )
    assert await flash_after(board, response) == "ok: 3 jobs retried of 4 selected"
    assert states(board.jobs, *discarded, running, untouched) == [
        *["available"] * 3,
        "executing",
        "discarded",
    ]
    assert events[-1][1] == {"count": 3}
    assert events[-1][2]["target"] == "selected"
    assert events[-1][2]["ids"] == [*discarded, running]

    response = await board.post(
        "/jobs/actions", [("do", "cancel selected"), ("id", str(discarded[0]))]
    )
    assert await flash_after(board, response) == "ok: 1 job cancelled of 1 selected"
    response = await board.post(
        "/jobs/actions",
        [("do", "delete selected"), ("id", str(discarded[0])), ("id", str(running))],
    )
    assert await flash_after(board, response) == "ok: 1 job deleted of 2 selected"
    assert states(board.jobs, discarded[0], running) == [None, "executing"]


async def test_no_job_selected_is_said_so(board: Board) -> None:
    job_id = board.add("discarded")
    response = await board.post("/jobs/actions", {"do": "retry selected"})
    assert await flash_after(board, response) == "error: no job selected to retry"
    assert states(board.jobs, job_id) == ["discarded"]


async def test_bulk_actions_on_every_job_matching_the_filters(
    board: Board, events: list[Event]
) -> None:
    mail = [board.add("discarded", queue="mail") for _ in range(4)]
    other = board.add("discarded", queue="default")
    response = await board.post(
        "/jobs/actions", {"do": "retry matching", "filters": "queue=mail&state=discarded"}
    )
    assert response.headers["location"] == "/jobs?state=discarded&queue=mail"
    assert await flash_after(board, response) == "ok: 4 jobs retried (matching the filters)"
    assert states(board.jobs, *mail, other) == [*["available"] * 4, "discarded"]
    assert events[-1][2]["target"] == "filter"
    assert events[-1][2]["filters"] == {"state": "discarded", "queue": "mail"}
    assert events[-1][1] == {"count": 4}


async def test_an_action_on_every_job_asks_first(board: Board, events: list[Event]) -> None:
    done = [board.add("completed") for _ in range(3)]
    waiting = board.add("available")
    asked = await board.post("/jobs/actions", {"do": "delete matching", "filters": ""})
    assert asked.status_code == 200
    assert "Delete every job?" in asked.text
    assert 'name="confirm" value="yes"' in asked.text
    assert states(board.jobs, *done, waiting) == [*["completed"] * 3, "available"]
    assert events == []
    confirmed = await board.post(
        "/jobs/actions", {"do": "delete matching", "filters": "", "confirm": "yes"}
    )
    assert await flash_after(board, confirmed) == "ok: 3 jobs deleted (in all)"
    assert states(board.jobs, *done, waiting) == [None, None, None, "available"]
    assert events[-1][2]["filters"] == {}


async def test_a_bulk_action_outside_its_states_is_a_400(board: Board) -> None:
    job_id = board.add("available")
    response = await board.post(
        "/jobs/actions", {"do": "delete matching", "filters": "state=available"}
    )
    assert response.status_code == 400
    assert "delete never touches available jobs" in response.text
    assert states(board.jobs, job_id) == ["available"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"do": "explode selected"}, "do must be &#39;&lt;action&gt; selected&#39;"),
        ({"do": "retry"}, "do must be"),
        ({}, "do must be"),
        ({"do": "retry selected", "id": "abc"}, "&#39;abc&#39; is not a job id"),
        ({"do": "retry selected", "id": "0"}, "is not a job id"),
        ({"do": "retry selected", "id": "²"}, "&#39;²&#39; is not a job id"),
        ({"do": "retry selected", "id": "9" * 5000}, "is not a job id"),
        ({"do": "retry matching", "filters": "state=nope"}, "unknown job state"),
        ({"do": "retry matching", "filters": "colour=red"}, "unknown filter &#39;colour&#39;"),
        ({"do": "retry matching", "extra": "1"}, "unknown field &#39;extra&#39;"),
    ],
)
async def test_a_bad_bulk_form_is_a_400_and_changes_nothing(
    board: Board, events: list[Event], fields: dict[str, str], message: str
) -> None:
    job_id = board.add("discarded")
    response = await board.post("/jobs/actions", fields)
    assert response.status_code == 400
    assert message in response.text
    assert states(board.jobs, job_id) == ["discarded"]
    assert events == []


async def test_the_list_offers_bulk_actions_with_the_filters(board: Board) -> None:
    board.add("discarded", queue="mail")
    page = (await board.get("/jobs?queue=mail&state=discarded")).text
    assert 'name="filters" value="state=discarded&amp;queue=mail"' in page
    assert 'value="retry selected"' in page
    assert 'value="delete matching"' in page
    assert 'name="id" value="' in page
