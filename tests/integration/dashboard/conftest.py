"""Fixtures of the dashboard's tests: a Jobs app on each engine (``make_jobs``), the
dashboard over it, and an ``httpx`` client that speaks to it in process.

``board`` is a :class:`Board`: ``board.client`` sends the token (act access); ``board.get``
and ``board.post`` are shortcuts, ``post`` taking the CSRF token from a page first.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from underway import dashboard
from underway.jobs import Jobs
from underway.jobs.job import FINISHED_STATES

from ..conftest import Database, MakeJobs

TOKEN = "test-token-0123456789"
READ_TOKEN = "read-token-0123456789"
BEARER = {"Authorization": f"Bearer {TOKEN}"}
_CSRF_RE = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(page: str) -> str:
    """The CSRF token in a page's forms."""
    found = _CSRF_RE.search(page)
    assert found, "the page has no form with a CSRF token"
    return found.group(1)


class Board:
    """A dashboard app on the test's database, and a client of it."""

    def __init__(self, jobs: Jobs, database: Database, client: httpx.AsyncClient) -> None:
        self.jobs = jobs
        self.database = database
        self.client = client

    async def get(
        self, path: str, *, headers: Mapping[str, str] | None = None, **kwargs: Any
    ) -> httpx.Response:
        """GET ``path`` with the token (and ``headers``; ``kwargs`` as httpx's)."""
        return await self.client.get(path, headers={**BEARER, **(headers or {})}, **kwargs)

    async def csrf(self, page: str = "/jobs") -> str:
        """The CSRF token of this client's session (read from ``page``)."""
        response = await self.get(page)
        assert response.status_code == 200, response.text
        return csrf_of(response.text)

    async def post(
        self,
        path: str,
        data: Mapping[str, str | Sequence[str]] | Sequence[tuple[str, str]] = (),
        *,
        csrf: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """POST a form to ``path`` with the token and this session's CSRF token."""
        fields = list(data.items()) if isinstance(data, Mapping) else list(data)
        pairs: list[tuple[str, str]] = []
        for key, value in fields:
            if isinstance(value, str):
                pairs.append((key, value))
            else:
                pairs += [(key, v) for v in value]
        pairs.append(("csrf_token", await self.csrf() if csrf is None else csrf))
        return await self.client.post(
            path,
            content=urlencode(pairs),
            headers={
                **BEARER,
                "content-type": "application/x-www-form-urlencoded",
                **(headers or {}),
            },
        )

    def add(self, state: str = "completed", *, queue: str = "default", **columns: Any) -> int:
        """Insert one job row in ``state``; its id."""
        if state in {s.value for s in FINISHED_STATES}:
            at = {"completed": "completed_at", "discarded": "discarded_at"}.get(
                state, "cancelled_at"
            )
            columns.setdefault(at, 1_700_000_100.0)
        columns.setdefault("worker", "app.work")
        return self.database.add_job(state, queue=queue, **columns)


def client_of(app: Any, base_url: str = "http://dashboard.test") -> httpx.AsyncClient:
    """An in-process client of an ASGI app."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=base_url)


@pytest.fixture
async def jobs(make_jobs: MakeJobs) -> Jobs:
    """A Jobs app on the test's database (migrated, no node)."""
    app = make_jobs()
    app.migrate_sync()
    return app


@pytest.fixture
async def board(jobs: Jobs, database: Database) -> AsyncIterator[Board]:
    """The dashboard (token auth, act access) over ``jobs``, and a client of it."""
    app = dashboard.app(jobs, auth=dashboard.token_auth(TOKEN), live_interval=5)
    async with client_of(app) as client:
        yield Board(jobs, database, client)
