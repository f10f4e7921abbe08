"""The dashboard mounted under a prefix (a Starlette/FastAPI ``Mount``, or a server's
``root_path`` behind a proxy): every link, form, redirect and cookie keeps the prefix."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.types import Receive, Scope, Send

from underway import dashboard
from underway.jobs import Jobs

from .conftest import BEARER, TOKEN, Board, client_of, csrf_of

PREFIX = "/ops/underway"
_LINK_RE = re.compile(r'(?:href|src|action)="([^"]*)"')


def links(page: str) -> list[str]:
    """Every address a page links to, loads, or posts to."""
    return _LINK_RE.findall(page)


def assert_prefixed(page: str, prefix: str) -> None:
    found = links(page)
    assert found, "the page has no link"
    for link in found:
        assert link.startswith(prefix + "/"), f"{link!r} leaves {prefix}"


@pytest.fixture
async def mounted(jobs: Jobs, board: Board) -> AsyncIterator[httpx.AsyncClient]:
    """A host application with its own route and the dashboard under :data:`PREFIX`."""

    async def own(request: object) -> PlainTextResponse:
        return PlainTextResponse("the application's own page")

    host = Starlette(
        routes=[
            Route("/", own),
            Mount(PREFIX, app=dashboard.app(jobs, auth=dashboard.token_auth(TOKEN))),
        ]
    )
    async with client_of(host) as client:
        yield client


async def test_every_link_of_every_page_keeps_the_prefix(
    board: Board, mounted: httpx.AsyncClient
) -> None:
    job_id = board.add("discarded", errors=[{"attempt": 1, "at": 1.0, "error": "boom"}])
    for _ in range(3):
        board.add("completed")
    assert (await mounted.get("/")).text == "the application's own page"
    page = await mounted.get(f"{PREFIX}/jobs?state=completed,discarded", headers=BEARER)
    assert page.status_code == 200
    assert_prefixed(page.text, PREFIX)
    assert f'href="{PREFIX}/static/dashboard.css"' in page.text
    assert f'action="{PREFIX}/jobs/actions"' in page.text
    detail = await mounted.get(f"{PREFIX}/jobs/{job_id}", headers=BEARER)
    assert_prefixed(detail.text, PREFIX)
    assert f'action="{PREFIX}/jobs/{job_id}/retry"' in detail.text
    nav = re.search(r'<nav aria-label="Sections">(.*?)</nav>', page.text, re.S)
    assert nav is not None
    for section in links(nav.group(1)):  # every page installed
        other = await mounted.get(section, headers=BEARER)
        assert other.status_code == 200, section
        assert_prefixed(other.text, PREFIX)
    missing = await mounted.get(f"{PREFIX}/jobs/999999", headers=BEARER)
    assert missing.status_code == 404
    assert_prefixed(missing.text, PREFIX)
    css = await mounted.get(f"{PREFIX}/static/dashboard.css", headers=BEARER)
    assert css.status_code == 200


async def test_pages_of_the_list_keep_the_prefix(
    board: Board, jobs: Jobs, mounted: httpx.AsyncClient
) -> None:
    for _ in range(3):
        board.add("completed")
    app = dashboard.app(jobs, auth=dashboard.token_auth(TOKEN), page_size=2)
    host = Starlette(routes=[Mount(PREFIX, app=app)])
    async with client_of(host) as client:
        page = (await client.get(f"{PREFIX}/jobs?queue=default", headers=BEARER)).text
        older = re.search(r'href="([^"]+)" rel="next"', page)
        assert older is not None
        assert older.group(1).startswith(f"{PREFIX}/jobs?queue=default&amp;before=")
        second = await client.get(older.group(1).replace("&amp;", "&"), headers=BEARER)
        assert second.status_code == 200
        assert f'href="{PREFIX}/jobs?queue=default">« Newest</a>' in second.text


async def test_home_token_login_and_actions_keep_the_prefix(
    board: Board, mounted: httpx.AsyncClient
) -> None:
    job_id = board.add("discarded")
    home = await mounted.get(f"{PREFIX}/", headers=BEARER)
    assert home.status_code == 303
    assert home.headers["location"].startswith(f"{PREFIX}/")
    login = await mounted.get(f"{PREFIX}/jobs?token={TOKEN}")
    assert login.status_code == 303
    assert login.headers["location"] == f"{PREFIX}/jobs"
    cookies = [v for k, v in login.headers.multi_items() if k == "set-cookie"]
    assert all(f"Path={PREFIX}" in c for c in cookies), cookies
    page = await mounted.get(f"{PREFIX}/jobs")  # the session cookie alone
    assert page.status_code == 200
    csrf = csrf_of(page.text)
    done = await mounted.post(
        f"{PREFIX}/jobs/{job_id}/retry",
        data={"csrf_token": csrf},
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert done.status_code == 303
    assert done.headers["location"] == f"{PREFIX}/jobs/{job_id}"
    after = await mounted.get(done.headers["location"])
    assert f"job {job_id} retried" in after.text
    stored = board.jobs.get_job_sync(job_id)
    assert stored is not None
    assert stored.state.value == "available"


async def test_a_proxys_root_path_is_kept(board: Board, jobs: Jobs) -> None:
    """``uvicorn --root-path /proxy`` behind a proxy that forwards the full path."""
    app = dashboard.app(jobs, auth=dashboard.token_auth(TOKEN))

    async def behind_proxy(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope = {**scope, "root_path": "/proxy"}
        await app(scope, receive, send)

    board.add("completed")
    async with client_of(behind_proxy) as client:
        page = await client.get("/proxy/jobs", headers=BEARER)
        assert page.status_code == 200
        assert_prefixed(page.text, "/proxy")
        login = await client.get(f"/proxy/jobs?token={TOKEN}")
        assert login.headers["location"] == "/proxy/jobs"
