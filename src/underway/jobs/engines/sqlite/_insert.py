"""Inserting jobs into SQLite: the database thread, the caller's thread, or the app's connection.

A few jobs are written on the caller's own thread when the write lock is free at once (see
:mod:`underway.jobs.engines.sqlite._direct`); everything else goes through the database
thread. Inserting through the application's own connection (``conn=``) inside its open
transaction needs a file that is already migrated and in WAL mode.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

from underway.errors import ConfigError, DatabaseError
from underway.jobs.engines._inserted import chunks, match_inserted
from underway.jobs.engines._rows import COLUMNS, job_from_row
from underway.jobs.engines._sql import migrations, query
from underway.jobs.engines.sqlite._direct import DirectWriter
from underway.jobs.engines.sqlite._thread import (
    DIALECT,
    DatabaseThread,
    database_error,
    write_transaction,
)
from underway.jobs.job import Job, JobSpec

__all__ = ["Inserter"]

_SYNCS_EACH_COMMIT = {"FULL", "EXTRA"}  # a commit waits for fsync: not on the caller's thread
_DIRECT_MAX = 50  # inserts of up to this many jobs may run on the caller's thread
_APP_CONN = " (through the application's connection)"


class Inserter:
    """Writes job specs to the database, by the shortest way available."""

    def __init__(self, db: DatabaseThread) -> None:
        self.db = db
        self.direct = DirectWriter(
            db.path, synchronous=db.options.synchronous, checkpoint=db.checkpoint_later
        )

    async def insert(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert jobs (see :meth:`Engine.insert`)."""
        if conn is not None:
            return self.insert_sync(specs, conn=conn)
        now = time.time()
        done, jobs = self._insert_direct(specs, now)
        if done:
            return jobs
        return await self.db.acall(lambda c: self.write(c, specs, now, own_tx=True))

    def insert_sync(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert jobs from synchronous code; ``conn`` is an application ``sqlite3`` connection."""
        now = time.time()
        if conn is None:
            done, jobs = self._insert_direct(specs, now)
            if done:
                return jobs
            return self.db.call(lambda c: self.write(c, specs, now, own_tx=True))
        if not isinstance(conn, sqlite3.Connection):
            raise ConfigError(
                f"conn for a SQLite database must be a sqlite3.Connection, got {type(conn)!r}"
            )
        if self.db.conn is None:  # the schema exists before the app's transaction uses it
            self._require_ready(conn)
            self.db.call(lambda c: None)
        try:
            return self.write(conn, specs, now, own_tx=False)
        except sqlite3.Error as exc:
            raise database_error(exc, self.db.path, None, via=_APP_CONN) from exc

    def _require_ready(self, conn: sqlite3.Connection) -> None:
        """Fail at once if opening the engine would have to write inside the app's transaction.

        Switching the file to WAL and migrating need the write lock, which the application's
        open transaction may hold: the engine would wait for it until its busy timeout.
        """
        path = self.db.path
        if not conn.in_transaction or path == ":memory:":
            return
        try:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            done = _applied_versions(conn)
        except sqlite3.Error as exc:
            raise database_error(exc, path, None, via=_APP_CONN) from exc
        if any(m.version not in done for m in migrations(DIALECT)):
            missing = "has no underway tables yet (or an older schema)"
        elif mode != "wal":
            missing = f"is not in WAL mode yet (journal_mode={mode!r})"
        else:
            return
        raise DatabaseError(
            f"SQLite database {path!r} {missing}, and the engine cannot prepare it "
            "while the application's transaction holds the file: run `underway migrate` or "
            "call jobs.migrate_sync() at startup before enqueueing inside your own transaction"
        )

    def _insert_direct(self, specs: Sequence[JobSpec], now: float) -> tuple[bool, list[Job[Any]]]:
        """Insert a few jobs on this thread if the write lock is free at once (no hand-off)."""
        if (
            self.db.conn is None
            or self.db.path == ":memory:"
            or len(specs) > _DIRECT_MAX
            or self.db.options.synchronous in _SYNCS_EACH_COMMIT
        ):
            return False, []
        try:
            done, jobs = self.direct.try_write(lambda c: self.write(c, specs, now, own_tx=True))
        except sqlite3.Error as exc:
            raise database_error(exc, self.db.path, None) from exc
        return done, jobs or []

    def write(
        self, conn: sqlite3.Connection, specs: Sequence[JobSpec], now: float, *, own_tx: bool
    ) -> list[Job[Any]]:
        """Insert ``specs`` with ``conn``, in the order given.

        Args:
            conn: The connection to write with.
            specs: The jobs to insert.
            now: The insertion time.
            own_tx: Whether to open a write transaction when one statement is not enough;
                false when ``conn`` is already inside one.
        """
        if not specs:
            return []
        keys = [s.unique_key for s in specs if s.unique_key is not None]
        returned: list[tuple[int, str | None]] = []
        # One INSERT statement is atomic on its own; a transaction is needed only when
        # unique keys are expired first or the jobs span several statements.
        max_rows = self.db.max_rows
        own_tx = own_tx and (bool(keys) or len(specs) > max_rows)
        with write_transaction(conn) if own_tx else nullcontext():
            for key_chunk in chunks(keys, 500):
                marks = ",".join("?" * len(key_chunk))
                conn.execute(_sql("unique_expire").format(keys=marks), [*key_chunk, now])
            for chunk in chunks(specs, max_rows):
                params: list[Any] = []
                for s in chunk:
                    params.extend(_insert_params(s, now))
                values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?,?)"] * len(chunk))
                returned.extend(conn.execute(_sql("insert").format(values=values), params))
            existing = _existing(conn, keys, {k for _, k in returned})
        return match_inserted(specs, sorted(returned), existing, now)

    def close(self) -> None:
        """Close the per-thread connections of the direct path."""
        self.direct.close()


def _sql(name: str) -> str:
    return query(DIALECT, name)


def _applied_versions(conn: sqlite3.Connection) -> set[int]:
    try:
        return {r[0] for r in conn.execute("SELECT version FROM underway_migrations")}
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        return set()


def _existing(
    conn: sqlite3.Connection, keys: list[str], inserted: set[str | None]
) -> dict[str, Job[Any]]:
    """The unique jobs that hold the keys of ``keys`` that were not inserted."""
    wanted = sorted({k for k in keys if k not in inserted})
    found: dict[str, Job[Any]] = {}
    for chunk in chunks(wanted, 500):
        sql = _sql("unique_existing").format(
            columns=COLUMNS + ", unique_key", keys=",".join("?" * len(chunk))
        )
        for row in conn.execute(sql, chunk):
            found[row[-1]] = job_from_row(row, conflict=True, lenient=True)
    return found


def _insert_params(s: JobSpec, now: float) -> tuple[Any, ...]:
    at = now if s.scheduled_at is None else s.scheduled_at
    state = "scheduled" if at > now else "available"
    until = None
    if s.unique_key is not None and s.unique_period is not None:
        until = now + s.unique_period
    return (
        state,
        s.queue,
        s.worker,
        s.args_json,
        s.meta_json,
        json.dumps(list(s.tags)),
        s.priority,
        s.max_attempts,
        now,
        at,
        s.unique_key,
        s.unique_states,
        until,
    )
