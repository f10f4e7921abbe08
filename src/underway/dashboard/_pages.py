"""What every page module uses: the dashboard's state, rendering, links, flashes, errors and
the telemetry event of an action.

A page module (``_jobs_pages.py``...) defines ``routes() -> list[BaseRoute]`` and is listed
in ``_app.PAGES``. Its endpoints take a Starlette ``Request`` and use:

* :func:`dashboard` for the :class:`Dashboard` (its ``jobs``, ``pipelines``, options);
* :func:`render` to answer with a template (``{% extends "base.html" %}``); a request of
  the live updater gets only the template's ``live`` block;
* :func:`url` for every link and form action (it keeps the prefix the dashboard is mounted
  under); :func:`redirect` after an action, with a flash message;
* :class:`BadRequest` / :class:`NotFound` for a 400 / 404 page with the reason;
* :func:`emit_action` once per action taken.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import NoMatchFound

from underway import _telemetry as telemetry
from underway.dashboard import _values
from underway.dashboard._security import CSRF_FIELD, access_of, csrf_token, is_https, root_of
from underway.jobs.app import Jobs

__all__ = [
    "LIVE_HEADER",
    "NAV",
    "BadRequest",
    "Dashboard",
    "NotFound",
    "dashboard",
    "emit_action",
    "error_page",
    "redirect",
    "render",
    "url",
]

LIVE_HEADER = "x-underway-live"
FLASH_COOKIE = "underway_flash"
TEMPLATES = Path(__file__).parent / "templates"
# The navigation: (label, route name). An entry shows once a page module registers its route.
NAV: tuple[tuple[str, str], ...] = (
    ("Queues", "queues"),
    ("Jobs", "jobs"),
    ("Charts", "charts"),
    ("Nodes", "nodes"),
    ("Cron", "cron"),
    ("Pipelines", "pipelines"),
)


class BadRequest(Exception):
    """Bad input from the request: answered with a 400 page giving ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotFound(Exception):
    """What the request names does not exist: answered with a 404 page giving ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Dashboard:
    """The dashboard's state, at ``request.app.state.dashboard``.

    Attributes:
        jobs: The Jobs app whose database is shown.
        pipelines: The pipelines given to :func:`underway.dashboard.app`.
        secret: Signs CSRF tokens and flash messages.
        title: Shown in the header and the page titles.
        page_size: Jobs per page of the jobs list.
        live_interval: Seconds between two live updates of a page (0: none).
        templates: The Jinja2 environment (autoescape on).
        extra: Room for page modules' own state (collectors...), by name.
    """

    jobs: Jobs
    pipelines: Sequence[Any]
    secret: bytes
    title: str
    page_size: int
    live_interval: float
    templates: jinja2.Environment = field(default_factory=lambda: environment())
    extra: dict[str, Any] = field(default_factory=dict)


def environment() -> jinja2.Environment:
    """The templates' environment: the package's ``templates/`` folder, autoescape on."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(_values.FILTERS)
    return env


def dashboard(request: Request) -> Dashboard:
    """The :class:`Dashboard` this request is served by."""
    found: Dashboard = request.app.state.dashboard
    return found


def url(
    request: Request, name: str, /, query: Mapping[str, Any] | None = None, **params: Any
) -> str:
    """The path of route ``name`` (with ``params``), under the prefix the dashboard is
    mounted at, with ``query`` (lists repeat their key; ``None`` and ``""`` are left out).

    Raises:
        NoMatchFound: No route has this name.
    """
    path = root_of(request) + str(request.app.router.url_path_for(name, **params))
    if not query:
        return path
    pairs = []
    for key, value in query.items():
        for item in value if isinstance(value, list | tuple) else [value]:
            if item is not None and item != "":
                pairs.append((key, str(item)))
    return f"{path}?{urlencode(pairs)}" if pairs else path


def _has_route(request: Request, name: str) -> str | None:
    try:
        return url(request, name)
    except NoMatchFound:
        return None


def render(
    request: Request, template: str, context: Mapping[str, Any], *, status: int = 200
) -> Response:
    """Answer with ``template``; a live update gets its ``live`` block only.

    Besides ``context``, a template sees ``request``, ``access``, ``url(name, query=...,
    **params)``, ``static(path)``, ``csrf_field()`` (the hidden input every POST form
    needs), ``title``, ``nav``, ``flashes`` and ``live_interval``.
    """
    board = dashboard(request)
    flashes = _read_flashes(request, board.secret)
    full = {
        "request": request,
        "access": access_of(request),
        "url": lambda name, /, query=None, **params: url(request, name, query, **params),
        "static": lambda path: url(request, "static", path=path),
        "csrf_field": lambda: Markup('<input type="hidden" name="{}" value="{}">').format(
            CSRF_FIELD, csrf_token(request)
        ),
        "title": board.title,
        "nav": _nav(request, context.get("section")),
        "home": url(request, "home"),
        "flashes": flashes,
        "live_interval": board.live_interval,
        "section": None,
        **context,
    }
    page = board.templates.get_template(template)
    if request.headers.get(LIVE_HEADER) and "live" in page.blocks:
        body = _live_part(board.templates, template, full)
    else:
        body = page.render(full)
    response = HTMLResponse(body, status_code=status)
    if flashes:
        response.delete_cookie(FLASH_COOKIE, path=root_of(request) or "/")
    return response


_START, _END = "<!--underway:live-->", "<!--/underway:live-->"


def _live_part(env: jinja2.Environment, template: str, context: Mapping[str, Any]) -> str:
    """The ``live`` block of ``template`` as the whole page renders it (with the page's
    imports and variables): the page is rendered with markers around the block, which
    user data cannot forge (it is escaped), and cut out between them."""
    text = _marked(env, template).render(context)
    return text[text.index(_START) + len(_START) : text.rindex(_END)]


@functools.lru_cache(maxsize=64)
def _marked(env: jinja2.Environment, template: str) -> jinja2.Template:
    return env.from_string(
        f"{{% extends {json.dumps(template)} %}}"
        f"{{% block live %}}{_START}{{{{ super() }}}}{_END}{{% endblock %}}"
    )


def _nav(request: Request, section: object) -> list[dict[str, Any]]:
    items = []
    for label, name in NAV:
        href = _has_route(request, name)
        if href is not None:
            items.append({"label": label, "href": href, "active": name == section})
    return items


def redirect(
    request: Request, target: str, *, flash: str | None = None, kind: str = "ok"
) -> Response:
    """A 303 to ``target`` (a path from :func:`url`), carrying a flash message shown once
    by the next page (``kind``: ``ok`` or ``error``)."""
    response = RedirectResponse(target, status_code=303)
    if flash is not None:
        secret = dashboard(request).secret
        payload = base64.urlsafe_b64encode(json.dumps([kind, flash]).encode()).decode()
        signature = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
        response.set_cookie(
            FLASH_COOKIE,
            f"{payload}.{signature}",
            path=root_of(request) or "/",
            httponly=True,
            samesite="strict",
            secure=is_https(request.scope),
        )
    return response


def _read_flashes(request: Request, secret: bytes) -> list[dict[str, str]]:
    if request.headers.get(LIVE_HEADER):
        return []  # the page shows it; a live update leaves it
    raw = request.cookies.get(FLASH_COOKIE, "")
    payload, _, signature = raw.partition(".")
    expected = hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()
    if not payload or not hmac.compare_digest(signature.encode(), expected.encode()):
        return []
    try:
        kind, text = json.loads(base64.urlsafe_b64decode(payload.encode()))
    except (ValueError, TypeError):
        return []
    return [{"kind": "error" if kind == "error" else "ok", "text": str(text)}]


def error_page(request: Request, status: int, title: str, reason: str) -> Response:
    """An error page: ``title`` and ``reason`` (escaped), with ``status``."""
    board: Dashboard | None = getattr(request.app.state, "dashboard", None)
    if board is None or status == 401:  # a 401 shows no navigation to someone unknown
        body = Markup(
            "<!doctype html><html lang=en><meta charset=utf-8><title>{0}</title>"
            "<h1>{0}</h1><p>{1}</p></html>"
        ).format(title, reason)
        return HTMLResponse(str(body), status_code=status)
    context = {"status": status, "error_title": title, "reason": reason}
    return render(request, "error.html", context, status=status)


def emit_action(
    request: Request,
    action: str,
    target: str,
    *,
    count: int,
    filters: Mapping[str, Any] | None = None,
    **metadata: Any,
) -> None:
    """Emit ``dashboard.action`` for one action taken.

    Args:
        request: The action's request (its access names who took it).
        action: What was done (``retry``, ``cancel``, ``delete``, ``pause``...).
        target: What it was done to (``job``, ``selected``, ``filter``, ``queue``...).
        count: How many things it changed (a measurement).
        filters: The filters of an action on every matching job.
        **metadata: More context (``ids``, ``queue``...).
    """
    telemetry.emit(
        "dashboard.action",
        {"count": count},
        {
            "action": action,
            "target": target,
            "filters": dict(filters or {}),
            "who": access_of(request).who,
            **metadata,
        },
    )
