"""Short SQLite writes on the caller's own thread, never waiting for a lock.

Handing a single insert to the engine's database thread and back costs more than the
insert itself. A :class:`DirectWriter` keeps one connection per calling thread with a busy
timeout of zero: a write either gets the lock at once and runs right there (tens of
microseconds, so the event loop barely notices), or reports that the database is busy and
the caller falls back to the database thread, which waits for the lock. WAL checkpoints
are left to the database thread, so a caller never does checkpoint I/O itself.

A thread's connection is closed once the thread has ended (checked whenever another thread
opens one), so a server that starts a thread per request does not gather open files.

This module also says which ``sqlite3`` errors mean "busy" and which mean the connection
itself can no longer be used, for every SQLite connection the engine holds.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DirectWriter", "is_broken", "is_busy", "rollback_quietly"]

T = TypeVar("T")

_BUSY = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
# SQLITE_IOERR, SQLITE_CORRUPT, SQLITE_CANTOPEN, SQLITE_NOTADB: the file or the handle is bad.
_BROKEN = {10, 11, 14, 26}
_READONLY_DBMOVED = 1032  # the file was deleted or replaced under the connection


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means another connection holds a lock the statement needed."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BUSY
    text = str(exc)
    return "database is locked" in text or "database table is locked" in text


def is_broken(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` means the connection or its file can no longer be used as it is."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in _BROKEN or code == _READONLY_DBMOVED
    return isinstance(exc, sqlite3.ProgrammingError) and "closed" in str(exc)


def rollback_quietly(conn: sqlite3.Connection) -> bool:
    """End ``conn``'s open transaction, if any, ignoring a failure to do so.

    Returns:
        Whether ``conn`` is now outside any transaction (usable as it is).
    """
    try:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return not conn.in_transaction
    except sqlite3.Error:  # the error being handled already says what went wrong
        return False


class DirectWriter:
    """Per-thread connections to one SQLite file for writes that must not wait."""

    def __init__(
        self,
        path: str,
        *,
        synchronous: str,
        checkpoint: Callable[[], None],
        checkpoint_every: int = 1000,
    ) -> None:
        self.path = path
        self.synchronous = synchronous
        self.checkpoint = checkpoint
        self.checkpoint_every = checkpoint_every
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._lock = threading.Lock()
        self._writes = 0

    @property
    def open_connections(self) -> int:
        """How many per-thread connections are open now."""
        with self._lock:
            return len(self._all)

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            try:
                conn.execute(f"PRAGMA synchronous={self.synchronous}")
                conn.execute("PRAGMA wal_autocheckpoint=0")
            except BaseException:
                conn.close()
                raise
            self._local.conn = conn
            with self._lock:
                ended = [c for t, c in self._all if not t.is_alive()]
                self._all = [(t, c) for t, c in self._all if t.is_alive()]
                self._all.append((threading.current_thread(), conn))
            for old in ended:
                old.close()
        return conn

    def try_write(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Run ``fn`` now if the write lock is free.

        Returns:
            ``(True, result)``, or ``(False, None)`` when the database was busy and nothing
            was written.

        Raises:
            sqlite3.Error: Any other database error (the thread's connection is dropped
                when the error says it is broken).
        """
        try:
            conn = self._connection()
        except sqlite3.Error as exc:  # a new connection's first statement can meet a lock
            if is_busy(exc):
                return False, None
            raise
        try:
            result = fn(conn)
        except sqlite3.Error as exc:
            if not rollback_quietly(conn) or is_broken(exc):
                self._drop(conn)
            if is_busy(exc):
                return False, None
            raise
        self._writes += 1
        if self._writes % self.checkpoint_every == 0:
            self.checkpoint()
        return True, result

    def _drop(self, conn: sqlite3.Connection) -> None:
        self._local.conn = None
        with self._lock:
            self._all = [(t, c) for t, c in self._all if c is not conn]
        conn.close()

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            conns, self._all = self._all, []
        for _, conn in conns:
            conn.close()
        self._local = threading.local()
