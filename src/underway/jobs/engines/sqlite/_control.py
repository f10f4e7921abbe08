"""Coordination between nodes on one SQLite file: control signals, leases, cron slots.

Signals are rows every node reads: each engine remembers the last id it has read, and ids
only grow (writes to one file are serialised and ``AUTOINCREMENT`` never reuses an id),
so every node sees every signal published after its first read, its own included. Rows
older than :data:`SIGNAL_RETENTION` seconds are deleted on publish.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from underway.jobs.engines._sql import query
from underway.jobs.engines.sqlite._insert import Inserter
from underway.jobs.engines.sqlite._thread import DIALECT, DatabaseThread, write_transaction
from underway.jobs.job import Job, JobSpec

__all__ = ["SIGNAL_RETENTION", "Control"]

_log = logging.getLogger("underway.jobs")
SIGNAL_RETENTION = 60.0  # seconds a published signal stays readable


def _sql(name: str) -> str:
    return query(DIALECT, name)


class Control:
    """Signals, leases and cron slots of one engine (one node)."""

    def __init__(self, db: DatabaseThread, inserter: Inserter) -> None:
        self.db = db
        self.inserter = inserter
        self.last_signal: int | None = None  # the newest signal id this node has read

    async def publish(self, signal: Mapping[str, Any]) -> None:
        """Send ``signal`` to every node (see :meth:`Engine.publish`).

        Raises:
            TypeError: ``signal`` cannot be written as JSON.
        """
        await self.db.acall(_publisher(signal))

    def publish_sync(self, signal: Mapping[str, Any]) -> None:
        """:meth:`publish` for synchronous callers.

        Raises:
            TypeError: ``signal`` cannot be written as JSON.
        """
        self.db.call(_publisher(signal))

    async def signals(self) -> list[dict[str, Any]]:
        """Signals published since the last call; the first call only marks where to start."""
        return await self.db.acall(self._read_signals)

    def _read_signals(self, conn: sqlite3.Connection) -> list[dict[str, Any]]:
        if self.last_signal is None:
            self.last_signal = int(conn.execute(_sql("signal_last")).fetchone()[0])
            return []
        rows = conn.execute(_sql("signals_since"), {"after": self.last_signal}).fetchall()
        out: list[dict[str, Any]] = []
        for signal_id, payload in rows:
            self.last_signal = signal_id
            signal = _decode(signal_id, payload)
            if signal is not None:
                out.append(signal)
        return out

    async def acquire_lease(self, name: str, node: str, ttl: float, now: float) -> bool:
        """Take or renew lease ``name`` for ``node``; whether ``node`` holds it now."""
        params = {"name": name, "node": node, "now": now, "expires_at": now + ttl}
        rows = await self.db.acall(lambda c: c.execute(_sql("lease_acquire"), params).fetchall())
        return bool(rows)

    async def release_lease(self, name: str, node: str) -> None:
        """Give up lease ``name`` if ``node`` holds it."""
        params = {"name": name, "node": node}
        await self.db.acall(lambda c: c.execute(_sql("lease_release"), params))

    async def insert_for_slot(self, name: str, slot: float, spec: JobSpec) -> Job[Any] | None:
        """Record ``slot`` for cron entry ``name`` and insert ``spec``, in one transaction.

        Returns:
            The job, or ``None`` when ``slot`` is not newer than the last slot recorded.
        """

        def run(conn: sqlite3.Connection) -> Job[Any] | None:
            now = time.time()
            with write_transaction(conn):
                params = {"name": name, "slot": slot}
                if not conn.execute(_sql("cron_slot"), params).fetchall():
                    return None
                return self.inserter.write(conn, [spec], now, own_tx=False)[0]

        return await self.db.acall(run)


def _publisher(signal: Mapping[str, Any]) -> Callable[[sqlite3.Connection], None]:
    """What writes ``signal`` on the database thread (dropping expired signals first)."""
    payload = json.dumps(dict(signal))

    def write(conn: sqlite3.Connection) -> None:
        now = time.time()
        with write_transaction(conn):
            conn.execute(_sql("signal_prune"), {"before": now - SIGNAL_RETENTION})
            conn.execute(_sql("signal_publish"), {"at": now, "payload": payload})

    return write


def _decode(signal_id: int, payload: str) -> dict[str, Any] | None:
    """A stored signal as a dict, or ``None`` (logged) when it is not a JSON object."""
    try:
        signal = json.loads(payload)
    except (TypeError, ValueError):
        signal = None
    if not isinstance(signal, dict):
        _log.warning("control signal %d ignored: not a JSON object: %.200r", signal_id, payload)
        return None
    return signal
