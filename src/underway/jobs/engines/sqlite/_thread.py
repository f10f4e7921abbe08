"""The SQLite engine's database thread: one connection, owned by one dedicated thread.

Every statement of the engine runs on this thread, so coroutines never block the event loop
and synchronous callers share the same connection. The connection is opened lazily: a
new file is set to incremental auto-vacuum, the file is put in WAL mode, tuned, and
migrated on first use. ``sqlite3`` errors leave as
:class:`~underway.errors.DatabaseError` naming the file; the connection is reopened only
when an error says it or its file is broken.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import parse_qs, urlsplit

from underway.errors import ConfigError, DatabaseError, DatabaseLocked
from underway.jobs.engines._sql import migrations, split_statements
from underway.jobs.engines.sqlite._direct import is_broken, is_busy, rollback_quietly
from underway.jobs.engines.sqlite._vacuum import set_incremental_on_new_file

__all__ = [
    "DIALECT",
    "DatabaseThread",
    "SQLiteOptions",
    "database_error",
    "migrate_schema",
    "write_transaction",
]

T = TypeVar("T")
_log = logging.getLogger("underway.jobs")
DIALECT = "sqlite"
_INSERT_COLUMNS = 13  # bound parameters per inserted job
_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}


@dataclass(frozen=True, slots=True)
class SQLiteOptions:
    """What a ``sqlite:///`` URL says: the file and the connection options."""

    path: str
    busy_timeout: float
    synchronous: str

    @classmethod
    def from_url(cls, url: str) -> SQLiteOptions:
        """Parse ``url``.

        Raises:
            ConfigError: The URL is malformed or has an unknown or invalid option.
        """
        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise ConfigError(
                "SQLite URL must look like sqlite:///file.db or sqlite:////abs/file.db, "
                f"got {url!r}"
            )
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            busy_timeout = float(options.pop("busy_timeout", "10"))
        except ValueError:
            raise ConfigError(f"busy_timeout must be seconds in {url!r}") from None
        synchronous = options.pop("synchronous", "NORMAL").upper()
        if synchronous not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {sorted(_SYNCHRONOUS)} in {url!r}")
        if options:
            raise ConfigError(f"unknown SQLite option(s) {sorted(options)} in {url!r}")
        return cls(path, busy_timeout, synchronous)


@contextmanager
def write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction (``BEGIN IMMEDIATE``); rolled back if the body or COMMIT fails."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        rollback_quietly(conn)
        raise


def migrate_schema(conn: sqlite3.Connection) -> list[str]:
    """Apply the pending SQLite migrations in one write transaction.

    Returns:
        The names of the migrations applied (empty when the schema was current).
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS underway_migrations "
        "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
    )
    pending = migrations(DIALECT)
    done = {r[0] for r in conn.execute("SELECT version FROM underway_migrations")}
    if all(m.version in done for m in pending):
        return []
    applied = []
    with write_transaction(conn):
        done = {r[0] for r in conn.execute("SELECT version FROM underway_migrations")}
        for m in pending:
            if m.version in done:
                continue
            for statement in split_statements(m.sql):
                conn.execute(statement)
            conn.execute(
                "INSERT INTO underway_migrations VALUES (?, ?, ?)",
                (m.version, m.name, time.time()),
            )
            applied.append(f"{m.version:04d}_{m.name}")
    return applied


def database_error(
    exc: sqlite3.Error, path: str, busy_timeout: float | None, *, via: str = ""
) -> DatabaseError:
    """The :class:`DatabaseError` for ``exc``, naming the file (and what was waited for)."""
    if is_busy(exc):
        waited = "" if busy_timeout is None else f" (waited up to busy_timeout={busy_timeout}s)"
        return DatabaseLocked(
            f"SQLite database {path!r} is locked by another connection{waited}{via}: {exc}"
        )
    return DatabaseError(f"SQLite database {path!r} failed{via}: {exc}")


def _retry_busy(fn: Callable[[], T], timeout: float) -> T:
    """Run ``fn``, again while SQLite reports busy at once, for up to ``timeout`` seconds.

    SQLite answers busy without waiting when waiting could deadlock: two connections
    switching a new file to WAL at the same moment, for instance. The other one finishes
    within milliseconds, so trying again shortly after succeeds.
    """
    deadline = time.monotonic() + timeout
    delay = 0.001
    while True:
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc) or time.monotonic() + delay > deadline:
                raise
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


class DatabaseThread:
    """The engine's connection and the single thread that uses it."""

    def __init__(self, options: SQLiteOptions) -> None:
        self.options = options
        self.path = options.path
        self.conn: sqlite3.Connection | None = None
        self.max_rows = 500  # jobs per INSERT statement, within the bound-parameter limit
        self.data_version: int | None = None
        self.applied_on_connect: list[str] = []
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._wal_warned = False

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="underway-sqlite")
            return self._pool

    def connect(self) -> sqlite3.Connection:
        """The open connection; opened, put in WAL mode and migrated on first use."""
        if self.conn is not None:
            return self.conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.options.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        try:
            if self.path != ":memory:":
                set_incremental_on_new_file(conn)  # before WAL mode writes the first page
                self.enable_wal(conn)
            conn.execute(f"PRAGMA synchronous={self.options.synchronous}")
            conn.execute("PRAGMA cache_size=-16000")
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self.max_rows = max(1, min(500, limit // _INSERT_COLUMNS))
            self.conn = conn
            self.applied_on_connect = migrate_schema(conn)
            self.data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        except BaseException:
            self.conn = None
            conn.close()
            raise
        return conn

    def enable_wal(self, conn: sqlite3.Connection) -> str:
        """Put the file in WAL mode; warn once if the file system keeps another mode.

        Returns:
            The journal mode in effect.
        """
        mode = str(
            _retry_busy(
                lambda: conn.execute("PRAGMA journal_mode=WAL").fetchone()[0],
                self.options.busy_timeout,
            )
        ).lower()
        if mode != "wal" and not self._wal_warned:
            self._wal_warned = True
            _log.warning(
                "SQLite database %r could not be put in WAL mode (journal_mode=%r is in "
                "effect): readers and writers will block each other; keep the file on a "
                "local file system that supports WAL",
                self.path,
                mode,
            )
        return mode

    def run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection, on the calling (database) thread."""
        try:
            return fn(self.connect())
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> DatabaseError:
        """Map ``exc``; drop the connection only if it cannot be used as it is."""
        conn = self.conn
        if conn is not None and (is_broken(exc) or not rollback_quietly(conn)):
            self.conn = None
            conn.close()
        return database_error(exc, self.path, self.options.busy_timeout)

    def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the database thread and wait (for synchronous callers)."""
        return self._executor().submit(self.run, fn).result()

    async def acall(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the database thread without blocking the event loop."""
        return await asyncio.wrap_future(self._executor().submit(self.run, fn))

    def checkpoint_later(self) -> None:
        """Ask the database thread to fold the WAL back into the file (without waiting)."""
        with self._pool_lock:
            pool = self._pool
        if pool is not None:
            pool.submit(self.run, lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)"))

    def migrate(self) -> list[str]:
        """Apply pending migrations on the database thread.

        Returns:
            The migrations applied since connecting or since last asked, including those
            applied on connection; empty when the schema was current.
        """
        applied = self.call(migrate_schema)
        earlier, self.applied_on_connect = self.applied_on_connect, []
        return [*earlier, *applied]

    async def close(self) -> None:
        """Close the connection and stop the thread. Idempotent."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return

        def shut() -> None:
            if self.conn is not None:
                self.conn.close()
                self.conn = None

        await asyncio.wrap_future(pool.submit(shut))
        pool.shutdown(wait=True)

    def close_sync(self) -> None:
        """:meth:`close` for synchronous callers."""
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        conn, self.conn = self.conn, None
        if conn is not None:
            pool.submit(conn.close).result()
        pool.shutdown(wait=True)
