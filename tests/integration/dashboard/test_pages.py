"""Every page of the dashboard renders real data on both engines; user data is escaped
everywhere and long values are cut short in lists with a way to the whole value."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from underway import dashboard
from underway.jobs import Jobs

from .conftest import Board, client_of

HOSTILE = "<script>alert(1)</script>"
T0 = 1_700_000_000.0


async def test_every_state_renders_in_the_list_and_on_its_page(board: Board) -> None:
    ids = {
        state: board.add(state, args={"n": i}, attempt=1, attempted_at=T0 + 5)
        for i, state in enumerate(
            ("scheduled", "available", "executing", "retryable", "completed", "discarded")
        )
    }
    ids["cancelled"] = board.add("cancelled")
    listing = await board.get("/jobs")
    assert listing.status_code == 200
    for state, job_id in ids.items():
        assert f'href="/jobs/{job_id}"' in listing.text
        assert f'<span class="state state-{state}">{state}</span>' in listing.text
        detail = await board.get(f"/jobs/{job_id}")
        assert detail.status_code == 200, state
        assert f"Job {job_id}" in detail.text


async def test_a_job_page_shows_its_data_attempts_and_timings(board: Board) -> None:
    job_id = board.add(
        "completed",
        worker="app.reports.build",
        queue="reports",
        tags=["monthly", "pdf"],
        args={"month": "2024-05", "pages": 12},
        meta={"requested_by": "ana"},
        result={"url": "s3://bucket/r.pdf"},
        attempt=2,
        max_attempts=5,
        priority=3,
        attempted_by="node-7",
        inserted_at=T0,
        scheduled_at=T0 + 1,
        attempted_at=T0 + 4,
        completed_at=T0 + 94,
        errors=[
            {
                "attempt": 1,
                "at": T0 + 3,
                "error": "ConnectionError: reset",
                "traceback": 'Traceback (most recent call last):\n  File "r.py", line 3',
            }
        ],
    )
    page = html.unescape((await board.get(f"/jobs/{job_id}")).text)
    for text in (
        "app.reports.build",
        "reports",
        "monthly",
        '"month": "2024-05"',
        '"requested_by": "ana"',
        '"url": "s3://bucket/r.pdf"',
        "2 of 5",
        "node-7",
        "2023-11-14 22:13:20",  # inserted, UTC
        "2023-11-14 22:14:54",  # finished
        "Waited</dt><dd>3.0s",
        "Ran</dt><dd>1m 30s",
        "Attempt 1",
        "ConnectionError: reset",
        'File "r.py", line 3',
    ):
        assert text in page, text


async def test_hostile_values_are_escaped_everywhere(board: Board) -> None:
    job_id = board.add(
        "discarded",
        worker=HOSTILE,
        tags=[HOSTILE],
        args={"name": HOSTILE, HOSTILE: 1},
        meta={"note": HOSTILE},
        attempted_by=HOSTILE,
        errors=[{"attempt": 1, "at": T0, "error": HOSTILE, "traceback": HOSTILE}],
    )
    pages = [
        await board.get("/jobs"),
        await board.get(f"/jobs/{job_id}"),
        await board.get("/jobs", headers={"x-underway-live": "1"}),
        await board.get(f"/jobs/{job_id}", headers={"x-underway-live": "1"}),
        await board.get(f"/jobs?args=%7B%22name%22%3A%22{HOSTILE}%22%7D"),
        await board.get(f"/jobs?node={HOSTILE}"),
        await board.get(f"/jobs?colour={HOSTILE}"),  # a 400 quoting the field
    ]
    for response in pages:
        assert HOSTILE not in response.text
        assert "<script>alert" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages[1].text
    assert pages[6].status_code == 400


async def test_long_values_are_cut_in_the_list_and_whole_on_the_job_page(board: Board) -> None:
    long_text = "word " * 4000
    job_id = board.add(
        "discarded",
        args={"body": long_text},
        errors=[{"attempt": 1, "at": T0, "error": "E" * 500}],
    )
    listing = (await board.get("/jobs")).text
    assert long_text not in listing
    assert "…" in listing
    assert f'<a class="more" href="/jobs/{job_id}"' in listing
    assert "E" * 500 not in listing
    detail = (await board.get(f"/jobs/{job_id}")).text
    assert long_text.strip() in html.unescape(detail)
    assert "E" * 500 in detail
    assert "characters, show all</summary>" in detail  # the long one folds away


async def test_a_job_of_a_megabyte_of_args_is_listed_cut_and_shown_folded(board: Board) -> None:
    blob = "x" * 1_000_000
    job_id = board.add("discarded", args={"blob": blob})
    listing = await board.get("/jobs")
    assert listing.status_code == 200
    assert len(listing.text) < 20_000  # its args cut to a line
    assert f'<a class="more" href="/jobs/{job_id}"' in listing.text
    for headers in ({}, {"x-underway-live": "1"}):
        detail = await board.get(f"/jobs/{job_id}", headers=headers)
        assert detail.status_code == 200
        assert blob in detail.text
        assert re.search(r"<summary>args: 1\d{6} characters, show all</summary>", detail.text)


@pytest.mark.parametrize(
    "columns",
    [
        {"args": "[1, 2]", "meta": "[1]", "tags": '{"a": 1}', "errors": "[1, 2]"},
        {"args": '"text"', "meta": "3", "tags": '"t"', "errors": '{"error": 1}', "result": "[]"},
        {"args": "{not json", "meta": "[1", "tags": "x", "errors": "y", "result": "z"},
    ],
    ids=["json-of-other-shapes", "json-scalars", "not-json"],
)
async def test_a_job_whose_stored_columns_are_not_what_they_should_be_is_shown(
    board: Board, columns: dict[str, str]
) -> None:
    if board.database.postgres and columns["args"] == "{not json":
        pytest.skip("PostgreSQL's jsonb columns hold only JSON")
    job_id = board.add("discarded", **columns)
    listing = await board.get("/jobs")
    assert listing.status_code == 200
    assert f'href="/jobs/{job_id}"' in listing.text
    detail = await board.get(f"/jobs/{job_id}")
    assert detail.status_code == 200
    assert f"Job {job_id}" in detail.text
    if "not json" in columns["args"]:
        assert "__undecodable__" in detail.text
        assert "{not json" in detail.text
    retried = await board.post(f"/jobs/{job_id}/retry")
    assert retried.status_code == 303
    assert (await board.get(f"/jobs/{job_id}")).status_code == 200


async def test_a_live_update_gets_the_live_part_only(board: Board) -> None:
    job_id = board.add("completed")
    live = await board.get("/jobs", headers={"x-underway-live": "1"})
    assert live.status_code == 200
    assert "<html" not in live.text
    assert '<form class="filters"' not in live.text
    assert f'href="/jobs/{job_id}"' in live.text
    assert "<table" in live.text
    one = await board.get(f"/jobs/{job_id}", headers={"x-underway-live": "1"})
    assert "<html" not in one.text
    assert f"Job {job_id}" in one.text
    page = (await board.get("/jobs")).text
    assert 'data-live-interval="5.0"' in page
    assert "<div data-live>" in page


async def test_the_navigation_shows_the_pages_installed(board: Board) -> None:
    page = (await board.get("/jobs")).text
    nav = re.search(r'<nav aria-label="Sections">(.*?)</nav>', page, re.S)
    assert nav is not None
    assert '<a href="/jobs" aria-current="page">Jobs</a>' in nav.group(1)


async def test_home_leads_to_the_first_page_installed(board: Board) -> None:
    response = await board.get("/")
    assert response.status_code == 303
    assert response.headers["location"] in {"/queues", "/jobs"}


async def test_the_static_files_are_served(board: Board) -> None:
    css = await board.get("/static/dashboard.css")
    assert css.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    js = await board.get("/static/dashboard.js")
    assert js.status_code == 200
    assert "X-Underway-Live" in js.text


async def test_healthz_reports_the_database(board: Board) -> None:
    response = await board.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["ok"] is True
    assert body["database"]["reachable"] is True
    assert body["migrations"]["pending"] == []
    assert [c["name"] for c in body["checks"]] == ["database", "migrations"]


async def test_healthz_reports_a_node_without_a_heartbeat(board: Board) -> None:
    response = await board.get("/healthz", params={"node": "web-1"})
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["node"]["name"] == "web-1"
    assert body["node"]["alive"] is False


@pytest.mark.parametrize(
    ("query", "reason"),
    [("node=", "node must be"), ("colour=red", "unknown parameter 'colour'")],
)
async def test_healthz_refuses_bad_parameters(board: Board, query: str, reason: str) -> None:
    response = await board.get(f"/healthz?{query}")
    assert response.status_code == 400
    assert response.json()["ok"] is False
    assert reason in response.json()["error"]


async def test_healthz_reports_a_database_it_cannot_reach(tmp_path: Path) -> None:
    jobs = Jobs(f"sqlite:///{tmp_path / 'nowhere' / 'jobs.db'}")
    async with client_of(dashboard.app(jobs, auth=dashboard.allow_all)) as client:
        response = await client.get("/healthz")
    assert response.status_code == 503
    body = response.json()
    assert body["ok"] is False
    assert body["database"]["reachable"] is False
    assert "no SQLite database" in body["database"]["error"]
    assert not (tmp_path / "nowhere").exists()


@pytest.fixture
def no_metrics(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)


async def test_metrics_are_served_once_recorded(board: Board, no_metrics: None) -> None:
    from underway import prometheus

    missing = await board.get("/metrics")
    assert missing.status_code == 404
    assert "records no underway metrics" in missing.text
    metrics = prometheus.instrument()
    try:
        served = await board.get("/metrics")
    finally:
        metrics.detach()
    assert served.status_code == 200
    assert served.headers["content-type"] == prometheus.CONTENT_TYPE
    assert "# TYPE underway_jobs_total counter" in served.text
    assert (await board.client.get("/metrics")).status_code == 401


async def test_the_title_is_the_apps(jobs: Jobs) -> None:
    app = dashboard.app(jobs, auth=dashboard.allow_all, title="Billing <jobs>")
    async with client_of(app) as client:
        page = (await client.get("/jobs")).text
    assert "<title>Jobs · Billing &lt;jobs&gt;</title>" in page
    assert '<a class="brand" href="/">Billing &lt;jobs&gt;</a>' in page
