"""The PostgreSQL side of a health check: a few reads on a connection of its own.

The probe connects outside the engine's pools (whose state is not the database's), with
libpq's ``connect_timeout`` within the probe's own timeout, runs its reads in autocommit
and closes the connection. It creates nothing: a schema no engine has migrated reads as
one without migrations. A heartbeat's age is measured on the server's clock, as the
heartbeats are stamped and as the lifeline judges them.
"""

from __future__ import annotations

import math

import psycopg

from underway.errors import ConfigError
from underway.jobs.engines._probe import Probe, migration_name, probe_query
from underway.jobs.engines.postgres._engine import PostgresEngine
from underway.jobs.engines.postgres._pool import AConn, arows
from underway.jobs.engines.postgres._sql import quote_ident
from underway.jobs.engines.postgres._url import database_error

__all__ = ["describe", "probe"]

_D = "postgres"
_MIN_CONNECT_TIMEOUT = 2  # libpq takes whole seconds and treats less than 2 as 2


def describe(engine: object) -> str:
    """The database as a health report names it: its URL without the password."""
    return _engine(engine).options.shown


async def probe(engine: object, *, node: str | None, timeout: float) -> Probe:
    """Read the migrations and ``node``'s heartbeat (see :class:`Probe`).

    Raises:
        ConfigError: ``engine`` is not a :class:`PostgresEngine`.
        DatabaseError: The server cannot be reached or a read failed.
    """
    pg = _engine(engine)
    connect_timeout = max(_MIN_CONNECT_TIMEOUT, math.ceil(timeout))
    try:
        conn: AConn = await psycopg.AsyncConnection.connect(
            pg.options.dsn, autocommit=True, connect_timeout=connect_timeout
        )
        try:
            return await _read(conn, pg.schema, node)
        finally:
            await conn.close()
    except psycopg.Error as exc:
        raise database_error(exc, pg.options.shown) from exc


def _engine(engine: object) -> PostgresEngine:
    if not isinstance(engine, PostgresEngine):
        raise ConfigError(f"a PostgreSQL health check needs a PostgresEngine, got {engine!r}")
    return engine


def _sql(name: str, schema: str) -> str:
    return probe_query(_D, name).replace("{schema}", quote_ident(schema))


async def _read(conn: AConn, schema: str, node: str | None) -> Probe:
    names = {
        "migrations": f"{quote_ident(schema)}.underway_migrations",
        "nodes": f"{quote_ident(schema)}.underway_nodes",
    }
    (has_migrations, has_nodes), *_ = await arows(conn, _sql("tables", schema), names)
    applied: tuple[str, ...] = ()
    if has_migrations:
        found = await arows(conn, _sql("migrations", schema), None)
        applied = tuple(migration_name(int(v), str(n)) for v, n in found)
    age = None
    if node is not None and has_nodes:
        found = await arows(conn, _sql("heartbeat", schema), {"node": node})
        if found:
            age = max(0.0, float(found[0][0]))
    return Probe(applied, age)
