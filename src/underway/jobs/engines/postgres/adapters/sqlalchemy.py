"""SQLAlchemy: a ``Session``/``Connection`` or ``AsyncSession``/``AsyncConnection``.

The statements run through ``exec_driver_sql`` on the session's connection, so they join
the transaction the session has begun (or begin it, as any statement would) and go through
the session's driver: psycopg, asyncpg, or another PostgreSQL driver with ``format``
parameters. The session is never committed here.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, scoped_session

from underway.errors import ConfigError
from underway.jobs.engines.postgres._insert import numbered
from underway.jobs.engines.postgres.adapters._dispatch import AppConnection

__all__ = ["adapt", "driver_sql"]

_Rows = list[tuple[Any, ...]]


def adapt(conn: Any) -> AppConnection | None:
    """The :class:`AppConnection` of a SQLAlchemy session or connection; ``None`` otherwise."""
    if isinstance(conn, Session | scoped_session):
        return _sync(conn, conn.get_bind().dialect, "SQLAlchemy Session")
    if isinstance(conn, Connection):
        return _sync(conn, conn.dialect, "SQLAlchemy Connection")
    from sqlalchemy.ext.asyncio import (
        AsyncConnection,
        AsyncSession,
        async_scoped_session,
    )

    if isinstance(conn, AsyncSession | async_scoped_session):
        dialect = conn.get_bind().dialect
        return _async(conn, dialect, "SQLAlchemy AsyncSession")
    if isinstance(conn, AsyncConnection):
        return _async(conn, conn.dialect, "SQLAlchemy AsyncConnection")
    return None


def _sync(conn: Any, dialect: Dialect, kind: str) -> AppConnection:
    _check(dialect, kind)

    def execute(sql: str, params: Sequence[Any] | None) -> _Rows:
        connection = conn if isinstance(conn, Connection) else conn.connection()
        result = connection.exec_driver_sql(driver_sql(sql, dialect), tuple(params or ()))
        return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

    return AppConnection(kind, execute=execute, errors=(DBAPIError,))


def _async(conn: Any, dialect: Dialect, kind: str) -> AppConnection:
    _check(dialect, kind)

    async def aexecute(sql: str, params: Sequence[Any] | None) -> _Rows:
        connection = conn if kind.endswith("AsyncConnection") else await conn.connection()
        statement = driver_sql(sql, dialect)
        result = await connection.exec_driver_sql(statement, tuple(params or ()))
        return [tuple(r) for r in result.fetchall()] if result.returns_rows else []

    return AppConnection(kind, aexecute=aexecute, errors=(DBAPIError,))


def _check(dialect: Dialect, kind: str) -> None:
    if dialect.name != "postgresql":
        raise ConfigError(f"the {kind} passed as conn is on {dialect.name}, not PostgreSQL")
    driver_sql("", dialect)  # refuses a parameter style the statements cannot be given in


def driver_sql(sql: str, dialect: Dialect) -> str:
    """``sql`` with its placeholders in the style of ``dialect``'s driver.

    Raises:
        ConfigError: The driver takes neither ``$1`` nor ``%s`` placeholders.
    """
    return _driver_sql(sql, dialect.driver, dialect.paramstyle)


@functools.lru_cache(maxsize=64)
def _driver_sql(sql: str, driver: str, paramstyle: str) -> str:
    if driver == "psycopg":
        return sql  # psycopg takes the statements' own (binary) placeholders
    if paramstyle == "numeric_dollar":
        return numbered(sql)
    if paramstyle in ("format", "pyformat"):
        return sql.replace("%b", "%s")
    raise ConfigError(
        f"the SQLAlchemy driver {driver!r} takes {paramstyle!r} parameters; use psycopg or asyncpg"
    )
