"""The web dashboard (the ``dashboard`` extra: starlette, jinja2, uvicorn).

Jobs by state, queue, worker, tags, node, time and contents; one job's args, result and
every attempt's error; retry, cancel and delete, one job or every match; ``/healthz`` and
``/metrics``. Server-rendered pages that update themselves every few seconds.

Run it with ``underway dashboard --app myapp.tasks:jobs`` (a token from
``UNDERWAY_DASHBOARD_TOKEN``), or mount it in an ASGI application::

    from underway import dashboard

    board = dashboard.app(jobs, auth=dashboard.token_auth(os.environ["DASHBOARD_TOKEN"]))
    fastapi_app.mount("/underway", board)

It is closed by default: :func:`app` needs ``auth``, which decides for each request
whether it may look (``read``), also act (``act``), or nothing. Every action is a POST with
a CSRF token, and is emitted as a ``dashboard.action`` telemetry event naming who took it.
"""

try:
    import jinja2  # noqa: F401 - fail here, with the extra to install
    import starlette  # noqa: F401
except ModuleNotFoundError as exc:
    raise ModuleNotFoundError(
        f"underway.dashboard needs starlette and jinja2 ({exc}): pip install 'underway[dashboard]'",
        name=exc.name,
    ) from exc

from underway.dashboard._access import (
    Access,
    AuthFn,
    BasicAuth,
    Level,
    TokenAuth,
    allow_all,
    basic_auth,
    read_only,
    token_auth,
)
from underway.dashboard._app import app

__all__ = [
    "Access",
    "AuthFn",
    "BasicAuth",
    "Level",
    "TokenAuth",
    "allow_all",
    "app",
    "basic_auth",
    "read_only",
    "token_auth",
]
