"""The PostgreSQL engine: many nodes on one database, with LISTEN/NOTIFY wake-ups.

Runtime calls use an asynchronous psycopg pool; the synchronous calls (``insert_sync``, the
administrative look-ups, ``migrate``) a small synchronous pool opened on first use. Every
batch is one statement: an insert of any size (``unnest``), a claim of the whole demand
(``FOR UPDATE SKIP LOCKED``, so concurrent nodes never take a job twice), the acks of one
kind. An insert notifies its queues in the same statement, so nodes wake when the inserting
transaction commits (an application's rolled-back transaction wakes nobody); control
signals travel the same way and are also kept in a table for nodes that missed them.

URL: ``postgresql://user:password@host:5432/db`` (or ``postgres://``); any libpq parameter
as a query parameter, plus underway's own: ``schema`` (default ``public``; the tables live
there, created if missing, so several apps can share a database) and ``pool_size``
(connections of the node's pool, default 10). Migrations are applied on :meth:`open` and by
:meth:`migrate`; several processes may migrate at once.

Driver errors reach callers as :class:`~underway.errors.DatabaseError` naming the database
(without its password). After a lost connection or a server restart, the pools replace
dead connections and the notification listener reconnects with backoff; meanwhile nodes
poll.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar

import psycopg

from underway import _telemetry as telemetry
from underway.errors import ConfigError, DatabaseError
from underway.jobs.engines._claimed import claimed_job
from underway.jobs.engines._nodes import node_row
from underway.jobs.engines._rows import UndecodableRow, discard_params, job_from_row
from underway.jobs.engines.base import BulkResult, CounterRow, JobFilter, NodeRow, StageResult
from underway.jobs.engines.postgres._ack import ack_params, ack_statement
from underway.jobs.engines.postgres._beat import Beat
from underway.jobs.engines.postgres._insert import Rows, insert_steps, run_steps, run_steps_async
from underway.jobs.engines.postgres._insert import statements as _statements
from underway.jobs.engines.postgres._listen import Listener
from underway.jobs.engines.postgres._migrate import check_steps, migration_steps
from underway.jobs.engines.postgres._params import filter_params
from underway.jobs.engines.postgres._pool import (
    AConn,
    Conn,
    Pools,
    aexecutor,
    arows,
    executor,
    rows,
)
from underway.jobs.engines.postgres._signals import SignalCursor
from underway.jobs.engines.postgres._sql import quote_literal
from underway.jobs.engines.postgres._url import database_error, parse_url
from underway.jobs.engines.postgres.adapters import AppConnection, adapt
from underway.jobs.engines.postgres.adapters._dispatch import AsyncExecute
from underway.jobs.job import FINISHED_STATES, Job, JobSpec, JobState
from underway.jobs.outcomes import Ack

__all__ = ["PostgresEngine"]

_log = logging.getLogger("underway.jobs")
_APP_CONN = " (through the application's connection)"
_LISTEN_WAIT = 2.0  # seconds the first wait or signals read waits for LISTEN to start
_ATTEMPTS = 3  # tries of a statement whose connection turned out to be closed
# The server closed the connection before the statement ran (shutdown, restart, terminate).
_NOT_RUN = (psycopg.errors.AdminShutdown, psycopg.errors.CrashShutdown)
# Rolled back whole and safe to run again: a row the statement waited for was moved to the
# other partition meanwhile (a job finished or was retried while this statement ran).
_MOVED = psycopg.errors.SerializationFailure
_FINISHED_AT = {
    JobState.COMPLETED: "completed_at",
    JobState.CANCELLED: "cancelled_at",
    JobState.DISCARDED: "discarded_at",
}
_RETRY = (*_NOT_RUN, _MOVED)
T = TypeVar("T")


def _via(app: AppConnection) -> str:
    return f" (through the application's {app.kind})"


class PostgresEngine:
    """Jobs stored in a PostgreSQL schema. See the module docstring for the URL."""

    def __init__(self, url: str) -> None:
        self.options = parse_url(url)
        self.url = url
        self.schema = self.options.schema
        self._sql = _statements(self.schema)
        self._pools = Pools(self.options)
        self._beat = Beat(self._pools)
        self._ready = False  # the schema is known to be migrated
        self._applied: list[str] = []
        self._sync_lock = threading.Lock()
        self._listener: Listener | None = None
        self._changed = asyncio.Event()
        self._listened = False
        self._signals = SignalCursor()
        self._dead_left = 0  # dead rows of the live partition that the last vacuum left
        self._told_kept = False  # whether the log said a transaction keeps dead rows

    def __repr__(self) -> str:
        return f"<PostgresEngine {self.options.shown} schema={self.schema}>"

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Apply pending migrations (on a connection of their own) and open the pool."""
        await self._migrate_once()
        await self._pools.open()

    async def _migrate_once(self) -> None:
        if self._ready:
            return
        conn = await self._pools.direct()
        try:
            if not await run_steps_async(check_steps(self.schema), aexecutor(conn)):
                async with conn.transaction():
                    steps = migration_steps(self.schema)
                    self._applied.extend(await run_steps_async(steps, aexecutor(conn)))
        except psycopg.Error as exc:
            raise database_error(exc, self.options.shown) from exc
        finally:
            await conn.close()
        self._ready = True

    async def close(self) -> None:
        """Stop listening and close both pools. Idempotent."""
        listener, self._listener = self._listener, None
        if listener is not None:
            await listener.stop()
        await self._beat.close()
        await self._pools.close()
        if self._pools.is_open_sync:
            await asyncio.to_thread(self._pools.close_sync)
        self._changed = asyncio.Event()
        self._listened = False
        self._signals = SignalCursor()

    def close_sync(self) -> None:
        """Close the synchronous pool, for synchronous callers (``use_testing``). The
        asynchronous side is closed by :meth:`close`, or goes with its ended event loop."""
        self._pools.close_sync()

    def migrate(self) -> list[str]:
        """Apply pending migrations (several processes may migrate at once).

        Returns:
            The migrations this engine applied since it opened or was last asked (those
            applied by :meth:`open` included); empty when the schema was current.
        """
        with self._sync_lock:
            applied = self._migrate_sync(check_first=False)
            earlier, self._applied = self._applied, []
        return [*earlier, *applied]

    def _migrate_sync(self, *, check_first: bool) -> list[str]:
        conn = self._pools.direct_sync()
        try:
            if check_first and run_steps(check_steps(self.schema), executor(conn)):
                applied: list[str] = []
            else:
                with conn.transaction():
                    applied = run_steps(migration_steps(self.schema), executor(conn))
        except psycopg.Error as exc:
            raise database_error(exc, self.options.shown) from exc
        finally:
            conn.close()
        self._ready = True
        return applied

    def _migrate_once_sync(self) -> None:
        if self._ready:
            return
        with self._sync_lock:
            if not self._ready:
                self._applied.extend(self._migrate_sync(check_first=True))

    def _open_sync(self) -> None:
        self._migrate_once_sync()
        if not self._pools.is_open_sync:
            with self._sync_lock:
                self._pools.open_sync()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AConn]:
        """A pool connection (the engine opens on first use)."""
        if not self._pools.is_open:
            await self.open()
        async with self._pools.connection() as conn:
            yield conn

    async def _run(self, fn: Callable[[AConn], Awaitable[T]]) -> T:
        """``fn(conn)`` on a pool connection, again if nothing of it took effect.

        A connection the server closed while it sat in the pool (a restart, an administrator)
        fails on first use without running anything; a statement that waited for a row that
        moved to the other partition (a job finished or retried meanwhile) was rolled back
        whole. Either way running ``fn`` again is safe: it is one statement or one transaction.
        """
        for attempt in range(_ATTEMPTS):
            try:
                async with self._connection() as conn:
                    return await fn(conn)
            except DatabaseError as exc:
                if attempt + 1 == _ATTEMPTS or not isinstance(exc.__cause__, _RETRY):
                    raise
        raise AssertionError("unreachable")

    async def _rows(self, name: str, params: Mapping[str, Any]) -> Rows:
        sql, values = self._sql[name], dict(params)
        return await self._run(lambda conn: arows(conn, sql, values))

    def _run_sync(self, fn: Callable[[Conn], T]) -> T:
        """:meth:`_run` for synchronous callers."""
        self._open_sync()
        for attempt in range(_ATTEMPTS):
            try:
                with self._pools.connection_sync() as conn:
                    return fn(conn)
            except DatabaseError as exc:
                if attempt + 1 == _ATTEMPTS or not isinstance(exc.__cause__, _RETRY):
                    raise
        raise AssertionError("unreachable")

    def _rows_sync(self, name: str, params: Mapping[str, Any]) -> Rows:
        sql, values = self._sql[name], dict(params)
        return self._run_sync(lambda conn: rows(conn, sql, values))

    # -- insert -----------------------------------------------------------------------------

    async def insert(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert jobs (see :meth:`Engine.insert`); ``conn`` is the application's connection.

        See :mod:`underway.jobs.engines.postgres.adapters` for the other kinds of ``conn``.
        """
        if conn is not None and not isinstance(conn, psycopg.AsyncConnection):
            app = None if isinstance(conn, psycopg.Connection) else adapt(conn)
            if app is not None and app.aexecute is not None:
                return await self._insert_app(specs, app, app.aexecute)
            return self.insert_sync(specs, conn=conn)
        if not specs:
            return []
        now = time.time()
        if conn is not None:
            await self._migrate_once()
            try:
                return await self._insert(conn, specs, now, own_tx=False)
            except psycopg.Error as exc:
                raise database_error(exc, self.options.shown, via=_APP_CONN) from exc
        return await self._run(lambda own: self._insert(own, specs, now, own_tx=True))

    async def _insert(
        self, conn: AConn, specs: Sequence[JobSpec], now: float, *, own_tx: bool
    ) -> list[Job[Any]]:
        steps = insert_steps(specs, now, schema=self.schema)
        if own_tx and any(s.unique_key is not None for s in specs):
            async with conn.transaction():
                jobs: list[Job[Any]] = await run_steps_async(steps, aexecutor(conn))
                return jobs
        return await run_steps_async(steps, aexecutor(conn))  # type: ignore[no-any-return]

    def insert_sync(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert jobs from synchronous code; ``conn`` is the application's connection."""
        if conn is not None and not isinstance(conn, psycopg.Connection):
            if isinstance(conn, psycopg.AsyncConnection):
                raise ConfigError(
                    "conn for a PostgreSQL database must be a psycopg Connection (or an "
                    "AsyncConnection with the async enqueue), got an AsyncConnection"
                )
            return self._insert_app_sync(specs, adapt(conn))
        if not specs:
            return []
        now = time.time()
        if conn is not None:
            self._migrate_once_sync()
            try:
                return run_steps(  # type: ignore[no-any-return]
                    insert_steps(specs, now, schema=self.schema), executor(conn)
                )
            except psycopg.Error as exc:
                raise database_error(exc, self.options.shown, via=_APP_CONN) from exc
        return self._run_sync(lambda own: self._insert_sync(own, specs, now))

    async def _insert_app(
        self, specs: Sequence[JobSpec], app: AppConnection, execute: AsyncExecute
    ) -> list[Job[Any]]:
        """Insert through an application's asynchronous connection of another library."""
        if not specs:
            return []
        await self._migrate_once()
        try:
            return await run_steps_async(  # type: ignore[no-any-return]
                insert_steps(specs, time.time(), schema=self.schema), execute
            )
        except app.errors as exc:
            raise database_error(exc, self.options.shown, via=_via(app)) from exc

    def _insert_app_sync(self, specs: Sequence[JobSpec], app: AppConnection) -> list[Job[Any]]:
        """Insert through an application's synchronous connection of another library."""
        if app.execute is None:
            raise ConfigError(f"conn is an {app.kind}: use the async enqueue (await ...enqueue)")
        if not specs:
            return []
        self._migrate_once_sync()
        try:
            return run_steps(  # type: ignore[no-any-return]
                insert_steps(specs, time.time(), schema=self.schema), app.execute
            )
        except app.errors as exc:
            raise database_error(exc, self.options.shown, via=_via(app)) from exc

    def _insert_sync(self, conn: Conn, specs: Sequence[JobSpec], now: float) -> list[Job[Any]]:
        steps = insert_steps(specs, now, schema=self.schema)
        if any(s.unique_key is not None for s in specs):
            with conn.transaction():
                jobs: list[Job[Any]] = run_steps(steps, executor(conn))
                return jobs
        return run_steps(steps, executor(conn))  # type: ignore[no-any-return]

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

        With ``workers``, only jobs of those workers. A claimed row that cannot be decoded
        is discarded with an error naming the column; the other jobs are returned.
        """
        params = {
            "queue": queue,
            "limit": limit,
            "node": node,
            "now": float(now),
            "any_worker": workers is None,
            "workers": list(workers or ()),
        }
        found = await self._rows("fetch", params)
        found.sort(key=lambda r: (r[10], r[12], r[0]))
        jobs: list[Job[Any]] = []
        undecodable: list[UndecodableRow] = []
        for row in found:
            try:
                jobs.append(claimed_job(row))
            except UndecodableRow as exc:
                undecodable.append(exc)
        for bad in undecodable:
            await self._rows("discard_undecodable", discard_params(bad, params))
            _log.warning("job %d discarded: %s", bad.job_id, bad)
        return jobs

    async def ack(self, acks: Sequence[Ack], node: str) -> None:
        """Record finished attempts, and add them to the per-minute counters, in one
        statement (``sql/ack.sql`` with the kinds of outcome present)."""
        if acks:
            kinds, params = ack_params(acks, node)
            sql = ack_statement(self._sql.schema_sql, kinds)
            await self._run(lambda conn: arows(conn, sql, params))

    async def stage(self, now: float, *, queue: str | None = None) -> StageResult:
        """Make due scheduled and retryable jobs available (and notify their queues)."""
        found = await self._rows("stage", {"now": float(now), "queue": queue})
        return StageResult({q: n for q, n, _ in found})

    async def prune(self, max_age: Mapping[JobState, float], now: float, limit: int) -> int:
        """Delete finished jobs older than their state's age, at most ``limit`` of them."""
        total = 0
        for state, age in max_age.items():
            if state not in FINISHED_STATES or total >= limit:
                continue
            sql = self.prune_sql(state)
            params = {"before": now - age, "limit": limit - total}
            found = await self._run(partial(arows, sql=sql, params=params))
            total += int(found[0][0])
        return total

    async def prune_counters(self, before: float, limit: int) -> int:
        """Delete up to ``limit`` per-minute counters of minutes before ``before``, oldest
        first, in one statement through the primary key."""
        found = await self._rows("prune_counters", {"before": float(before), "limit": limit})
        return int(found[0][0])

    async def vacuum(self, dead_rows: int) -> int | None:
        """Vacuum the live partition once ``dead_rows`` more rows are dead than after the last.

        Counting from what the last vacuum left rather than from zero: rows that a long
        transaction still needs stay dead through a vacuum, and vacuuming them again every
        few seconds would only read the partition over and over.
        """
        dead = await self._dead_rows()
        self._dead_left = min(self._dead_left, dead)  # the statistics may have been reset
        if dead < self._dead_left + dead_rows:
            return None
        with telemetry.span("vacuum", {"dead_rows": dead}):
            await self._rows("vacuum", {})
        self._dead_left = await self._dead_rows()
        kept = self._dead_left >= dead_rows
        if kept and not self._told_kept:  # once until a vacuum clears them again
            _log.info(
                "%d dead rows of finished jobs outlived a vacuum: a transaction open since "
                "before they finished keeps them (see pg_stat_activity.backend_xmin)",
                self._dead_left,
            )
        self._told_kept = kept
        return dead

    async def _dead_rows(self) -> int:
        found = await self._rows(
            "dead_rows", {"live": f"{self._sql.schema_sql}.underway_jobs_live"}
        )
        return int(found[0][0]) if found else 0

    def prune_sql(self, state: JobState) -> str:
        """The prune statement of one finished ``state`` (its literal and time column)."""
        return (
            self._sql["prune"]
            .replace("{state}", quote_literal(state.value))
            .replace("{finished_at}", _FINISHED_AT[state])
        )

    async def heartbeat(self, node: str, now: float, meta: Mapping[str, Any]) -> None:
        """Record that ``node`` is alive."""
        params = {"node": node, "now": float(now), "meta": json.dumps(dict(meta))}
        await self._beat.run(self._sql["heartbeat"], params)

    async def live_nodes(self, stale_before: float, now: float) -> dict[str, dict[str, Any]]:
        """Nodes heartbeating within ``now - stale_before`` (server's clock), with meta."""
        found = await self._rows("live_nodes", {"window": float(now - stale_before)})
        return {name: meta if isinstance(meta, dict) else {} for name, meta in found}

    async def available_sample(
        self, queues: Collection[str], sample: int
    ) -> dict[tuple[str, str], int]:
        """Workers of the head of each queue (see :meth:`Engine.available_sample`)."""
        if not queues:
            return {}
        found = await self._rows("available_sample", {"queues": sorted(queues), "sample": sample})
        return {(q, w): n for q, w, n in found}

    async def executing(self, node: str) -> list[tuple[int, int]]:
        """``(id, attempt)`` of the jobs recorded as executing on ``node``."""
        return [(row[0], row[1]) for row in await self._rows("executing", {"node": node})]

    async def forget_node(self, node: str) -> None:
        """Remove ``node``'s heartbeat."""
        await self._rows("forget_node", {"node": node})

    async def rescue(self, stale_before: float, now: float) -> dict[str, int]:
        """Return the jobs of silent nodes to their queues (see :meth:`Engine.rescue`)."""
        # Liveness is judged on the server's clock: the window, not the client's time.
        params = {"window": float(now - stale_before), "now": float(now)}

        async def run(conn: AConn) -> Rows:
            async with conn.transaction():
                await arows(conn, self._sql["forget_stale_nodes"], params)
                return await arows(conn, self._sql["rescue"], params)

        found = await self._run(run)
        out: dict[str, int] = {}
        for q, state, _ in found:
            if state == JobState.AVAILABLE:
                out[q] = out.get(q, 0) + 1
        return out

    async def release(self, claims: Sequence[tuple[int, int]], node: str, now: float) -> int:
        """Hand back unfinished claims ``(id, attempt)``; their attempt is not counted."""
        if not claims:
            return 0
        ids, attempts = zip(*claims, strict=True)
        params = {"ids": list(ids), "attempts": list(attempts), "node": node, "now": float(now)}
        return sum(n for _, n, _ in await self._rows("release", params))

    # -- notifications and signals -----------------------------------------------------------

    async def wait_for_change(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a notification (new jobs or a signal)."""
        await self._listen()
        if not self._changed.is_set():
            try:
                async with asyncio.timeout(max(timeout, 0.0)):  # never loses a cancellation
                    await self._changed.wait()
            except TimeoutError:
                return False
        self._changed.clear()
        return True

    async def publish(self, signal: Mapping[str, Any]) -> None:
        """Send a control signal to every node (kept a few minutes for late readers)."""
        await self._rows("signal_publish", {"payload": json.dumps(dict(signal))})

    def publish_sync(self, signal: Mapping[str, Any]) -> None:
        """:meth:`publish` for synchronous callers (on the synchronous pool)."""
        self._rows_sync("signal_publish", {"payload": json.dumps(dict(signal))})

    async def signals(self) -> list[dict[str, Any]]:
        """Control signals published since the last call (the first call returns none)."""
        await self._listen()
        listening = self._listener is not None and self._listener.connected
        if self._signals.skip(listening):
            return []
        self._signals.dirty = False  # a notification arriving from here on reads again
        try:
            found = await self._rows("signals_since", {"since": self._signals.since()})
        except BaseException:
            self._signals.dirty = True
            raise
        return self._signals.take(found)

    async def _listen(self) -> None:
        if self._listener is None:
            self._listener = Listener(
                self.options.dsn,
                (self._sql.channel, self._sql.signal_channel),
                on_notify=self._notified,
                on_connected=self._connected,
                shown=self.options.shown,
            )
            await self._listener.start(_LISTEN_WAIT)

    def _notified(self, channel: str, payload: str) -> None:
        if channel == self._sql.signal_channel:
            self._signals.dirty = True
        self._changed.set()

    def _connected(self) -> None:
        if self._listened:  # a reconnection: notifications may have been missed
            self._signals.dirty = True
            self._changed.set()
        self._listened = True

    # -- leases and cron ----------------------------------------------------------------------

    async def acquire_lease(self, name: str, node: str, ttl: float, now: float) -> bool:
        """Take or renew the lease ``name`` for ``node`` until ``now + ttl``."""
        params = {"name": name, "node": node, "ttl": float(ttl)}  # expiry on the server's clock
        return bool(await self._rows("lease_acquire", params))

    async def release_lease(self, name: str, node: str) -> None:
        """Give up the lease ``name`` if ``node`` holds it."""
        await self._rows("lease_release", {"name": name, "node": node})

    async def insert_for_slot(self, name: str, slot: float, spec: JobSpec) -> Job[Any] | None:
        """Insert ``spec`` for cron entry ``name``'s ``slot`` unless the slot already fired."""

        async def run(conn: AConn) -> Job[Any] | None:
            async with conn.transaction():
                params = {"name": name, "slot": float(slot)}
                if not await arows(conn, self._sql["cron_slot"], params):
                    return None
                jobs = await self._insert(conn, [spec], time.time(), own_tx=False)
            return jobs[0]

        return await self._run(run)

    # -- administration -----------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job[Any] | None:
        """One job by id, or ``None``."""
        found = self._rows_sync("get_job", {"id": job_id})
        return job_from_row(found[0], lenient=True) if found else None

    def list_jobs(self, where: JobFilter) -> list[Job[Any]]:
        """Jobs matching ``where``, newest first."""
        params = {**filter_params(where), "limit": where.limit, "offset": where.offset}
        return [job_from_row(r, lenient=True) for r in self._rows_sync("list_jobs", params)]

    def retry_jobs(self, where: JobFilter, now: float) -> BulkResult:
        """Make matching jobs available now and notify their queues, in one statement (see
        :meth:`BulkActions.retry_jobs`)."""
        found = self._rows_sync("retry_jobs", {**filter_params(where), "now": float(now)})
        return BulkResult({q: n for q, n, _ in found})

    def cancel_jobs(self, where: JobFilter, now: float) -> BulkResult:
        """Cancel matching unfinished jobs and signal the executing ones, in one statement
        (see :meth:`BulkActions.cancel_jobs`)."""
        found = self._rows_sync("cancel_jobs", {**filter_params(where), "now": float(now)})
        executing = sorted(i for _, _, ids, _ in found for i in ids)
        return BulkResult({q: n for q, n, _, _ in found}, tuple(executing))

    def delete_jobs(self, where: JobFilter) -> BulkResult:
        """Delete matching finished jobs and free their unique keys, in one statement."""
        found = self._rows_sync("delete_jobs", filter_params(where))
        return BulkResult({str(q): int(n) for q, n in found})

    def retry_job(self, job_id: int, now: float) -> Job[Any] | None:
        """Make a job that is not executing available again now."""
        self._rows_sync("retry_job", {"id": job_id, "now": float(now)})
        return self.get_job(job_id)

    def cancel_job(self, job_id: int, now: float) -> Job[Any] | None:
        """Cancel a job that has not finished."""
        self._rows_sync("cancel_job", {"id": job_id, "now": float(now)})
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
        params: dict[str, Any] = {
            "since": float(since),
            "until": float(until),
            "queues": list(queues) or None,
            "workers": list(workers) or None,
        }
        if bucket == 60 and by == ("queue", "worker"):
            name = "job_counters"
        else:
            name = "job_counter_sums"
            params |= {"bucket": bucket, "by_queue": "queue" in by, "by_worker": "worker" in by}
        return [
            (float(m), q, w, c, f, d, x, s)
            for m, q, w, c, f, d, x, s in self._rows_sync(name, params)
        ]

    def counts(self) -> dict[tuple[str, JobState], int]:
        """Jobs by (queue, state)."""
        return {(q, JobState(s)): n for q, s, n in self._rows_sync("counts", {})}

    def queue_counts(self) -> dict[tuple[str, JobState], int]:
        """Waiting and running jobs by (queue, state), from the live partition only."""
        return {(q, JobState(s)): n for q, s, n in self._rows_sync("queue_counts", {})}

    def node_rows(self, lease: str, now: float) -> list[NodeRow]:
        """Every node's heartbeat row (ages on the server's clock; ``now`` is not used)."""
        found = self._rows_sync("node_rows", {"lease": lease})
        return [node_row(*row) for row in found]

    def cron_slots(self, names: Collection[str]) -> dict[str, float]:
        """The last slot of each of the cron entries ``names`` that has fired."""
        found = self._rows_sync("cron_slots", {"names": sorted(names)}) if names else []
        return {name: float(slot) for name, slot in found}
