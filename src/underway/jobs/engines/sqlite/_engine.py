"""The SQLite engine: the zero-setup default, safe for several processes on one file.

Every statement runs on one dedicated thread that owns the connection
(:mod:`~underway.jobs.engines.sqlite._thread`), so coroutines never block the event loop
and synchronous callers (``enqueue_sync``, the CLI, test helpers) share the same
connection. Writes that span statements use ``BEGIN IMMEDIATE`` and the file is in WAL mode
with a busy timeout, so concurrent node processes queue for the write lock instead of
failing. ``PRAGMA data_version`` tells cheaply when another process wrote. Inserts live in
:mod:`~underway.jobs.engines.sqlite._insert`; signals, leases and cron slots, which
coordinate the nodes sharing the file, in :mod:`~underway.jobs.engines.sqlite._control`.

Every ``sqlite3`` error reaches callers as :class:`~underway.errors.DatabaseError` naming
the file (:class:`~underway.errors.DatabaseLocked` when another connection held a lock past
the busy timeout); the connection is reopened only when an error says it or its file is
broken. Inserting through the application's own connection (``conn=``) inside its open
transaction needs a file that is already migrated: run ``underway migrate`` (or
``jobs.migrate_sync()``) at startup.

The pruner deletes finished jobs in short batches through their index and gives the freed
pages back to the file system (incremental auto-vacuum, set on every new file). A file made
by an older version without it is switched by the pruner when it is small; a larger one
needs :meth:`SQLiteEngine.enable_incremental_vacuum` once (a ``VACUUM`` that rewrites the
file while holding the write lock; see :mod:`~underway.jobs.engines.sqlite._vacuum`).

URL: ``sqlite:///path.db`` (relative), ``sqlite:////abs/path.db`` or
``sqlite:///:memory:``; options as query parameters: ``busy_timeout`` (seconds, default
10) and ``synchronous`` (``NORMAL`` by default, which survives a killed process; ``FULL``
also survives power loss; small inserts then always go through the database thread, so an
fsync never runs on the event loop).
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from underway.jobs.engines._nodes import node_row
from underway.jobs.engines._rows import COLUMNS, job_from_row
from underway.jobs.engines._sql import query
from underway.jobs.engines.base import BulkResult, CounterRow, JobFilter, NodeRow, StageResult
from underway.jobs.engines.sqlite._attempts import ack_writer, claim
from underway.jobs.engines.sqlite._control import Control
from underway.jobs.engines.sqlite._counters import Tally, prune_counters, read_counters
from underway.jobs.engines.sqlite._direct import DirectWriter
from underway.jobs.engines.sqlite._filter import filtered
from underway.jobs.engines.sqlite._insert import Inserter
from underway.jobs.engines.sqlite._thread import (
    DIALECT,
    DatabaseThread,
    SQLiteOptions,
    write_transaction,
)
from underway.jobs.engines.sqlite._vacuum import (
    AUTO_SWITCH_MAX_BYTES,
    INCREMENTAL,
    auto_vacuum,
    file_bytes,
    log_too_large,
    reclaim_step,
    switch_to_incremental,
)
from underway.jobs.job import FINISHED_STATES, Job, JobSpec, JobState
from underway.jobs.outcomes import Ack

__all__ = ["PRUNE_BATCH", "RECLAIM_STEP", "SQLiteEngine"]

_log = logging.getLogger("underway.jobs")
PRUNE_BATCH = 500  # rows per delete: a few milliseconds of write lock with any history
RECLAIM_STEP = 256  # pages per incremental-vacuum step (1 MiB of 4 KiB pages)


def _sql(name: str) -> str:
    return query(DIALECT, name)


def _prune_batch(conn: sqlite3.Connection, params: dict[str, Any]) -> int:
    """Delete one batch of finished jobs (its own transaction); how many went."""
    return int(conn.execute(_sql("prune"), params).rowcount)


def _by_queue(rows: list[tuple[Any, ...]]) -> dict[str, int]:
    """How many of ``rows`` (each a job's queue, first) are in each queue."""
    counts: dict[str, int] = {}
    for queue, *_ in rows:
        counts[queue] = counts.get(queue, 0) + 1
    return counts


def _count_cancelled(conn: sqlite3.Connection, rows: list[tuple[Any, ...]], now: float) -> None:
    """Add jobs cancelled by request (``(queue, worker)`` rows) to the minute's counters."""
    tally = Tally()
    tally.add_rows(rows, "cancelled", now)
    tally.write(conn)


def _meta(text: str | None) -> dict[str, Any]:
    """A heartbeat's meta column as a dict (empty when it is not a JSON object)."""
    try:
        meta = json.loads(text or "{}")
    except ValueError:
        return {}
    return meta if isinstance(meta, dict) else {}


class SQLiteEngine:
    """Jobs stored in one SQLite file. See the module docstring for the URL."""

    _write = staticmethod(write_transaction)

    def __init__(self, url: str) -> None:
        options = SQLiteOptions.from_url(url)
        self.url = url
        self.path = options.path
        self.busy_timeout = options.busy_timeout
        self.synchronous = options.synchronous
        self._db = DatabaseThread(options)
        self._inserter = Inserter(self._db)
        self._control = Control(self._db, self._inserter)
        self._vacuum_checked = False

    def __repr__(self) -> str:
        return f"<SQLiteEngine {self.path}>"

    @property
    def _conn(self) -> sqlite3.Connection | None:
        """The database thread's connection (``None`` until opened or after an error)."""
        return self._db.conn

    @property
    def _direct(self) -> DirectWriter:
        return self._inserter.direct

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        return self._db.enable_wal(conn)

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and apply pending migrations."""
        await self._db.acall(lambda conn: None)

    async def close(self) -> None:
        """Close the connections and stop the database thread."""
        self._inserter.close()
        await self._db.close()

    def close_sync(self) -> None:
        """:meth:`close` for synchronous callers."""
        self._inserter.close()
        self._db.close_sync()

    def migrate(self) -> list[str]:
        """Apply pending migrations (they are also applied on first connection).

        Returns:
            The migrations applied by this engine since it connected or was last asked,
            including those applied on connection; empty when the schema was current.
        """
        return self._db.migrate()

    # -- insert -----------------------------------------------------------------------------

    async def insert(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert jobs (see :meth:`Engine.insert`)."""
        return await self._inserter.insert(specs, conn=conn)

    def insert_sync(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert jobs from synchronous code; ``conn`` is an application ``sqlite3`` connection."""
        return self._inserter.insert_sync(specs, conn=conn)

    # -- coordination -----------------------------------------------------------------------

    async def publish(self, signal: Mapping[str, Any]) -> None:
        """Send a control signal (a JSON object) to every node, this one included."""
        await self._control.publish(signal)

    def publish_sync(self, signal: Mapping[str, Any]) -> None:
        """:meth:`publish` for synchronous callers (on the database thread)."""
        self._control.publish_sync(signal)

    async def signals(self) -> list[dict[str, Any]]:
        """Control signals published since the last call (the first call returns none)."""
        return await self._control.signals()

    async def acquire_lease(self, name: str, node: str, ttl: float, now: float) -> bool:
        """Take or renew the lease ``name`` for ``node`` until ``now + ttl``.

        Returns:
            Whether ``node`` holds the lease now (another node's unexpired lease wins).
        """
        return await self._control.acquire_lease(name, node, ttl, now)

    async def release_lease(self, name: str, node: str) -> None:
        """Give up the lease ``name`` if ``node`` holds it."""
        await self._control.release_lease(name, node)

    async def insert_for_slot(self, name: str, slot: float, spec: JobSpec) -> Job[Any] | None:
        """Insert ``spec`` for cron entry ``name``'s ``slot`` unless that slot already fired.

        Returns:
            The job, or ``None`` when ``slot`` is not newer than the last slot recorded.
        """
        return await self._control.insert_for_slot(name, slot, spec)

    # -- runtime ----------------------------------------------------------------------------

    async def fetch(
        self,
        queue: str,
        limit: int,
        node: str,
        now: float,
        *,
        workers: Collection[str] | None = None,
    ) -> list[Job[Any]]:
        """Claim up to ``limit`` available jobs of ``queue`` in start order.

        With ``workers``, only jobs of those workers. A queue with nothing available is
        seen with a read, without taking the write lock. A claimed row that cannot be
        decoded is discarded in the same transaction, with an error naming the column; the
        other jobs are returned.
        """
        names = None if workers is None else json.dumps(list(workers))
        params = {"queue": queue, "limit": limit, "node": node, "now": now, "workers": names}
        return await self._db.acall(lambda c: claim(c, params))

    async def ack(self, acks: Sequence[Ack], node: str) -> None:
        """Record finished attempts in one transaction."""
        await self._db.acall(ack_writer(acks, node))

    async def stage(self, now: float, *, queue: str | None = None) -> StageResult:
        """Make due scheduled and retryable jobs available."""
        params = {"now": now, "queue": queue}
        rows = await self._db.acall(lambda c: c.execute(_sql("stage"), params).fetchall())
        return StageResult(_by_queue(rows))

    async def prune(self, max_age: Mapping[JobState, float], now: float, limit: int) -> int:
        """Delete finished jobs older than their state's age, at most ``limit`` of them.

        The rows go in batches of at most :data:`PRUNE_BATCH`, each its own short write
        transaction found through the finished-jobs index, handed to the database thread
        one at a time, so claims and acks (of this process and of others) run in between.
        The pages freed are then given back to the file system in steps of
        :data:`RECLAIM_STEP` pages (see :mod:`~underway.jobs.engines.sqlite._vacuum`).
        """
        total = 0
        for state, age in max_age.items():
            if state not in FINISHED_STATES:
                continue
            while total < limit:
                batch = min(PRUNE_BATCH, limit - total)
                params = {"state": state.value, "before": now - age, "limit": batch}
                deleted = await self._paced(functools.partial(_prune_batch, params=params))
                total += deleted
                if deleted < batch:
                    break
        if total:
            await self.reclaim()
        return total

    async def prune_counters(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` per-minute counters of minutes before ``before``, oldest
        first, in batches of at most :data:`PRUNE_BATCH` (each its own short write
        transaction through the primary key, paced as the jobs' batches)."""
        total = 0
        while total < limit:
            batch = min(PRUNE_BATCH, limit - total)
            params = {"before": before, "limit": batch}
            deleted = await self._paced(functools.partial(prune_counters, params=params))
            total += deleted
            if deleted < batch:
                break
        return total

    async def reclaim(self) -> int:
        """Give free pages back to the file system in short steps; how many were freed.

        A file created without incremental auto-vacuum is switched to it here once if it
        is small; a larger one is left as it is, with a warning (see
        :meth:`enable_incremental_vacuum`).
        """
        if not self._vacuum_checked:
            self._vacuum_checked = True
            await self._db.acall(self._switch_if_small)
        freed = 0
        while True:
            step = await self._paced(functools.partial(reclaim_step, pages=RECLAIM_STEP))
            freed += step
            if step < RECLAIM_STEP:
                return freed

    async def _paced(self, fn: Callable[[sqlite3.Connection], int]) -> int:
        """Run one housekeeping write, then leave the write lock free as long as it took.

        Other processes wait for the lock in SQLite's busy handler, which sleeps between
        tries (up to 100 ms): back-to-back batches would keep finding it taken.
        """
        started = time.monotonic()
        result = await self._db.acall(fn)
        await asyncio.sleep(max(time.monotonic() - started, 0.001))
        return result

    def _switch_if_small(self, conn: sqlite3.Connection) -> None:
        if self.path == ":memory:" or auto_vacuum(conn) != 0:
            return
        size = file_bytes(conn)
        if size > AUTO_SWITCH_MAX_BYTES:
            log_too_large(self.path, size)
            return
        _log.info("switching SQLite database %r to incremental auto-vacuum", self.path)
        switch_to_incremental(conn)

    def enable_incremental_vacuum(self) -> bool:
        """Switch a file created without incremental auto-vacuum to it (a one-time step).

        New files have it from the start, and the pruner switches small files by itself.
        This rewrites the whole file (``VACUUM``) while holding the write lock, so other
        nodes' writes wait until it is done: run it at a quiet moment.

        Returns:
            Whether the file was switched (``False`` if it already used the mode, or is
            in memory).
        """

        def run(conn: sqlite3.Connection) -> bool:
            if self.path == ":memory:" or auto_vacuum(conn) == INCREMENTAL:
                return False
            switch_to_incremental(conn)
            return True

        return self._db.call(run)

    async def heartbeat(self, node: str, now: float, meta: Mapping[str, Any]) -> None:
        """Record that ``node`` is alive."""
        params = {"node": node, "now": now, "meta": json.dumps(dict(meta))}
        await self._db.acall(lambda c: c.execute(_sql("heartbeat"), params))

    async def live_nodes(self, stale_before: float, now: float) -> dict[str, dict[str, Any]]:
        """Nodes that heartbeated since ``stale_before``, with their meta."""
        found = await self._db.acall(
            lambda c: c.execute(_sql("live_nodes"), {"stale_before": stale_before}).fetchall()
        )
        return {name: _meta(text) for name, text in found}

    async def available_sample(
        self, queues: Collection[str], sample: int
    ) -> dict[tuple[str, str], int]:
        """Workers of the head of each queue (see :meth:`Engine.available_sample`)."""

        def run(conn: sqlite3.Connection) -> dict[tuple[str, str], int]:
            out: dict[tuple[str, str], int] = {}
            for queue in sorted(queues):
                params = {"queue": queue, "sample": sample}
                for worker, n in conn.execute(_sql("available_sample"), params):
                    out[queue, worker] = n
            return out

        return await self._db.acall(run)

    async def executing(self, node: str) -> list[tuple[int, int]]:
        """``(id, attempt)`` of the jobs recorded as executing on ``node``."""
        rows = await self._db.acall(
            lambda c: c.execute(_sql("executing"), {"node": node}).fetchall()
        )
        return [(row[0], row[1]) for row in rows]

    async def forget_node(self, node: str) -> None:
        """Remove ``node``'s heartbeat."""
        await self._db.acall(lambda c: c.execute(_sql("forget_node"), {"node": node}))

    async def rescue(self, stale_before: float, now: float) -> dict[str, int]:
        """Return the jobs of silent nodes to their queues (see :meth:`Engine.rescue`)."""

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            tally = Tally()
            with write_transaction(conn):
                conn.execute(_sql("forget_stale_nodes"), {"stale_before": stale_before})
                rows = conn.execute(
                    _sql("rescue"), {"stale_before": stale_before, "now": now}
                ).fetchall()
                for q, worker, state in rows:  # each attempt ended: failed, or discarded
                    tally.add(now, q, worker, "retryable" if state == "available" else state)
                tally.write(conn)
            out: dict[str, int] = {}
            for q, _, state in rows:
                if state == JobState.AVAILABLE:
                    out[q] = out.get(q, 0) + 1
            return out

        return await self._db.acall(run)

    async def release(self, claims: Sequence[tuple[int, int]], node: str, now: float) -> int:
        """Hand back unfinished claims ``(id, attempt)``; their attempt is not counted."""
        params = [{"id": i, "attempt": a, "now": now, "node": node} for i, a in claims]

        def run(conn: sqlite3.Connection) -> int:
            with write_transaction(conn):
                return conn.executemany(_sql("release"), params).rowcount

        return await self._db.acall(run) if params else 0

    async def wait_for_change(self, timeout: float) -> bool:
        """Poll ``PRAGMA data_version`` (changes by other connections) until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            version = await self._db.acall(lambda c: c.execute("PRAGMA data_version").fetchone()[0])
            if version != self._db.data_version:
                self._db.data_version = version
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(0.05, left))

    # -- administration ---------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job[Any] | None:
        """One job by id, or ``None``."""
        sql = f"SELECT {COLUMNS} FROM underway_jobs WHERE id = ?"
        row = self._db.call(lambda c: c.execute(sql, (job_id,)).fetchone())
        return None if row is None else job_from_row(row, lenient=True)

    def list_jobs(self, where: JobFilter) -> list[Job[Any]]:
        """Jobs matching ``where``, newest first."""
        sql, params = filtered(_sql("list_jobs").replace("{columns}", COLUMNS), where)
        params.update(limit=where.limit, offset=where.offset)
        rows = self._db.call(lambda c: c.execute(sql, params).fetchall())
        return [job_from_row(r, lenient=True) for r in rows]

    def retry_jobs(self, where: JobFilter, now: float) -> BulkResult:
        """Make matching jobs available now, in one statement (see
        :meth:`BulkActions.retry_jobs`); other processes see the change on the file."""
        sql, params = filtered(_sql("retry_jobs"), where)
        params["now"] = now
        rows = self._db.call(lambda c: c.execute(sql, params).fetchall())
        return BulkResult(_by_queue(rows))

    def cancel_jobs(self, where: JobFilter, now: float) -> BulkResult:
        """Cancel matching unfinished jobs in one statement (see
        :meth:`BulkActions.cancel_jobs`).

        In the same write transaction the ids of the executing ones are read first, and a
        cancel signal is written for each after.
        """
        sql, params = filtered(_sql("cancel_jobs"), where)
        find, _ = filtered(_sql("cancel_jobs_executing"), where)
        params["now"] = now

        def run(conn: sqlite3.Connection) -> BulkResult:
            with write_transaction(conn):
                running = [i for (i,) in conn.execute(find, params)]
                rows = conn.execute(sql, params).fetchall()
                if running:
                    signals = {"now": now, "ids": json.dumps(running)}
                    conn.execute(_sql("cancel_signals"), signals)
                _count_cancelled(conn, rows, now)
            return BulkResult(_by_queue(rows), tuple(running))

        return self._db.call(run)

    def delete_jobs(self, where: JobFilter) -> BulkResult:
        """Delete matching finished jobs in one statement (their unique keys go with them)."""
        sql, params = filtered(_sql("delete_jobs"), where)
        rows = self._db.call(lambda c: c.execute(sql, params).fetchall())
        return BulkResult(_by_queue(rows))

    def retry_job(self, job_id: int, now: float) -> Job[Any] | None:
        """Make a job that is not executing available again now."""
        self._db.call(lambda c: c.execute(_sql("retry_job"), {"id": job_id, "now": now}))
        return self.get_job(job_id)

    def cancel_job(self, job_id: int, now: float) -> Job[Any] | None:
        """Cancel a job that has not finished (counted in its minute's counters)."""

        def run(conn: sqlite3.Connection) -> None:
            with write_transaction(conn):
                rows = conn.execute(_sql("cancel_job"), {"id": job_id, "now": now}).fetchall()
                _count_cancelled(conn, rows, now)

        self._db.call(run)
        return self.get_job(job_id)

    def job_counters(
        self,
        since: float,
        until: float,
        *,
        queues: tuple[str, ...] = (),
        workers: tuple[str, ...] = (),
        bucket: int = 60,
        by: tuple[str, ...] = ("queue", "worker"),
    ) -> list[CounterRow]:
        """The per-minute counters of the minutes in ``[since, until)``, in key order,
        summed per bucket and dimensions by the database when asked."""
        return self._db.call(lambda c: read_counters(c, since, until, queues, workers, bucket, by))

    def counts(self) -> dict[tuple[str, JobState], int]:
        """Jobs by (queue, state)."""
        rows = self._db.call(lambda c: c.execute(_sql("counts")).fetchall())
        return {(q, JobState(s)): n for q, s, n in rows}

    def queue_counts(self) -> dict[tuple[str, JobState], int]:
        """Waiting and running jobs by (queue, state), through the state index."""
        rows = self._db.call(lambda c: c.execute(_sql("queue_counts")).fetchall())
        return {(q, JobState(s)): n for q, s, n in rows}

    def node_rows(self, lease: str, now: float) -> list[NodeRow]:
        """Every node's heartbeat row, with its age at ``now``."""
        params = {"lease": lease, "now": now}
        rows = self._db.call(lambda c: c.execute(_sql("node_rows"), params).fetchall())
        return [node_row(*row) for row in rows]

    def cron_slots(self, names: Collection[str]) -> dict[str, float]:
        """The last slot of each of the cron entries ``names`` that has fired."""
        params = {"names": json.dumps(sorted(names))}
        rows = self._db.call(lambda c: c.execute(_sql("cron_slots"), params).fetchall())
        return {name: float(slot) for name, slot in rows}
