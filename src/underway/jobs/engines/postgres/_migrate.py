"""Versioned migrations of one PostgreSQL schema, safe to run from many processes at once.

:func:`migration_steps` runs inside one transaction: it takes a transaction-scoped advisory
lock (so concurrent migrators queue), creates the schema and ``underway_migrations`` if
missing, and applies the pending files of ``postgres/migrations`` with ``search_path`` set
to the schema. :func:`check_steps` tells, without locking, whether anything is pending.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Generator

from underway.jobs.engines._sql import migrations
from underway.jobs.engines.postgres._insert import Rows, Step
from underway.jobs.engines.postgres._sql import quote_ident, quote_literal

__all__ = ["check_steps", "migration_steps"]

_D = "postgres"


def _lock_key(schema: str) -> int:
    """A stable 63-bit advisory lock key for the migrations of ``schema``."""
    return zlib.crc32(f"underway.migrate.{schema}".encode()) | (0x5557 << 32)


def check_steps(schema: str) -> Generator[Step, Rows, bool]:
    """Whether every migration of this version is applied in ``schema`` (a read)."""
    table = quote_literal(f"{quote_ident(schema)}.underway_migrations")
    rows = yield f"SELECT to_regclass({table}) IS NOT NULL", None
    if not rows[0][0]:
        return False
    rows = yield f"SELECT version FROM {quote_ident(schema)}.underway_migrations", None
    done = {r[0] for r in rows}
    return all(m.version in done for m in migrations(_D))


def migration_steps(schema: str) -> Generator[Step, Rows, list[str]]:
    """Apply pending migrations (run the steps in one transaction); return their names."""
    q = quote_ident(schema)
    yield "SELECT pg_advisory_xact_lock(%s)", (_lock_key(schema),)
    yield f"CREATE SCHEMA IF NOT EXISTS {q}", None
    yield (
        (
            f"CREATE TABLE IF NOT EXISTS {q}.underway_migrations (version integer PRIMARY KEY, "
            "name text NOT NULL, applied_at timestamptz NOT NULL)"
        ),
        None,
    )
    rows = yield f"SELECT version FROM {q}.underway_migrations", None
    done = {r[0] for r in rows}
    applied: list[str] = []
    for m in migrations(_D):
        if m.version in done:
            continue
        yield f"SET LOCAL search_path TO {q}", None
        yield m.sql, None
        yield (
            f"INSERT INTO {q}.underway_migrations VALUES (%s, %s, to_timestamp(%s))",
            (m.version, m.name, time.time()),
        )
        applied.append(f"{m.version:04d}_{m.name}")
    return applied
