"""Short SQLite writes on the caller's own thread, never waiting for a lock.

Handing a single insert to the engine's database thread and back costs more than the
insert itself. A :class:`DirectWriter` keeps one connection per calling thread with a busy
timeout of zero: a write either gets the lock at once and runs right there (tens of
microseconds, so the event loop barely notices), or reports that the database is busy and
the caller falls back to the database thread, which waits for the lock. WAL checkpoints
are left to the database thread, so a caller never does checkpoint I/O itself.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable
from typing import TypeVar

__all__ = ["DirectWriter"]

T = TypeVar("T")


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
        self._all: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._writes = 0

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=0, isolation_level=None, check_same_thread=False
            )
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA wal_autocheckpoint=0")
            self._local.conn = conn
            with self._lock:
                self._all.append(conn)
        return conn

    def try_write(self, fn: Callable[[sqlite3.Connection], T]) -> tuple[bool, T | None]:
        """Run ``fn`` now if the write lock is free.

        Returns:
            ``(True, result)``, or ``(False, None)`` when the database was busy and nothing
            was written.

        Raises:
            sqlite3.Error: Any other database error (the thread's connection is dropped).
        """
        conn = self._connection()
        try:
            result = fn(conn)
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text:
                return False, None
            self._drop(conn)
            raise
        except sqlite3.Error:
            self._drop(conn)
            raise
        self._writes += 1
        if self._writes % self.checkpoint_every == 0:
            self.checkpoint()
        return True, result

    def _drop(self, conn: sqlite3.Connection) -> None:
        self._local.conn = None
        with self._lock:
            if conn in self._all:
                self._all.remove(conn)
        conn.close()

    def close(self) -> None:
        """Close every thread's connection."""
        with self._lock:
            conns, self._all = self._all, []
        for conn in conns:
            conn.close()
        self._local = threading.local()
