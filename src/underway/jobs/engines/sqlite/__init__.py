"""The SQLite engine: the zero-setup default, safe for several processes on one file.

Its parts, one private module each: the database thread that owns the connection
(``_thread``), the direct writer of synchronous callers (``_direct``), inserts
(``_insert``), claims and acknowledgements (``_attempts``), queue control (``_control``),
incremental vacuum (``_vacuum``) and the named SQL files (``sql/``, ``migrations/``).
"""

from __future__ import annotations

from underway.jobs.engines.sqlite._engine import PRUNE_BATCH, RECLAIM_STEP, SQLiteEngine

__all__ = ["PRUNE_BATCH", "RECLAIM_STEP", "SQLiteEngine"]
