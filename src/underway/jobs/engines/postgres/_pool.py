"""The engine's connection pools: asynchronous for the runtime, a small synchronous one.

Connections are in autocommit mode, so a single statement is its own transaction (one
round trip); statements that must go together run in an explicit transaction. A connection
that sat idle for a while is checked before it is handed out, so after a server restart the
pool replaces dead connections instead of failing a caller with each of them; a connection
in steady use is not checked (no extra round trip). Every driver error leaves through
:func:`~underway.jobs.engines.postgres._url.database_error`.

A pool connection keeps one cursor for all its statements (the pool hands a connection to
one caller at a time, and each statement's rows are fetched before the next runs): a new
cursor per statement copies the adapters and looks up every parameter's dumper afresh,
about a fifth of a short statement's client time. An application's connection, which its
own tasks may share, gets a new cursor per statement.

A connection goes back to its pool at once, in the caller's task or thread: the pools have
no ``reset`` callback, which would return every connection through a pool worker (a task
switch, or a thread wake-up that contends for the GIL, for every statement) and make the
next caller take another connection meanwhile. When a connection was last used is recorded
as it is given back.

The pools' connections plan without nested loops (``enable_nestloop = off``): a queue
table's statistics are always stale (what was available a second ago is completed now), and
with a few rows estimated where there are thousands, a batch joined to ``unnest`` of its
parameters would be planned as a nested loop that rescans the arrays for every row,
quadratic in the batch. The engine's statements need no nested loop: hash joins and
primary-key look-ups keep a batch linear.

They also run without JIT compilation (``jit = off``). A plan that still needs a nested
loop (a one-row look-up joined on a range) carries the planner's huge cost for a disabled
node, and that cost would make the server JIT-compile the statement: about 150 ms for a
query that runs in a fraction of a millisecond. The engine's statements are all short.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from weakref import WeakKeyDictionary

import psycopg
from psycopg.pq import ExecStatus
from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from underway.jobs.engines.postgres._url import PgOptions, database_error

__all__ = [
    "SESSION",
    "AConn",
    "Conn",
    "Pools",
    "Rows",
    "aexecutor",
    "arows",
    "executor",
    "rows",
]

AConn = psycopg.AsyncConnection[tuple[Any, ...]]
Conn = psycopg.Connection[tuple[Any, ...]]
Rows = list[tuple[Any, ...]]
_IDLE_CHECK = 2.0  # seconds unused after which a connection is checked before use
_GET_TIMEOUT = 10  # seconds to wait for a connection before failing the call
_SYNC_MAX = 4
_TUPLES_OK = ExecStatus.TUPLES_OK
# Errors of the statement, not of the connection (a serialization failure, a timeout).
_NOT_LOST = (psycopg.errors.TransactionRollback, psycopg.errors.QueryCanceled)
# Every pool connection's session: no nested loops, no JIT (statements are written so that
# their plans need neither; tests plan every statement under these settings).
SESSION = "SELECT set_config('enable_nestloop', 'off', false), set_config('jit', 'off', false)"


class _PoolAConn(psycopg.AsyncConnection[tuple[Any, ...]]):
    """A connection of the asynchronous pool, with the cursor its statements share."""

    rows_cursor: psycopg.AsyncCursor[tuple[Any, ...]] | None = None


class _PoolConn(psycopg.Connection[tuple[Any, ...]]):
    """A connection of the synchronous pool, with the cursor its statements share."""

    rows_cursor: psycopg.Cursor[tuple[Any, ...]] | None = None


class _Freshness:
    """Pool callbacks: remember when each connection was last used; check stale ones."""

    def __init__(self) -> None:
        self._used: WeakKeyDictionary[Any, float] = WeakKeyDictionary()

    def _stale(self, conn: Any) -> bool:
        return time.monotonic() - self._used.get(conn, 0.0) > _IDLE_CHECK

    def forget(self) -> None:
        self._used.clear()

    async def aconfigure(self, conn: AConn) -> None:
        await conn.execute(SESSION)
        self.touch(conn)

    def configure(self, conn: Conn) -> None:
        conn.execute(SESSION)
        self.touch(conn)

    def touch(self, conn: Any) -> None:
        self._used[conn] = time.monotonic()

    async def acheck(self, conn: AConn) -> None:
        if self._stale(conn):
            await AsyncConnectionPool.check_connection(conn)

    def check(self, conn: Conn) -> None:
        if self._stale(conn):
            ConnectionPool.check_connection(conn)


async def arows(conn: AConn, sql: str, params: Sequence[Any] | dict[str, Any] | None) -> Rows:
    """Execute ``sql`` on ``conn``; its rows as tuples (none for a statement without result).

    Rows are tuples whatever the connection's own ``row_factory`` (an application's
    connection may have another).
    """
    cur = _cursor(conn)
    await cur.execute(sql, params)
    return await cur.fetchall() if _has_rows(cur) else []


def rows(conn: Conn, sql: str, params: Sequence[Any] | dict[str, Any] | None) -> Rows:
    """:func:`arows` for a synchronous connection."""
    cur = _cursor(conn)
    cur.execute(sql, params)
    return cur.fetchall() if _has_rows(cur) else []


def _cursor(conn: Any) -> Any:
    """The cursor a statement runs on: a pool connection's own, reused; a new one on an
    application's connection (which several threads or tasks may share)."""
    if isinstance(conn, _PoolAConn | _PoolConn):
        if conn.rows_cursor is None:
            conn.rows_cursor = conn.cursor(row_factory=tuple_row)
        return conn.rows_cursor
    return conn.cursor(row_factory=tuple_row)


def _has_rows(cur: Any) -> bool:
    """Whether the statement returned a result set (``cur.description`` builds columns)."""
    res = cur.pgresult
    return res is not None and res.status == _TUPLES_OK


def aexecutor(conn: AConn) -> Any:
    """``execute(sql, params) -> rows`` on ``conn``, for :func:`~._insert.run_steps_async`."""

    async def execute(sql: str, params: Any) -> Rows:
        return await arows(conn, sql, params)

    return execute


def executor(conn: Conn) -> Any:
    """``execute(sql, params) -> rows`` on ``conn``, for :func:`~._insert.run_steps`."""

    def execute(sql: str, params: Any) -> Rows:
        return rows(conn, sql, params)

    return execute


class Pools:
    """The asynchronous pool and the synchronous one (each opened on first use)."""

    def __init__(self, options: PgOptions) -> None:
        self.options = options
        self._fresh = _Freshness()
        self._apool: AsyncConnectionPool[AConn] | None = None
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._spool: ConnectionPool[Conn] | None = None

    @property
    def is_open(self) -> bool:
        """Whether the asynchronous pool is open (on an event loop that has not ended)."""
        return self._apool is not None and not self._loop_ended()

    def _loop_ended(self) -> bool:
        """Whether the loop the asynchronous pool was opened on is closed (``asyncio.run``
        returned, cancelling the pool's tasks): the pool cannot serve another loop."""
        return self._aloop is not None and self._aloop.is_closed()

    @property
    def is_open_sync(self) -> bool:
        """Whether the synchronous pool is open."""
        return self._spool is not None

    async def open(self) -> None:
        """Open the asynchronous pool (its connections are made in the background)."""
        if self.is_open:
            return
        self._apool = None  # one whose loop ended is left to the garbage collector
        pool: AsyncConnectionPool[AConn] = AsyncConnectionPool(
            self.options.dsn,
            min_size=1,
            max_size=self.options.pool_size,
            open=False,
            kwargs={"autocommit": True},
            connection_class=_PoolAConn,
            configure=self._fresh.aconfigure,
            check=self._fresh.acheck,
            timeout=_GET_TIMEOUT,
            name=f"underway-{self.options.schema}",
        )
        await pool.open(wait=False)
        self._apool, self._aloop = pool, asyncio.get_running_loop()

    def open_sync(self) -> None:
        """Open the synchronous pool unless it is open."""
        if self._spool is not None:
            return
        pool: ConnectionPool[Conn] = ConnectionPool(
            self.options.dsn,
            min_size=1,
            max_size=min(_SYNC_MAX, self.options.pool_size),
            open=False,
            kwargs={"autocommit": True},
            connection_class=_PoolConn,
            configure=self._fresh.configure,
            check=self._fresh.check,
            timeout=_GET_TIMEOUT,
            name=f"underway-{self.options.schema}-sync",
        )
        pool.open(wait=False)
        self._spool = pool

    async def close(self) -> None:
        """Close the asynchronous pool."""
        ended = self._loop_ended()
        pool, self._apool = self._apool, None
        if pool is not None and not ended:
            await pool.close()

    def close_sync(self) -> None:
        """Close the synchronous pool (blocks until its workers stopped)."""
        pool, self._spool = self._spool, None
        if pool is not None:
            pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AConn]:
        """A connection of the asynchronous pool; driver errors become DatabaseError."""
        if not self.is_open:
            await self.open()
        pool = self._apool
        assert pool is not None
        try:
            # getconn/putconn rather than pool.connection(): that one also enters the
            # connection's own context, whose commit on exit is a no-op in autocommit mode
            # but still takes the connection's lock. putconn rolls back what is left open.
            conn = await pool.getconn()
            try:
                yield conn
            finally:
                self._fresh.touch(conn)
                await pool.putconn(conn)
        except psycopg.Error as exc:
            self._after(exc)
            raise database_error(exc, self.options.shown) from exc

    @contextmanager
    def connection_sync(self) -> Iterator[Conn]:
        """A connection of the synchronous pool (open it first with :meth:`open_sync`)."""
        pool = self._spool
        assert pool is not None
        try:
            conn = pool.getconn()
            try:
                yield conn
            finally:
                self._fresh.touch(conn)
                pool.putconn(conn)
        except psycopg.Error as exc:
            self._after(exc)
            raise database_error(exc, self.options.shown) from exc

    def _after(self, exc: psycopg.Error) -> None:
        """After a lost connection, check every pooled one before its next use."""
        if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, _NOT_LOST):
            self._fresh.forget()

    async def direct(self) -> AConn:
        """A new connection outside the pools (for migrations); the caller closes it."""
        try:
            return await psycopg.AsyncConnection.connect(
                self.options.dsn, autocommit=True, connect_timeout=_GET_TIMEOUT
            )
        except psycopg.Error as exc:
            raise database_error(exc, self.options.shown) from exc

    def direct_sync(self) -> Conn:
        """:meth:`direct` for synchronous callers."""
        try:
            return psycopg.connect(self.options.dsn, autocommit=True, connect_timeout=_GET_TIMEOUT)
        except psycopg.Error as exc:
            raise database_error(exc, self.options.shown) from exc
