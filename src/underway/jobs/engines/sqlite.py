"""The SQLite engine: the zero-setup default, safe for several processes on one file.

Every statement runs on one dedicated thread that owns the connection, so coroutines never
block the event loop and synchronous callers (``enqueue_sync``, the CLI, test helpers)
share the same connection. Writes that span statements use ``BEGIN IMMEDIATE`` and the
file is in WAL mode with a busy timeout, so concurrent node processes queue for the write
lock instead of failing. ``PRAGMA data_version`` tells cheaply when another process wrote.

Every ``sqlite3`` error reaches callers as :class:`~underway.errors.DatabaseError` naming
the file (:class:`~underway.errors.DatabaseLocked` when another connection held a lock past
the busy timeout); the connection is reopened only when an error says it or its file is
broken. Inserting through the application's own connection (``conn=``) inside its open
transaction needs a file that is already migrated: run ``underway migrate`` (or
``jobs.migrate_sync()``) at startup.

URL: ``sqlite:///path.db`` (relative), ``sqlite:////abs/path.db`` or
``sqlite:///:memory:``; options as query parameters: ``busy_timeout`` (seconds, default
10) and ``synchronous`` (``NORMAL`` by default, which survives a killed process; ``FULL``
also survives power loss; small inserts then always go through the database thread, so an
fsync never runs on the event loop).
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from underway.errors import ConfigError, DatabaseError, DatabaseLocked
from underway.jobs.engines._inserted import chunks, match_inserted
from underway.jobs.engines._rows import COLUMNS, UndecodableRow, job_from_row
from underway.jobs.engines._sql import migrations, query, split_statements
from underway.jobs.engines._sqlite_direct import (
    DirectWriter,
    is_broken,
    is_busy,
    rollback_quietly,
)
from underway.jobs.engines.base import JobFilter, StageResult
from underway.jobs.job import FINISHED_STATES, Job, JobSpec, JobState
from underway.jobs.outcomes import Ack

__all__ = ["SQLiteEngine"]

T = TypeVar("T")
_log = logging.getLogger("underway.jobs")
_D = "sqlite"
_INSERT_COLUMNS = 13
_SYNCHRONOUS = {"OFF", "NORMAL", "FULL", "EXTRA"}
_SYNCS_EACH_COMMIT = {"FULL", "EXTRA"}  # a commit waits for fsync: not on the caller's thread
_DIRECT_MAX = 50  # inserts of up to this many jobs may run on the caller's thread
_APP_CONN = " (through the application's connection)"
_STORED_SHOWN = 200  # characters of an undecodable value quoted in the job's error


def _sql(name: str) -> str:
    return query(_D, name)


class SQLiteEngine:
    """Jobs stored in one SQLite file. See the module docstring for the URL."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        path = parts.path[1:] if parts.path.startswith("/") else parts.path
        if parts.netloc or not path:
            raise ConfigError(
                "SQLite URL must look like sqlite:///file.db or sqlite:////abs/file.db, "
                f"got {url!r}"
            )
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        try:
            self.busy_timeout = float(options.pop("busy_timeout", "10"))
        except ValueError:
            raise ConfigError(f"busy_timeout must be seconds in {url!r}") from None
        self.synchronous = options.pop("synchronous", "NORMAL").upper()
        if self.synchronous not in _SYNCHRONOUS:
            raise ConfigError(f"synchronous must be one of {sorted(_SYNCHRONOUS)} in {url!r}")
        if options:
            raise ConfigError(f"unknown SQLite option(s) {sorted(options)} in {url!r}")
        self.url = url
        self.path = path
        self._conn: sqlite3.Connection | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._data_version: int | None = None
        self._max_rows = 500
        self._applied_on_connect: list[str] = []
        self._wal_warned = False
        self._direct = DirectWriter(
            path, synchronous=self.synchronous, checkpoint=self._checkpoint_later
        )

    def __repr__(self) -> str:
        return f"<SQLiteEngine {self.path}>"

    # -- plumbing ---------------------------------------------------------------------------

    def _executor(self) -> ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="underway-sqlite")
            return self._pool

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        try:
            if self.path != ":memory:":
                self._enable_wal(conn)
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute("PRAGMA cache_size=-16000")
            limit = conn.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER)
            self._max_rows = max(1, min(500, limit // _INSERT_COLUMNS))
            self._conn = conn
            self._applied_on_connect = self._migrate(conn)
            self._data_version = conn.execute("PRAGMA data_version").fetchone()[0]
        except BaseException:
            self._conn = None
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> str:
        """Put the file in WAL mode; warn once if the file system keeps another mode.

        Returns:
            The journal mode in effect.
        """
        mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
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

    def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` with the connection, on the calling (database) thread."""
        try:
            return fn(self._connect())
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> DatabaseError:
        """Map ``exc``; drop the connection only if it cannot be used as it is."""
        conn = self._conn
        if conn is not None and (is_broken(exc) or not rollback_quietly(conn)):
            self._conn = None
            conn.close()
        return _database_error(exc, self.path, self.busy_timeout)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the database thread and wait (for synchronous callers)."""
        return self._executor().submit(self._run, fn).result()

    async def _acall(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        return await asyncio.wrap_future(self._executor().submit(self._run, fn))

    @staticmethod
    @contextmanager
    def _write(conn: sqlite3.Connection) -> Iterator[None]:
        """A write transaction; rolled back if the body or the COMMIT fails."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield
            conn.execute("COMMIT")
        except BaseException:
            rollback_quietly(conn)
            raise

    # -- lifecycle --------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect and apply pending migrations."""
        await self._acall(lambda conn: None)

    async def close(self) -> None:
        """Close the connection and stop the database thread."""
        self._direct.close()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return

        def shut() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        await asyncio.wrap_future(pool.submit(shut))
        pool.shutdown(wait=True)

    def close_sync(self) -> None:
        """:meth:`close` for synchronous callers."""
        self._direct.close()
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is None:
            return
        conn, self._conn = self._conn, None
        if conn is not None:
            pool.submit(conn.close).result()
        pool.shutdown(wait=True)

    def migrate(self) -> list[str]:
        """Apply pending migrations (they are also applied on first connection).

        Returns:
            The migrations applied by this engine since it connected or was last asked,
            including those applied on connection; empty when the schema was current.
        """
        applied = self._call(self._migrate)
        earlier, self._applied_on_connect = self._applied_on_connect, []
        return [*earlier, *applied]

    @classmethod
    def _migrate(cls, conn: sqlite3.Connection) -> list[str]:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS underway_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        pending = migrations(_D)
        done = {r[0] for r in conn.execute("SELECT version FROM underway_migrations")}
        if all(m.version in done for m in pending):
            return []
        applied = []
        with cls._write(conn):
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

    # -- insert -----------------------------------------------------------------------------

    async def insert(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert jobs (see :meth:`Engine.insert`)."""
        if conn is not None:
            return self.insert_sync(specs, conn=conn)
        now = time.time()
        done, jobs = self._insert_direct(specs, now)
        if done:
            return jobs
        return await self._acall(lambda c: self._insert(c, specs, now, own_tx=True))

    def insert_sync(self, specs: Sequence[JobSpec], *, conn: Any = None) -> list[Job[Any]]:
        """Insert jobs from synchronous code; ``conn`` is an application ``sqlite3`` connection."""
        now = time.time()
        if conn is None:
            done, jobs = self._insert_direct(specs, now)
            if done:
                return jobs
            return self._call(lambda c: self._insert(c, specs, now, own_tx=True))
        if not isinstance(conn, sqlite3.Connection):
            raise ConfigError(
                f"conn for a SQLite database must be a sqlite3.Connection, got {type(conn)!r}"
            )
        if self._conn is None:  # the schema exists before the app's transaction uses it
            self._require_ready(conn)
            self._call(lambda c: None)
        try:
            return self._insert(conn, specs, now, own_tx=False)
        except sqlite3.Error as exc:
            raise _database_error(exc, self.path, None, via=_APP_CONN) from exc

    def _require_ready(self, conn: sqlite3.Connection) -> None:
        """Fail at once if opening the engine would have to write inside the app's transaction.

        Switching the file to WAL and migrating need the write lock, which the application's
        open transaction may hold: the engine would wait for it until its busy timeout.
        """
        if not conn.in_transaction or self.path == ":memory:":
            return
        try:
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            try:
                done = {r[0] for r in conn.execute("SELECT version FROM underway_migrations")}
            except sqlite3.OperationalError as exc:
                if "no such table" not in str(exc):
                    raise
                done = set()
        except sqlite3.Error as exc:
            raise _database_error(exc, self.path, None, via=_APP_CONN) from exc
        if any(m.version not in done for m in migrations(_D)):
            missing = "has no underway tables yet (or an older schema)"
        elif mode != "wal":
            missing = f"is not in WAL mode yet (journal_mode={mode!r})"
        else:
            return
        raise DatabaseError(
            f"SQLite database {self.path!r} {missing}, and the engine cannot prepare it "
            "while the application's transaction holds the file: run `underway migrate` or "
            "call jobs.migrate_sync() at startup before enqueueing inside your own transaction"
        )

    def _insert_direct(self, specs: Sequence[JobSpec], now: float) -> tuple[bool, list[Job[Any]]]:
        """Insert a few jobs on this thread if the write lock is free at once (no hand-off)."""
        if (
            self._conn is None
            or self.path == ":memory:"
            or len(specs) > _DIRECT_MAX
            or self.synchronous in _SYNCS_EACH_COMMIT
        ):
            return False, []
        try:
            done, jobs = self._direct.try_write(lambda c: self._insert(c, specs, now, own_tx=True))
        except sqlite3.Error as exc:
            raise _database_error(exc, self.path, None) from exc
        return done, jobs or []

    def _checkpoint_later(self) -> None:
        """Ask the database thread to fold the WAL back into the file (without waiting)."""
        with self._pool_lock:
            pool = self._pool
        if pool is not None:
            pool.submit(self._run, lambda c: c.execute("PRAGMA wal_checkpoint(PASSIVE)"))

    def _insert(
        self, conn: sqlite3.Connection, specs: Sequence[JobSpec], now: float, *, own_tx: bool
    ) -> list[Job[Any]]:
        if not specs:
            return []
        keys = [s.unique_key for s in specs if s.unique_key is not None]
        returned: list[tuple[int, str | None]] = []
        # One INSERT statement is atomic on its own; a transaction is needed only when
        # unique keys are expired first or the jobs span several statements.
        own_tx = own_tx and (bool(keys) or len(specs) > self._max_rows)
        with self._write(conn) if own_tx else nullcontext():
            for key_chunk in chunks(keys, 500):
                marks = ",".join("?" * len(key_chunk))
                conn.execute(_sql("unique_expire").format(keys=marks), [*key_chunk, now])
            for chunk in chunks(specs, self._max_rows):
                params: list[Any] = []
                for s in chunk:
                    params.extend(_insert_params(s, now))
                values = ",".join(["(?,?,?,?,?,?,?,?,?,?,?,?,?)"] * len(chunk))
                returned.extend(conn.execute(_sql("insert").format(values=values), params))
            existing = self._existing(conn, keys, {k for _, k in returned})
        return match_inserted(specs, sorted(returned), existing, now)

    @staticmethod
    def _existing(
        conn: sqlite3.Connection, keys: list[str], inserted: set[str | None]
    ) -> dict[str, Job[Any]]:
        wanted = sorted({k for k in keys if k not in inserted})
        found: dict[str, Job[Any]] = {}
        for chunk in chunks(wanted, 500):
            sql = _sql("unique_existing").format(
                columns=COLUMNS + ", unique_key", keys=",".join("?" * len(chunk))
            )
            for row in conn.execute(sql, chunk):
                found[row[-1]] = job_from_row(row, conflict=True, lenient=True)
        return found

    # -- runtime ----------------------------------------------------------------------------

    async def fetch(self, queue: str, limit: int, node: str, now: float) -> list[Job[Any]]:
        """Claim up to ``limit`` available jobs of ``queue`` in start order.

        A queue with nothing available is seen with a read, without taking the write lock.
        A claimed row that cannot be decoded is discarded in the same transaction, with an
        error naming the column; the other jobs are returned.
        """
        params = {"queue": queue, "limit": limit, "node": node, "now": now}
        return await self._acall(lambda c: self._claim(c, params))

    def _claim(self, conn: sqlite3.Connection, params: dict[str, Any]) -> list[Job[Any]]:
        if conn.execute(_sql("fetch_probe"), params).fetchone() is None:
            return []
        with self._write(conn):
            rows = conn.execute(_sql("fetch").format(columns=COLUMNS), params).fetchall()
            rows.sort(key=lambda r: (r[10], r[12], r[0]))
            jobs: list[Job[Any]] = []
            undecodable: list[UndecodableRow] = []
            for row in rows:
                try:
                    jobs.append(job_from_row(row))
                except UndecodableRow as exc:
                    undecodable.append(exc)
            if undecodable:
                conn.executemany(
                    _sql("discard_undecodable"),
                    [_discard_params(bad, params) for bad in undecodable],
                )
        for bad in undecodable:
            _log.warning("job %d discarded: %s", bad.job_id, bad)
        return jobs

    async def ack(self, acks: Sequence[Ack], node: str) -> None:
        """Record finished attempts in one transaction."""
        done, failed, snoozed = [], [], []
        for a in acks:
            if a.state is JobState.COMPLETED:
                done.append(
                    {
                        "id": a.job_id,
                        "at": a.at,
                        "result": a.result,
                        "node": node,
                        "attempt": a.attempt,
                    }
                )
            elif a.snoozed:
                snoozed.append(
                    {
                        "id": a.job_id,
                        "scheduled_at": a.scheduled_at,
                        "node": node,
                        "attempt": a.attempt,
                    }
                )
            else:
                failed.append(
                    {
                        "id": a.job_id,
                        "state": a.state.value,
                        "at": a.at,
                        "attempt": a.attempt,
                        "scheduled_at": a.scheduled_at,
                        "error": a.error,
                        "traceback": a.traceback,
                        "node": node,
                    }
                )

        def write(conn: sqlite3.Connection) -> None:
            with self._write(conn):
                if done:
                    conn.executemany(_sql("ack_completed"), done)
                if failed:
                    conn.executemany(_sql("ack_failed"), failed)
                if snoozed:
                    conn.executemany(_sql("ack_snoozed"), snoozed)

        await self._acall(write)

    async def stage(self, now: float, *, queue: str | None = None) -> StageResult:
        """Make due scheduled and retryable jobs available."""
        params = {"now": now, "queue": queue}
        rows = await self._acall(lambda c: c.execute(_sql("stage"), params).fetchall())
        counts: dict[str, int] = {}
        for (q,) in rows:
            counts[q] = counts.get(q, 0) + 1
        return StageResult(counts)

    async def prune(self, max_age: Mapping[JobState, float], now: float, limit: int) -> int:
        """Delete finished jobs older than their state's age, at most ``limit`` of them."""

        def delete(conn: sqlite3.Connection) -> int:
            total = 0
            for state, age in max_age.items():
                if state not in FINISHED_STATES or total >= limit:
                    continue
                sql = _sql("prune").format(state=state.value)
                total += conn.execute(sql, {"before": now - age, "limit": limit - total}).rowcount
            return total

        return await self._acall(delete)

    async def heartbeat(self, node: str, now: float, meta: Mapping[str, Any]) -> None:
        """Record that ``node`` is alive."""
        params = {"node": node, "now": now, "meta": json.dumps(dict(meta))}
        await self._acall(lambda c: c.execute(_sql("heartbeat"), params))

    async def forget_node(self, node: str) -> None:
        """Remove ``node``'s heartbeat."""
        await self._acall(lambda c: c.execute("DELETE FROM underway_nodes WHERE name = ?", (node,)))

    async def rescue(self, stale_before: float, now: float) -> dict[str, int]:
        """Return the jobs of silent nodes to their queues (see :meth:`Engine.rescue`)."""

        def run(conn: sqlite3.Connection) -> dict[str, int]:
            with self._write(conn):
                conn.execute(_sql("forget_stale_nodes"), {"stale_before": stale_before})
                rows = conn.execute(
                    _sql("rescue"), {"stale_before": stale_before, "now": now}
                ).fetchall()
            out: dict[str, int] = {}
            for q, state in rows:
                if state == JobState.AVAILABLE:
                    out[q] = out.get(q, 0) + 1
            return out

        return await self._acall(run)

    async def release(self, job_ids: Sequence[int], node: str, now: float) -> int:
        """Hand back unfinished jobs; their attempt is not counted."""
        params = [{"id": i, "now": now, "node": node} for i in job_ids]

        def run(conn: sqlite3.Connection) -> int:
            with self._write(conn):
                return conn.executemany(_sql("release"), params).rowcount

        return await self._acall(run) if params else 0

    async def wait_for_change(self, timeout: float) -> bool:
        """Poll ``PRAGMA data_version`` (changes by other connections) until ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            version = await self._acall(lambda c: c.execute("PRAGMA data_version").fetchone()[0])
            if version != self._data_version:
                self._data_version = version
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await asyncio.sleep(min(0.05, left))

    # -- administration ---------------------------------------------------------------------

    def get_job(self, job_id: int) -> Job[Any] | None:
        """One job by id, or ``None``."""
        sql = f"SELECT {COLUMNS} FROM underway_jobs WHERE id = ?"
        row = self._call(lambda c: c.execute(sql, (job_id,)).fetchone())
        return None if row is None else job_from_row(row, lenient=True)

    def list_jobs(self, where: JobFilter) -> list[Job[Any]]:
        """Jobs matching ``where``, newest first."""
        clauses: list[str] = []
        params: list[Any] = []
        if where.states:
            clauses.append(f"state IN ({','.join('?' * len(where.states))})")
            params.extend(s.value for s in where.states)
        if where.queue is not None:
            clauses.append("queue = ?")
            params.append(where.queue)
        if where.worker is not None:
            clauses.append("worker = ?")
            params.append(where.worker)
        cond = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        sql = f"SELECT {COLUMNS} FROM underway_jobs {cond} ORDER BY id DESC LIMIT ? OFFSET ?"
        params.extend([where.limit, where.offset])
        rows = self._call(lambda c: c.execute(sql, params).fetchall())
        return [job_from_row(r, lenient=True) for r in rows]

    def retry_job(self, job_id: int, now: float) -> Job[Any] | None:
        """Make a job that is not executing available again now."""
        self._call(lambda c: c.execute(_sql("retry_job"), {"id": job_id, "now": now}))
        return self.get_job(job_id)

    def cancel_job(self, job_id: int, now: float) -> Job[Any] | None:
        """Cancel a job that has not finished."""
        self._call(lambda c: c.execute(_sql("cancel_job"), {"id": job_id, "now": now}))
        return self.get_job(job_id)

    def counts(self) -> dict[tuple[str, JobState], int]:
        """Jobs by (queue, state)."""
        rows = self._call(lambda c: c.execute(_sql("counts")).fetchall())
        return {(q, JobState(s)): n for q, s, n in rows}


def _database_error(
    exc: sqlite3.Error, path: str, busy_timeout: float | None, *, via: str = ""
) -> DatabaseError:
    """The :class:`DatabaseError` for ``exc``, naming the file (and what was waited for)."""
    if is_busy(exc):
        waited = "" if busy_timeout is None else f" (waited up to busy_timeout={busy_timeout}s)"
        return DatabaseLocked(
            f"SQLite database {path!r} is locked by another connection{waited}{via}: {exc}"
        )
    return DatabaseError(f"SQLite database {path!r} failed{via}: {exc}")


def _discard_params(exc: UndecodableRow, claim: dict[str, Any]) -> dict[str, Any]:
    stored = repr(exc.raw)
    if len(stored) > _STORED_SHOWN:
        stored = stored[:_STORED_SHOWN] + "..."
    return {
        "id": exc.job_id,
        "node": claim["node"],
        "now": claim["now"],
        "error": f"{exc} (stored text: {stored})",
        "reset_errors": exc.column == "errors",
    }


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
