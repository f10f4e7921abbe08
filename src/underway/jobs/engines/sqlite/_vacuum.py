"""Giving the pages of pruned jobs back to the file system: incremental auto-vacuum.

Deleting rows leaves their pages on SQLite's freelist: the file never shrinks by itself.
With ``auto_vacuum = INCREMENTAL`` the file can give free pages back in small steps
(``PRAGMA incremental_vacuum(N)``), each one a short write transaction, so the pruner
reclaims what it deleted without holding the write lock long.

- New files get the mode when the engine creates them: it must be set before the first
  table is created, and before the file is switched to WAL (that writes the first page).
- A file created without it (by an older underway, or by hand) can only change mode by a
  ``VACUUM``, which rewrites the whole file while holding the write lock. The pruner does
  that by itself, once, when the file is small (:data:`AUTO_SWITCH_MAX_BYTES`: a rewrite
  of a few MiB takes a fraction of a second); for a larger file it logs a warning once,
  and the one-time step is ``SQLiteEngine.enable_incremental_vacuum()`` at a quiet moment
  (other nodes' writes wait for the rewrite, up to their busy timeout).
"""

from __future__ import annotations

import logging
import sqlite3

__all__ = [
    "AUTO_SWITCH_MAX_BYTES",
    "INCREMENTAL",
    "auto_vacuum",
    "file_bytes",
    "log_too_large",
    "reclaim_step",
    "set_incremental_on_new_file",
    "switch_to_incremental",
]

_log = logging.getLogger("underway.jobs")
INCREMENTAL = 2  # PRAGMA auto_vacuum: 0 NONE, 1 FULL, 2 INCREMENTAL
AUTO_SWITCH_MAX_BYTES = 16 * 1024 * 1024


def auto_vacuum(conn: sqlite3.Connection) -> int:
    """The file's ``auto_vacuum`` mode (0 none, 1 full, 2 incremental)."""
    return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])


def file_bytes(conn: sqlite3.Connection) -> int:
    """The database's size in bytes (pages times page size, the WAL's pages included)."""
    pages = int(conn.execute("PRAGMA page_count").fetchone()[0])
    return pages * int(conn.execute("PRAGMA page_size").fetchone()[0])


def set_incremental_on_new_file(conn: sqlite3.Connection) -> None:
    """Ask for incremental auto-vacuum if the file is still empty (no page written yet).

    Call it before anything writes to the file (WAL mode included); on a file that has
    pages already it changes nothing (see :func:`switch_to_incremental`).
    """
    if int(conn.execute("PRAGMA page_count").fetchone()[0]) == 0:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")


def switch_to_incremental(conn: sqlite3.Connection) -> None:
    """Rewrite the file with ``VACUUM`` so that it uses incremental auto-vacuum.

    Holds the write lock for the whole rewrite. Must run outside a transaction.
    """
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("VACUUM")


def reclaim_step(conn: sqlite3.Connection, pages: int) -> int:
    """Give up to ``pages`` free pages back to the file system, in one write transaction.

    Returns:
        How many pages were given back (0 when the freelist is empty or the file is not
        in incremental auto-vacuum mode).
    """
    if auto_vacuum(conn) != INCREMENTAL:
        return 0
    free = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
    if free == 0:
        return 0
    # executescript steps the pragma to its end; execute() would free a single page.
    conn.executescript(f"PRAGMA incremental_vacuum({min(free, int(pages))})")
    return free - int(conn.execute("PRAGMA freelist_count").fetchone()[0])


def log_too_large(path: str, size: int) -> None:
    """Warn that ``path`` needs the one-time switch to incremental auto-vacuum."""
    _log.warning(
        "SQLite database %r (%d MiB) does not give the pages of pruned jobs back to the "
        "file system: it was created without incremental auto-vacuum, and switching needs "
        "a VACUUM that rewrites the file while holding the write lock. Run "
        "engine.enable_incremental_vacuum() once at a quiet moment (files up to %d MiB are "
        "switched by the pruner itself)",
        path,
        size // (1024 * 1024),
        AUTO_SWITCH_MAX_BYTES // (1024 * 1024),
    )
