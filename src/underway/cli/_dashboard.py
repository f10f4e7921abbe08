"""``underway dashboard``: serve the web dashboard of an app's database.

It is never open: a credential comes from the environment, ``UNDERWAY_DASHBOARD_TOKEN``
(a browser opens ``http://HOST:PORT/?token=...`` once and keeps a session cookie; scripts
send ``Authorization: Bearer ...``) or ``UNDERWAY_DASHBOARD_USER`` and
``UNDERWAY_DASHBOARD_PASSWORD`` (HTTP basic authentication). Without one it refuses to
start, whatever the address; it binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import sys
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from underway.cli._jobs import AppError, FailError, open_jobs, target_options
from underway.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

__all__ = ["dashboard_command"]

_log = logging.getLogger("underway.cli")
# The names of the variables that hold the credentials (not credentials).
TOKEN_ENV = "UNDERWAY_DASHBOARD_TOKEN"  # noqa: S105
USER_ENV = "UNDERWAY_DASHBOARD_USER"
PASSWORD_ENV = "UNDERWAY_DASHBOARD_PASSWORD"  # noqa: S105
SECRET_ENV = "UNDERWAY_DASHBOARD_SECRET"  # noqa: S105
_NO_EXTRA = "underway dashboard needs the dashboard extra: pip install 'underway[dashboard]'"


@click.command("dashboard")
@target_options
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to bind.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8200,
    show_default=True,
    help="The port to listen on (0: a free one, printed).",
)
@click.option(
    "--read-only",
    is_flag=True,
    help="The credential may look at every page but take no action.",
)
@click.option(
    "--root-path",
    default="",
    metavar="PREFIX",
    help="The path prefix a reverse proxy serves the dashboard under (e.g. /underway).",
)
@click.option(
    "--log-level",
    type=click.Choice(("debug", "info", "warning", "error")),
    default="info",
    show_default=True,
)
def dashboard_command(
    app: str | None,
    database: str | None,
    host: str,
    port: int,
    read_only: bool,
    root_path: str,
    log_level: str,
) -> None:
    """Serve the web dashboard of a Jobs app's database (needs underway[dashboard]).

    A credential is required, from the environment: UNDERWAY_DASHBOARD_TOKEN (16+
    characters; open http://HOST:PORT/?token=... once in a browser), or
    UNDERWAY_DASHBOARD_USER and UNDERWAY_DASHBOARD_PASSWORD (basic authentication).
    UNDERWAY_DASHBOARD_SECRET (16+ characters) keeps the forms' tokens valid across
    restarts.
    """
    logging.basicConfig(
        level=log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        import uvicorn

        from underway import dashboard
    except ModuleNotFoundError as exc:
        raise AppError(f"{_NO_EXTRA} ({exc})") from None
    auth = _auth(dashboard, host, access="read" if read_only else "act")
    if root_path and (not root_path.startswith("/") or root_path.endswith("/")):
        raise AppError(f"--root-path must start with '/' and not end with one, got {root_path!r}")
    if not _loopback(host):
        _log.warning(
            "the dashboard listens on %s, beyond this machine, over plain HTTP: put it behind "
            "a TLS proxy so the credential does not travel in clear",
            host,
        )
    with open_jobs(app, database) as jobs:
        try:
            web = dashboard.app(jobs, auth=auth, secret=os.environ.get(SECRET_ENV) or None)
        except ConfigError as exc:
            raise AppError(str(exc)) from None
        config = uvicorn.Config(
            web,
            host=host,
            port=port,
            root_path=root_path,
            log_level=log_level,
            server_header=False,
            proxy_headers=False,
            lifespan="off",
        )
        server = _server(config)
        try:
            asyncio.run(_serve(server, root_path))
        except OSError as exc:
            raise FailError(f"cannot listen on {host}:{port}: {exc}") from None
        if not server.started:
            raise FailError(f"cannot listen on {host}:{port} (see the log above)")


def _server(config: uvicorn.Config) -> uvicorn.Server:
    """A uvicorn server that stops on the first SIGTERM/SIGINT and hurries on the second,
    then exits with status 0 (uvicorn's own raises the signal again once stopped)."""
    import uvicorn

    class Server(uvicorn.Server):
        def handle_exit(self, sig: int, frame: FrameType | None) -> None:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True

    return Server(config)


def _auth(dashboard: Any, host: str, *, access: str) -> Any:
    """The credential from the environment, or the reason there is none."""
    token = os.environ.get(TOKEN_ENV, "")
    user, password = os.environ.get(USER_ENV, ""), os.environ.get(PASSWORD_ENV, "")
    where = "" if _loopback(host) else f" (and never on {host}, beyond this machine)"
    if not token and not (user or password):
        raise AppError(
            f"the dashboard needs a credential{where}: set {TOKEN_ENV} (16+ characters, e.g. "
            f"from python -c 'import secrets; print(secrets.token_urlsafe())'), or "
            f"{USER_ENV} and {PASSWORD_ENV}"
        )
    if token and (user or password):
        raise AppError(f"set {TOKEN_ENV} or {USER_ENV}/{PASSWORD_ENV}, not both")
    try:
        if token:
            return dashboard.token_auth(token, access=access)
        if not user or not password:
            missing = USER_ENV if not user else PASSWORD_ENV
            raise AppError(
                f"basic authentication needs {USER_ENV} and {PASSWORD_ENV}: {missing} is not set"
            )
        return dashboard.basic_auth(user, password, access=access)
    except ConfigError as exc:
        raise AppError(f"{exc} (from the environment)") from None


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def _serve(server: uvicorn.Server, root_path: str) -> None:
    """Run ``server`` until a signal stops it; say where it listens once it does."""
    task = asyncio.create_task(_serve_or_fail(server))
    while not server.started and not task.done():  # noqa: ASYNC110 - uvicorn sets a flag
        await asyncio.sleep(0.05)
    if server.started:
        host, port = server.servers[0].sockets[0].getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        click.echo(f"underway dashboard at http://{shown}:{port}{root_path}/")
        sys.stdout.flush()
    await task


async def _serve_or_fail(server: uvicorn.Server) -> None:
    """``server.serve()``, which ends without ``server.started`` when it cannot start (uvicorn
    logs why, then raises SystemExit: caught here, before it escapes the event loop)."""
    try:
        await server.serve()
    except SystemExit:
        if server.started:
            raise
