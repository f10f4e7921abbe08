"""Storage engines for durable jobs, chosen by database URL."""

from __future__ import annotations

from urllib.parse import urlsplit

from underway.errors import ConfigError
from underway.jobs.engines.base import Engine, JobFilter, StageResult

__all__ = ["Engine", "JobFilter", "StageResult", "open_engine"]


def open_engine(url: str) -> Engine:
    """The engine for a database URL (not yet connected; call ``await engine.open()``).

    Supported: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` and
    ``sqlite:///:memory:`` (one process only); ``postgresql://user@host/db`` (or
    ``postgres://``), which needs the ``postgres`` extra.

    Raises:
        ConfigError: The URL is malformed or names an unsupported database.
    """
    if not isinstance(url, str) or "://" not in url:
        raise ConfigError(f"database must be a URL such as sqlite:///underway.db, got {url!r}")
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        from underway.jobs.engines.sqlite import SQLiteEngine

        return SQLiteEngine(url)
    if scheme in ("postgresql", "postgres"):
        return _postgres(url)
    raise ConfigError(
        f"unsupported database {scheme!r} in {url!r}; this version supports sqlite and postgresql"
    )


def _postgres(url: str) -> Engine:
    try:
        from underway.jobs.engines.postgres import PostgresEngine
    except ImportError as exc:
        if not (exc.name or "").startswith("psycopg"):
            raise
        raise ConfigError(
            f"a PostgreSQL database needs psycopg ({exc}): pip install 'underway[postgres]'"
        ) from exc
    return PostgresEngine(url)
