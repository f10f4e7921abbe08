"""Shared fixtures for the in-process integration tests of ``underway.jobs``, on both engines.

A test that asks for ``make_jobs`` or ``database`` runs once per engine, so the engines'
semantics cannot drift apart: ``[sqlite]`` on a file in ``tmp_path``, ``[postgres]`` on a
fresh schema of the one test database (see :mod:`tests.integration.pg`; marked ``postgres``,
so it is skipped without a server and fails under ``CI=true``), dropped at teardown.

A test about SQLite by nature (a raw ``sqlite3`` connection, WAL, file locks,
``busy_timeout``, the direct-write path) carries ``@pytest.mark.sqlite_only`` and runs as
``[sqlite]`` alone, as do the engine-specific modules in :data:`SQLITE_MODULES`;
``@pytest.mark.postgres_only`` is the converse. :class:`Database` runs plain SQL on either
engine (rows written as another process would, node heartbeats, counts).

``make_jobs`` builds apps with short intervals, so a running node reacts within tens of
milliseconds; every app it made is stopped and closed at teardown. ``wait_until`` awaits a
condition with a deadline instead of sleeping.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Iterator
from pathlib import Path
from typing import Any, Protocol

import psycopg
import pytest

from underway.jobs import Job, Jobs, JobState
from underway.jobs.engines.sqlite import SQLiteEngine
from underway.jobs.job import FINISHED_STATES

from .pg import Schemas, schemas

FAST: dict[str, Any] = {
    "poll_interval": 0.05,
    "stage_interval": 0.05,
    "heartbeat_interval": 0.5,
    "rescue_after": 30.0,
    "shutdown_grace": 2.0,
}
ENGINES = (
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
)
# Modules about one SQLite mechanism or another: their tests run on SQLite only.
SQLITE_MODULES = frozenset(
    (
        "test_engine_sqlite",
        "test_engine_sqlite_protocol",
        "test_sqlite_faults",
        "test_sqlite_direct",
    )
)
_TIME_COLUMNS = frozenset(  # epoch seconds on SQLite, timestamptz on PostgreSQL
    {
        *("inserted_at", "scheduled_at", "attempted_at", "unique_until"),
        *("completed_at", "discarded_at", "cancelled_at", "started_at", "heartbeat_at"),
    }
)
_JSON_COLUMNS = frozenset({"args", "meta", "tags", "errors", "result"})


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sqlite_only: about SQLite by nature; runs on the SQLite engine alone"
    )
    config.addinivalue_line(
        "markers", "postgres_only: about PostgreSQL by nature; runs on PostgreSQL alone"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that uses the database once per engine (or on the one it is marked
    for)."""
    if "engine_name" not in metafunc.fixturenames:
        return
    module = metafunc.module.__name__.rpartition(".")[2]
    params: tuple[Any, ...] = ENGINES
    if module in SQLITE_MODULES or metafunc.definition.get_closest_marker("sqlite_only"):
        params = ENGINES[:1]
    elif metafunc.definition.get_closest_marker("postgres_only"):
        params = ENGINES[1:]
    metafunc.parametrize("engine_name", params, indirect=True)


@pytest.fixture
def engine_name(request: pytest.FixtureRequest) -> str:
    """``"sqlite"`` or ``"postgres"``: the engine this run of the test is on."""
    return str(request.param)


def known_bug(request: pytest.FixtureRequest, engines: Collection[str], reason: str) -> None:
    """Expect this run of the test to fail (strictly) on ``engines``: a known bug, visible
    in every run and reported as fixed (XPASS fails) the day it is."""
    if request.getfixturevalue("engine_name") in engines:
        request.applymarker(pytest.mark.xfail(strict=True, reason=reason))


class Database:
    """The test's database, a SQLite file or a PostgreSQL schema, with plain SQL on it.

    Times are epoch seconds and JSON columns Python values on both engines; statements
    written for one engine (``?`` placeholders) are translated for the other.
    """

    def __init__(
        self, kind: str, url: str, *, path: Path | None = None, schemas: Schemas | None = None
    ) -> None:
        self.kind = kind
        self.url = url
        self.path = path
        self._schemas = schemas
        self._conn: Any = None
        self._others: list[Database] = []

    @property
    def postgres(self) -> bool:
        """Whether this is the PostgreSQL engine."""
        return self.kind == "postgres"

    @property
    def dsn(self) -> str:
        """The PostgreSQL database's URL for the driver (without underway's options)."""
        return self.url.split("?", 1)[0]

    @property
    def schema(self) -> str:
        """The PostgreSQL schema (``main`` on SQLite)."""
        return self.url.split("schema=", 1)[1].split("&", 1)[0] if self.postgres else "main"

    def other(self, name: str) -> Database:
        """Another database on the same engine (a file beside, or a fresh schema)."""
        if self._schemas is not None:
            db = Database("postgres", self._schemas.url(), schemas=self._schemas)
        else:
            assert self.path is not None
            path = self.path.with_name(f"{name}.db")
            db = Database("sqlite", f"sqlite:///{path}", path=path)
        self._others.append(db)
        return db

    def url_with(self, options: str) -> str:
        """The URL with extra query options (``"?name=value&..."`` or ``""``)."""
        if not options:
            return self.url
        return self.url + ("&" + options.lstrip("?&") if "?" in self.url else options)

    def connect(self) -> Any:
        """A new plain autocommit connection (``sqlite3`` or psycopg; the caller closes it)."""
        if not self.postgres:
            return sqlite3.connect(self.path or "", isolation_level=None, check_same_thread=False)
        return psycopg.connect(self.dsn, autocommit=True, options=f"-c search_path={self.schema}")

    def sql(self, statement: str, *params: Any) -> list[tuple[Any, ...]]:
        """Run one statement (``?`` placeholders) on this database; its rows."""
        if self._conn is None:
            self._conn = self.connect()
        if self.postgres:
            statement = statement.replace("?", "%s")
        cursor = self._conn.execute(statement, params)
        return list(cursor.fetchall()) if cursor.description else []

    def exists(self) -> bool:
        """Whether an engine created its tables here."""
        if not self.postgres:
            return self.path is not None and self.path.exists()
        found = self.sql("SELECT to_regclass(?)", f"{self.schema}.underway_jobs")
        return found[0][0] is not None

    def _value(self, column: str, value: Any) -> tuple[str, Any]:
        if column in _JSON_COLUMNS and not isinstance(value, str) and value is not None:
            value = json.dumps(value)
        if self.postgres and column in _TIME_COLUMNS and value is not None:
            return "to_timestamp(?)", value
        return "?", value

    def insert(self, table: str, **columns: Any) -> None:
        """Insert one row, times as epoch seconds and JSON columns as Python values."""
        marks, values = zip(*(self._value(k, v) for k, v in columns.items()), strict=True)
        self.sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join(marks)})", *values)

    def add_job(self, state: str, *, queue: str, worker: str, **columns: Any) -> int:
        """Insert one job row directly, as another process or an old version could have."""
        now = time.time()
        values = {"inserted_at": now, "scheduled_at": now, **columns}
        self.insert("underway_jobs", state=state, queue=queue, worker=worker, **values)
        return int(self.sql("SELECT max(id) FROM underway_jobs")[0][0])

    def add_node(self, name: str, *, started_at: float, heartbeat_at: float) -> None:
        """Insert a node's heartbeat row, as a node elsewhere would."""
        self.insert("underway_nodes", name=name, started_at=started_at, heartbeat_at=heartbeat_at)

    def beat(self, name: str, at: float) -> None:
        """Set node ``name``'s last heartbeat to ``at``."""
        at_sql = "to_timestamp(?)" if self.postgres else "?"
        self.sql(f"UPDATE underway_nodes SET heartbeat_at = {at_sql} WHERE name = ?", at, name)

    def nodes(self) -> list[str]:
        """Names of the nodes with a heartbeat row."""
        return [name for (name,) in self.sql("SELECT name FROM underway_nodes ORDER BY name")]

    def close(self) -> None:
        """Close the connections :meth:`sql` opened (here and on :meth:`other` databases)."""
        for db in self._others:
            db.close()
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()


class MakeJobs(Protocol):
    """Builds a Jobs app on the test's database."""

    def __call__(self, *, url_options: str = "", **options: Any) -> Jobs: ...


@pytest.fixture
def db_path(tmp_path: Path, request: pytest.FixtureRequest) -> Path:
    """The SQLite file the test's apps share (SQLite-only tests)."""
    _refuse_on_postgres(request, "db_path")
    return tmp_path / "jobs.db"


@pytest.fixture
def db_url(db_path: Path) -> str:
    """The database URL of :func:`db_path`."""
    return f"sqlite:///{db_path}"


@pytest.fixture
async def sqlite_engines(db_url: str) -> AsyncIterator[Callable[[str], SQLiteEngine]]:
    """Opens engines on the test's file (URL options appended), closed at teardown."""
    opened: list[SQLiteEngine] = []

    def make(options: str = "") -> SQLiteEngine:
        engine = SQLiteEngine(db_url + options)
        opened.append(engine)
        return engine

    yield make
    for engine in opened:
        await engine.close()


@pytest.fixture
def database(engine_name: str, tmp_path: Path) -> Iterator[Database]:
    """The test's database on the engine of this run; dropped (PostgreSQL) at the end."""
    if engine_name == "sqlite":
        path = tmp_path / "jobs.db"
        db = Database("sqlite", f"sqlite:///{path}", path=path)
        yield db
        db.close()
        return
    with schemas() as made:
        db = Database("postgres", made.url(), schemas=made)
        try:
            yield db
        finally:
            db.close()


@pytest.fixture
async def make_jobs(database: Database) -> AsyncIterator[MakeJobs]:
    """A factory of Jobs apps on the test's database, with short intervals (overridable)."""
    made: list[Jobs] = []

    def make(*, url_options: str = "", **options: Any) -> Jobs:
        app = Jobs(database.url_with(url_options), **{"queues": {"default": 10}, **FAST, **options})
        made.append(app)
        return app

    yield make
    for app in made:
        await app.stop()
        close_sync = getattr(app.engine, "close_sync", None)
        if close_sync is not None:
            close_sync()


@pytest.fixture
def raw_db(db_path: Path) -> Iterator[Callable[[], sqlite3.Connection]]:
    """Opens plain sqlite3 connections to the test's file (autocommit), closed at teardown."""
    conns: list[sqlite3.Connection] = []

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        conns.append(conn)
        return conn

    yield connect
    for conn in conns:
        conn.close()


def _refuse_on_postgres(request: pytest.FixtureRequest, fixture: str) -> None:
    """Fail a PostgreSQL run of a test that asks for a SQLite-only fixture."""
    if "engine_name" not in request.fixturenames:
        return
    if request.getfixturevalue("engine_name") != "sqlite":
        pytest.fail(f"{fixture} is a SQLite file: mark the test sqlite_only", pytrace=False)


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 5.0,
    *,
    interval: float = 0.01,
    message: str = "condition",
) -> Any:
    """Await until ``predicate()`` (sync or async) is truthy; return its value.

    Raises:
        AssertionError: The condition did not hold within ``timeout`` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} did not hold within {timeout}s (last: {value!r})")
        await asyncio.sleep(interval)


async def wait_for_state(
    jobs: Jobs, job_id: int, *states: JobState, timeout: float = 5.0
) -> Job[Any]:
    """Await until job ``job_id`` is in one of ``states`` (default: finished); return it."""
    states = states or tuple(FINISHED_STATES)

    async def reached() -> Job[Any] | None:
        job = await jobs.get_job(job_id)
        return job if job is not None and job.state in states else None

    result: Job[Any] = await wait_until(
        reached, timeout, interval=0.02, message=f"job {job_id} in {[s.value for s in states]}"
    )
    return result
