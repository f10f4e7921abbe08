"""The SQLite side of a health check: a read-only look at the file.

The file is opened read-only (``mode=ro``) on a connection of the probe's own, in a worker
thread, with a busy timeout no longer than the probe's: the check never creates the file,
migrates it or waits long for a lock. A file that does not exist is reported as such (a node
creates it when it starts). An in-memory database exists only on its engine's connection,
so it is read there, and only while the engine is open.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from pathlib import Path

from underway.errors import ConfigError, DatabaseError
from underway.jobs.engines._probe import Probe, migration_name, probe_query
from underway.jobs.engines.sqlite._engine import SQLiteEngine
from underway.jobs.engines.sqlite._thread import DIALECT, database_error

__all__ = ["describe", "probe"]


def describe(engine: object) -> str:
    """The database as a health report names it: the SQLite file's path."""
    return _engine(engine).path


async def probe(engine: object, *, node: str | None, timeout: float) -> Probe:
    """Read the migrations and ``node``'s heartbeat (see :class:`Probe`).

    Raises:
        ConfigError: ``engine`` is not a :class:`SQLiteEngine`.
        DatabaseError: The file does not exist, cannot be read or is not a database.
    """
    sqlite = _engine(engine)
    if sqlite.path == ":memory:":
        if sqlite._db.conn is None:
            raise DatabaseError(
                "the in-memory SQLite database is not open (it exists only while its app's "
                "engine is open, in that process)"
            )
        return await sqlite._db.acall(lambda conn: _read(conn, node))
    busy = min(timeout, sqlite.busy_timeout)
    return await asyncio.to_thread(_read_file, sqlite.path, node, busy)


def _engine(engine: object) -> SQLiteEngine:
    if not isinstance(engine, SQLiteEngine):
        raise ConfigError(f"a SQLite health check needs a SQLiteEngine, got {engine!r}")
    return engine


def _read_file(path: str, node: str | None, busy: float) -> Probe:
    if not os.path.exists(path):
        raise DatabaseError(
            f"no SQLite database at {path!r} (a node creates it when it starts; "
            "underway migrate creates it now)"
        )
    uri = Path(path).resolve().as_uri() + "?mode=ro"
    try:
        conn = sqlite3.connect(uri, uri=True, timeout=busy, check_same_thread=False)
        try:
            return _read(conn, node)
        finally:
            conn.close()
    except sqlite3.Error as exc:
        raise database_error(exc, path, busy) from exc


def _read(conn: sqlite3.Connection, node: str | None) -> Probe:
    tables = {name for (name,) in conn.execute(probe_query(DIALECT, "tables"))}
    applied: tuple[str, ...] = ()
    if "underway_migrations" in tables:
        found = conn.execute(probe_query(DIALECT, "migrations")).fetchall()
        applied = tuple(migration_name(int(v), str(n)) for v, n in found)
    age = None
    if node is not None and "underway_nodes" in tables:
        row = conn.execute(probe_query(DIALECT, "heartbeat"), {"node": node}).fetchone()
        if row is not None:
            age = max(0.0, time.time() - float(row[0]))
    return Probe(applied, age)
