"""The PostgreSQL engine (extra ``underway[postgres]``): many nodes on one database.

Its parts, one private module each: the pools (``_pool``), the URL and its options
(``_url``), inserts (``_insert``), wake-ups by LISTEN/NOTIFY (``_listen``), the heartbeat of
the node (``_beat``), queue signals (``_signals``), migrations (``_migrate``), the named SQL
files (``sql/``, ``migrations/``) and the adapters of an application's own connection
(``adapters/``).
"""

from __future__ import annotations

from underway.jobs.engines.postgres._engine import PostgresEngine

__all__ = ["PostgresEngine"]
