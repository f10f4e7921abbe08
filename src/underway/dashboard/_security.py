"""The dashboard's guard: an ASGI middleware every request passes before any page.

In order, for each HTTP request (a GET of a static file, the stylesheet and the script,
skips the access check only):

1. Security headers on every response: a Content-Security-Policy without inline script
   or style, ``X-Frame-Options: DENY``, ``Referrer-Policy: same-origin``, ``nosniff``,
   ``Cache-Control: no-store`` on pages.
2. The ``auth`` callable decides the request's :class:`Access`; ``none`` is a 401 (with
   the auth's ``WWW-Authenticate`` challenge, if it has one).
3. ``GET ...?token=...`` accepted by a :class:`TokenAuth` is answered with a redirect to the
   same address without the token, setting the session cookie (HttpOnly, SameSite=Strict),
   so the token leaves the address bar and the history.
4. Anything but GET/HEAD must be a POST (405) with ``act`` access (403), an ``Origin``
   (when sent) of this host (403), a url-encoded form (415) of at most 1 MB (413) whose
   ``csrf_token`` field matches the CSRF cookie (403, compared in constant time). The form
   is parsed once here; the page reads it with :func:`form`.

The CSRF cookie holds a random value per browser; the form's token is its HMAC under the
dashboard's secret, so neither can be made without the other.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import inspect
import secrets
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from starlette.datastructures import FormData, UploadFile
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from underway.dashboard._access import SESSION_COOKIE, Access, AuthFn, TokenAuth, challenge_of

__all__ = [
    "CSRF_COOKIE",
    "CSRF_FIELD",
    "ErrorPage",
    "Guard",
    "access_of",
    "csrf_token",
    "form",
    "is_https",
    "root_of",
    "route_path",
]

CSRF_COOKIE = "underway_csrf"
CSRF_FIELD = "csrf_token"
MAX_FORM = 1_000_000
_ACCESS, _CSRF, _FORM = "underway_access", "underway_csrf", "underway_form"
_ROOT = "underway_root"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    # No referrer beyond this host; within it, browsers then send the real ``Origin`` with
    # a form's POST (under ``no-referrer`` they send ``Origin: null``, refused below).
    (b"referrer-policy", b"same-origin"),
    (b"x-content-type-options", b"nosniff"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
ErrorPage = Callable[[Request, int, str, str], Response]
"""Renders an error: ``(request, status, title, reason) -> Response``."""


def route_path(scope: Scope) -> str:
    """The request's path inside the dashboard (without the prefix it is mounted under)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        return path[len(root) :] or "/"
    return path


def root_of(request: Request) -> str:
    """The prefix the dashboard is mounted under (``""`` at the root), also inside one of
    its own mounts (the static files)."""
    found = request.scope.get("state", {}).get(_ROOT)
    return found if isinstance(found, str) else str(request.scope.get("root_path", ""))


def access_of(request: Request) -> Access:
    """The :class:`Access` the guard gave this request."""
    found = request.scope.get("state", {}).get(_ACCESS)
    return found if isinstance(found, Access) else Access.none()


def csrf_token(request: Request) -> str:
    """The token a form of this page carries in its ``csrf_token`` field."""
    state = request.scope.get("state", {})
    secret: bytes = state[_CSRF][0]
    return _sign(secret, state[_CSRF][1])


def form(request: Request) -> FormData:
    """The fields of this POST's form (checked and parsed by the guard)."""
    found = request.scope.get("state", {}).get(_FORM)
    return found if isinstance(found, FormData) else FormData()


def _sign(secret: bytes, value: str) -> str:
    digest = hmac.new(secret, b"csrf:" + value.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


class Guard:
    """The middleware described in this module's docstring.

    Args:
        app: The dashboard's routes.
        auth: Decides each request's access (sync or async).
        secret: Signs the CSRF tokens.
        error: Renders the refusals.
    """

    def __init__(self, app: ASGIApp, *, auth: AuthFn, secret: bytes, error: ErrorPage) -> None:
        self.app = app
        self.auth = auth
        self.secret = secret
        self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check one request, then hand it on (or answer it)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = route_path(scope)
        static = path.startswith("/static/") and scope["method"] in ("GET", "HEAD")
        extra: list[tuple[bytes, bytes]] = list(_HEADERS)
        if not static:
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        scope.setdefault("state", {})[_ROOT] = scope.get("root_path", "")
        if static:
            await self.app(scope, receive, send_with_headers)
            return
        request = Request(scope, receive)
        refusal, receive = await self._check(request, scope, receive, extra)
        if refusal is not None:
            await refusal(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)

    async def _check(
        self, request: Request, scope: Scope, receive: Receive, extra: list[tuple[bytes, bytes]]
    ) -> tuple[Response | None, Receive]:
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        cookie = request.cookies.get(CSRF_COOKIE, "")
        if not _plausible(cookie):
            cookie = secrets.token_urlsafe(32)
            extra.append((b"set-cookie", _cookie(scope, CSRF_COOKIE, cookie)))
            fresh = True
        else:
            fresh = False
        state[_CSRF] = (self.secret, cookie)
        access = self.auth(request)
        if inspect.isawaitable(access):
            access = await access
        if not isinstance(access, Access):
            raise TypeError(f"the dashboard's auth returned {access!r}, not an Access")
        state[_ACCESS] = access
        if not access.can_read:
            return self._unauthorized(request), receive
        method = scope["method"]
        if method in ("GET", "HEAD"):
            return self._token_login(request, scope), receive
        if method != "POST":
            return self.error(request, 405, "Method not allowed", f"{method} is not used"), receive
        if not access.can_act:
            reason = f"{access.who} has read-only access: actions are refused"
            return self.error(request, 403, "Forbidden", reason), receive
        if not _same_origin(request):
            reason = "the request comes from another site (its Origin is not this host)"
            return self.error(request, 403, "Forbidden", reason), receive
        kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
        if kind != "application/x-www-form-urlencoded":
            reason = "the dashboard's forms are sent url-encoded"
            return self.error(request, 415, "Unsupported form", reason), receive
        body = await _body(receive)
        if body is None:
            return self.error(request, 413, "Form too large", "the form is over 1 MB"), receive
        try:
            fields = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return self.error(request, 400, "Bad form", "the form is not UTF-8"), receive
        given = dict(fields).get(CSRF_FIELD, "")
        if fresh or not hmac.compare_digest(given.encode(), _sign(self.secret, cookie).encode()):
            reason = (
                "the form's CSRF token is missing or does not match this browser's "
                "(reload the page and try again)"
            )
            return self.error(request, 403, "Forbidden", reason), receive
        state[_FORM] = FormData(list[tuple[str, str | UploadFile]](fields))
        return None, _replay(body, receive)

    def _unauthorized(self, request: Request) -> Response:
        reason = "credentials are needed"
        if isinstance(self.auth, TokenAuth):
            reason = "open the dashboard's address with ?token=<your token> once, or send it"
            reason += " as 'Authorization: Bearer <token>'"
        response = self.error(request, 401, "Unauthorized", reason)
        challenge = challenge_of(self.auth)
        if challenge:
            response.headers["www-authenticate"] = challenge
        return response

    def _token_login(self, request: Request, scope: Scope) -> Response | None:
        auth = self.auth
        if not isinstance(auth, TokenAuth) or not auth.matches(
            request.query_params.get("token", "")
        ):
            return None
        query = urlencode([(k, v) for k, v in request.query_params.multi_items() if k != "token"])
        target = scope.get("root_path", "") + route_path(scope)
        if target.startswith("//"):  # a browser reads //host as another site's address
            target = "/" + target.lstrip("/")
        target += f"?{query}" if query else ""
        response = RedirectResponse(target, status_code=303)
        response.raw_headers.append((b"set-cookie", _cookie(scope, SESSION_COOKIE, auth.session)))
        return response


def _plausible(cookie: str) -> bool:
    return 32 <= len(cookie) <= 64 and all(c.isalnum() or c in "-_" for c in cookie)


def is_https(scope: Scope) -> bool:
    """Whether the browser speaks HTTPS: to this server, or to a TLS proxy in front of it
    that says so in ``X-Forwarded-Proto`` (its first value). Only used to mark cookies
    ``Secure``: a client that claims HTTPS over plain HTTP only loses its own cookies."""
    if scope.get("scheme") == "https":
        return True
    for key, value in scope.get("headers", ()):
        if key == b"x-forwarded-proto":
            return bool(value.split(b",")[0].strip().lower() == b"https")
    return False


def _cookie(scope: Scope, name: str, value: str) -> bytes:
    path = scope.get("root_path", "") or "/"
    secure = "; Secure" if is_https(scope) else ""
    return f"{name}={value}; Path={path}; HttpOnly; SameSite=Strict{secure}".encode()


def _same_origin(request: Request) -> bool:
    """Whether the request's ``Origin`` (when it sends one) names this host."""
    origin = request.headers.get("origin")
    if origin is None:
        return request.headers.get("sec-fetch-site", "same-origin") in (
            "same-origin",
            "none",
        )
    # Each proxy of a chain may append the host it was asked for to X-Forwarded-Host; a
    # browser cannot set that header on a cross-site form, so any of them may be this site.
    hosts = {request.headers.get("host", "")}
    for value in request.headers.getlist("x-forwarded-host"):
        hosts.update(part.strip() for part in value.split(","))
    return origin != "null" and urlsplit(origin).netloc in hosts - {""}


async def _body(receive: Receive) -> bytes | None:
    """The whole request body, or ``None`` past :data:`MAX_FORM` bytes."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_FORM:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Receive) -> Callable[[], Awaitable[Message]]:
    """A ``receive`` that gives the body read already, then waits as the server's would."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
