"""The dashboard as one Starlette application: its options, page modules and guard."""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Mount, NoMatchFound, Route
from starlette.staticfiles import StaticFiles

from underway.dashboard import _activity_pages as activity_pages
from underway.dashboard import _health_pages as health_pages
from underway.dashboard import _jobs_pages as jobs_pages
from underway.dashboard import _overview_pages as overview_pages
from underway.dashboard._access import AuthFn
from underway.dashboard._pages import (
    NAV,
    BadRequest,
    Dashboard,
    NotFound,
    error_page,
    redirect,
    url,
)
from underway.dashboard._security import Guard
from underway.errors import ConfigError
from underway.jobs.app import Jobs
from underway.pipelines import Pipeline

__all__ = ["PAGES", "app"]

# The page modules, each with ``routes() -> list[BaseRoute]``. A new one is one line here.
PAGES: tuple[Callable[[], list[BaseRoute]], ...] = (
    overview_pages.routes,
    jobs_pages.routes,
    activity_pages.routes,
    health_pages.routes,
)
STATIC = Path(__file__).parent / "static"


def app(
    jobs: Jobs,
    *,
    auth: AuthFn | None = None,
    pipelines: Iterable[Any] = (),
    title: str = "underway",
    secret: bytes | str | None = None,
    page_size: int = 50,
    live_interval: float = 5.0,
) -> Starlette:
    """The dashboard of ``jobs``' database, as an ASGI application to serve or mount.

    Mount it under any prefix (``Mount("/underway", app=dashboard.app(...))`` in Starlette,
    ``fastapi_app.mount(...)``); every link and form keeps the prefix.

    Args:
        jobs: The Jobs app whose jobs are shown (it need not run a node).
        auth: Who may do what: a callable ``(request) -> Access`` (sync or async), such as
            :func:`token_auth`, :func:`basic_auth`, :func:`read_only` or :func:`allow_all`
            (for a dashboard behind the application's own authentication). Required: a
            dashboard is closed unless told whom to let in.
        pipelines: The process's pipelines, for the pipelines page; their messages are
            counted from this call on.
        title: Shown in the header and the page titles.
        secret: Signs the CSRF tokens and flash messages (at least 16 bytes); give the
            same one to every process serving the dashboard. Default: random per process.
        page_size: Jobs per page of the jobs list (1 to 500).
        live_interval: Seconds between two live updates of a page (0: no live updates).

    Returns:
        The Starlette application.

    Raises:
        ConfigError: An option is missing or invalid (named in the message), or two
            pipelines share a name.
    """
    if not isinstance(jobs, Jobs):
        raise ConfigError(f"jobs must be an underway.jobs.Jobs app, got {type(jobs).__name__}")
    if auth is None:
        raise ConfigError(
            "auth is required: the dashboard is closed unless told whom to let in; pass "
            "auth=token_auth(...), basic_auth(...), your own (request) -> Access callable, "
            "read_only (everyone may look) or allow_all (behind your own authentication)"
        )
    if not callable(auth):
        raise ConfigError(f"auth must be a callable (request) -> Access, got {auth!r}")
    board = Dashboard(
        jobs=jobs,
        pipelines=_pipelines(pipelines),
        secret=_secret(secret),
        title=_title(title),
        page_size=_page_size(page_size),
        live_interval=_interval(live_interval),
    )
    activity_pages.start_pipeline_stats(board)
    routes: list[BaseRoute] = [Route("/", _home, name="home")]
    for page in PAGES:
        routes += page()
    routes.append(Mount("/static", app=StaticFiles(directory=STATIC), name="static"))
    web = Starlette(
        routes=routes,
        middleware=[Middleware(Guard, auth=auth, secret=board.secret, error=error_page)],
        exception_handlers={
            BadRequest: _bad_request,
            NotFound: _not_found,
            404: _no_route,
            405: _no_method,
        },
    )
    web.state.dashboard = board
    return web


async def _home(request: Request) -> Response:
    for _, name in NAV:
        try:
            return redirect(request, url(request, name))
        except NoMatchFound:  # that page is not installed; the next one
            continue
    raise NotFound("no page is installed")


async def _bad_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BadRequest)
    return error_page(request, 400, "Bad request", exc.reason)


async def _not_found(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, NotFound)
    return error_page(request, 404, "Not found", exc.reason)


async def _no_route(request: Request, exc: Exception) -> Response:
    return error_page(request, 404, "Not found", "no page has this address")


async def _no_method(request: Request, exc: Exception) -> Response:
    return error_page(request, 405, "Method not allowed", f"{request.method} is not used here")


def _pipelines(pipelines: Iterable[Any]) -> tuple[Any, ...]:
    if isinstance(pipelines, Pipeline) or not isinstance(pipelines, Iterable):
        raise ConfigError(f"pipelines must be a list of Pipeline, got {pipelines!r}")
    found = tuple(pipelines)
    for pipeline in found:
        if not isinstance(pipeline, Pipeline):
            raise ConfigError(f"pipelines must hold Pipeline objects, got {pipeline!r}")
    return found


def _secret(secret: bytes | str | None) -> bytes:
    if secret is None:
        return _secrets.token_bytes(32)
    value = secret.encode() if isinstance(secret, str) else secret
    if not isinstance(value, bytes) or len(value) < 16:
        raise ConfigError("secret must be at least 16 bytes (or characters)")
    return value


def _title(title: str) -> str:
    if not isinstance(title, str) or not title.strip():
        raise ConfigError(f"title must be a non-empty string, got {title!r}")
    return title


def _page_size(size: int) -> int:
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= 500:
        raise ConfigError(f"page_size must be a whole number from 1 to 500, got {size!r}")
    return size


def _interval(seconds: float) -> float:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds >= 0:
        raise ConfigError(f"live_interval must be seconds >= 0 (0: none), got {seconds!r}")
    return float(seconds)
