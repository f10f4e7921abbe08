"""PostgreSQL database URLs: underway's options, the DSN for the driver, a printable name."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from underway.errors import ConfigError, DatabaseError
from underway.jobs.engines.postgres._sql import SCHEMA_RE

__all__ = ["PgOptions", "database_error", "parse_url", "redact"]

SCHEMES = ("postgresql", "postgres")
_OWN = ("schema", "pool_size")
# A connection whose server vanished without closing it (a failover to another address, a
# network partition) would otherwise hang its caller until the kernel gives up, some 15
# minutes: TCP keepalives find an idle one dead within ~25 s, and ``tcp_user_timeout`` a
# busy one whose data stays unacknowledged for 30 s. A long query is not affected (the
# server's kernel answers both while it runs). The URL's own values win.
_LIVENESS = {
    "keepalives": "1",
    "keepalives_idle": "10",
    "keepalives_interval": "5",
    "keepalives_count": "3",
    "tcp_user_timeout": "30000",
}


@dataclass(frozen=True, slots=True)
class PgOptions:
    """A parsed ``postgresql://`` URL.

    Attributes:
        dsn: The URL without underway's options, for the driver, with TCP keepalives and a
            TCP user timeout unless the URL sets them.
        shown: The DSN without its password, for messages.
        schema: Where underway's tables live (created if missing).
        pool_size: Connections of the engine's pool.
    """

    dsn: str
    shown: str
    schema: str = "public"
    pool_size: int = 10


def parse_url(url: str) -> PgOptions:
    """Split ``url`` into the driver's DSN and underway's options.

    Raises:
        ConfigError: The URL is not a PostgreSQL URL or an option is invalid.
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        raise ConfigError(f"a PostgreSQL URL starts with postgresql://, got {redact(url)!r}")
    query = parse_qsl(parts.query, keep_blank_values=True)
    own = {k: v for k, v in query if k in _OWN}
    rest = [(k, v) for k, v in query if k not in _OWN]
    dsn = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))  # libpq: no '+'
    shown = redact(dsn)
    given = {k for k, _ in rest}
    rest += [(k, v) for k, v in _LIVENESS.items() if k not in given]
    dsn = urlunsplit(parts._replace(query=urlencode(rest, quote_via=quote)))
    schema = own.get("schema", "public")
    if not SCHEMA_RE.match(schema):
        raise ConfigError(
            f"schema must be a plain identifier (letters, digits, _; at most 63), got "
            f"{schema!r} in {shown!r}"
        )
    try:
        pool_size = int(own.get("pool_size", "10"))
    except ValueError:
        pool_size = 0
    if pool_size < 1:
        raise ConfigError(f"pool_size must be a positive integer in {shown!r}")
    return PgOptions(dsn=dsn, shown=shown, schema=schema, pool_size=pool_size)


def redact(url: str) -> str:
    """``url`` without its password (in the user part or as a ``password`` parameter)."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if "@" in netloc:
            user, _, host = netloc.rpartition("@")
            if ":" in user:
                user = user.split(":", 1)[0] + ":***"
            netloc = f"{user}@{host}"
        query = [
            (k, "***" if k == "password" else v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
        ]
        return urlunsplit(
            parts._replace(netloc=netloc, query=urlencode(query, safe="*", quote_via=quote))
        )
    except ValueError:
        return "<unparsable PostgreSQL URL>"


def database_error(exc: BaseException, shown: str, *, via: str = "") -> DatabaseError:
    """The :class:`DatabaseError` for a driver error, naming the database."""
    text = str(exc).strip() or type(exc).__name__
    return DatabaseError(f"PostgreSQL database {shown!r} failed{via}: {text}")
