"""Every page of the dashboard renders, on both engines."""

from __future__ import annotations

from .conftest import Board


async def test_the_jobs_list_and_a_job_render(board: Board) -> None:
    job_id = board.add("discarded", args={"user": 7}, errors=[])
    listing = await board.get("/jobs")
    assert listing.status_code == 200
    assert f'href="/jobs/{job_id}"' in listing.text
    detail = await board.get(f"/jobs/{job_id}")
    assert detail.status_code == 200
    assert f"Job {job_id}" in detail.text


async def test_home_leads_to_a_page(board: Board) -> None:
    response = await board.get("/")
    assert response.status_code == 303
    assert response.headers["location"].startswith("/")


async def test_healthz_reports_the_database(board: Board) -> None:
    response = await board.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"ok": True, "database": "ok"}
