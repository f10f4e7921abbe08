"""Who may do what on the dashboard: :class:`Access`, and the ready-made ``auth`` callables.

An ``auth`` callable takes the request (a Starlette ``Request``; sync or async) and returns
an :class:`Access`: ``none`` (401), ``read`` (every page, no action: a POST is a 403) or
``act`` (actions too), with the name of who is asking, which every action's telemetry
event carries.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from underway.errors import ConfigError

if TYPE_CHECKING:
    from starlette.requests import Request

__all__ = [
    "SESSION_COOKIE",
    "Access",
    "AuthFn",
    "BasicAuth",
    "Level",
    "TokenAuth",
    "allow_all",
    "basic_auth",
    "challenge_of",
    "read_only",
    "token_auth",
]

SESSION_COOKIE = "underway_session"


class Level(enum.IntEnum):
    """What a request may do: nothing, look, or look and act."""

    NONE = 0
    READ = 1
    ACT = 2


@dataclass(frozen=True, slots=True)
class Access:
    """What one request may do, and who is asking.

    Attributes:
        level: :attr:`Level.NONE` (refused with a 401), :attr:`Level.READ` (pages only) or
            :attr:`Level.ACT` (pages and actions).
        who: A name for the one asking, carried by the telemetry event of each action.
    """

    level: Level
    who: str = "anonymous"

    @classmethod
    def none(cls) -> Access:
        """No access: the request is refused with a 401."""
        return cls(Level.NONE)

    @classmethod
    def read(cls, who: str = "anonymous") -> Access:
        """Every page, no action."""
        return cls(Level.READ, who)

    @classmethod
    def act(cls, who: str = "anonymous") -> Access:
        """Every page and every action."""
        return cls(Level.ACT, who)

    @property
    def can_read(self) -> bool:
        """Whether pages may be shown."""
        return self.level >= Level.READ

    @property
    def can_act(self) -> bool:
        """Whether actions (POST) may be taken."""
        return self.level >= Level.ACT


AuthFn = Callable[["Request"], "Access | Awaitable[Access]"]
"""``auth(request) -> Access`` (or an awaitable of one)."""


def allow_all(request: Request) -> Access:
    """Everyone may look and act: for a dashboard mounted behind the application's own
    authentication (a middleware or a gateway that lets only operators through)."""
    return Access.act()


def read_only(request: Request) -> Access:
    """Everyone may look, nobody may act."""
    return Access.read()


def _level(access: str) -> Level:
    if access not in ("read", "act"):
        raise ConfigError(f"access must be 'read' or 'act', got {access!r}")
    return Level.READ if access == "read" else Level.ACT


class TokenAuth:
    """A shared secret token, given as ``Authorization: Bearer <token>``, once as
    ``?token=<token>`` (which the dashboard turns into a session cookie and removes from
    the address), or by that cookie.

    Build it with :func:`token_auth`.
    """

    def __init__(self, token: str, *, access: str = "act", who: str = "token") -> None:
        if not isinstance(token, str) or len(token) < 16:
            raise ConfigError(
                "the dashboard token must be a string of at least 16 characters "
                "(for example: python -c 'import secrets; print(secrets.token_urlsafe())')"
            )
        self._token = token.encode()
        self.level = _level(access)
        self.who = who
        self.session = base64.urlsafe_b64encode(
            hmac.new(self._token, b"underway dashboard session", hashlib.sha256).digest()
        ).decode()

    def __call__(self, request: Request) -> Access:
        """The access of ``request``: granted when it carries the token or the session."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.matches(credential.strip()):
            return Access(self.level, self.who)
        if self.matches(request.query_params.get("token", "")):
            return Access(self.level, self.who)
        cookie = request.cookies.get(SESSION_COOKIE, "")
        if cookie and hmac.compare_digest(cookie.encode(), self.session.encode()):
            return Access(self.level, self.who)
        return Access.none()

    def matches(self, token: str) -> bool:
        """Whether ``token`` is the token (a constant-time comparison)."""
        return bool(token) and hmac.compare_digest(token.encode(), self._token)

    def __repr__(self) -> str:
        return f"<TokenAuth access={self.level.name.lower()}>"


class BasicAuth:
    """HTTP basic authentication with one user name and password.

    Build it with :func:`basic_auth`. A browser asks for them (the 401 carries a
    ``WWW-Authenticate: Basic`` challenge).
    """

    challenge = 'Basic realm="underway", charset="UTF-8"'

    def __init__(self, user: str, password: str, *, access: str = "act") -> None:
        if not isinstance(user, str) or not user or ":" in user:
            raise ConfigError(f"the dashboard user must be a name without ':', got {user!r}")
        if not isinstance(password, str) or len(password) < 8:
            raise ConfigError("the dashboard password must be at least 8 characters")
        self.user = user
        self._expected = hashlib.sha256(f"{user}:{password}".encode()).digest()
        self.level = _level(access)

    def __call__(self, request: Request) -> Access:
        """The access of ``request``: granted when it carries the user and password."""
        scheme, _, credential = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return Access.none()
        try:  # a header is read as latin-1: base64 refuses non-ASCII with a ValueError
            pair = base64.b64decode(credential.strip(), validate=True).decode()
        except ValueError:  # binascii.Error and UnicodeDecodeError are ValueErrors too
            return Access.none()
        given = hashlib.sha256(pair.encode()).digest()
        if not hmac.compare_digest(given, self._expected):
            return Access.none()
        return Access(self.level, self.user)

    def __repr__(self) -> str:
        return f"<BasicAuth user={self.user!r} access={self.level.name.lower()}>"


def token_auth(token: str, *, access: str = "act", who: str = "token") -> TokenAuth:
    """Access for whoever has ``token``.

    Args:
        token: The shared secret, at least 16 characters.
        access: ``"act"`` (pages and actions) or ``"read"`` (pages only).
        who: The name the actions' telemetry events carry.

    Raises:
        ConfigError: The token is too short, or ``access`` is neither.
    """
    return TokenAuth(token, access=access, who=who)


def basic_auth(user: str, password: str, *, access: str = "act") -> BasicAuth:
    """Access for whoever gives ``user`` and ``password`` (HTTP basic authentication).

    Args:
        user: The user name (no ``:``); the actions' telemetry events carry it.
        password: At least 8 characters.
        access: ``"act"`` (pages and actions) or ``"read"`` (pages only).

    Raises:
        ConfigError: A bad user name or password, or ``access`` is neither.
    """
    return BasicAuth(user, password, access=access)


def challenge_of(auth: Any) -> str | None:
    """The ``WWW-Authenticate`` value a 401 carries for ``auth`` (``None``: none)."""
    value = getattr(auth, "challenge", None)
    return value if isinstance(value, str) else None
