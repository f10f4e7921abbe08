"""Enqueue inside the application's own transaction, for every supported Python stack.

Each test runs a node (``poll_interval=30``) on a fresh schema and, through one stack, opens
a transaction that writes an app row (``orders``) and enqueues jobs (a unique job twice, so
the duplicate comes back as a conflict, and a scheduled job): rolled back, neither the row
nor any job exists; committed, both exist, and the node runs the job well before its next
poll, so the notification sent on commit woke it.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast
from urllib.parse import urlsplit

import asyncpg
import psycopg
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from underway.errors import ConfigError, DatabaseError
from underway.jobs import Job, Jobs, JobState, Unique
from underway.jobs.engines.postgres._sql import channels, quote_ident

from ..pg import Schemas, schemas

pytestmark = pytest.mark.postgres

POLL = 30.0  # the node's poll interval: only a notification runs a job sooner
WOKE_WITHIN = 10.0  # seconds from the start of the committing transaction to the job's start
InTx = Callable[[int, bool], Awaitable[Job[Any]]]  # (order, commit?) -> the enqueued job


@pytest.fixture
def pgs() -> Iterator[Schemas]:
    with schemas() as made:
        yield made


@dataclass
class App:
    """A running node, its workers, and the application's ``orders`` table."""

    jobs: Jobs
    schema: str
    pgs: Schemas
    node_started: float = field(default_factory=time.monotonic)
    started: dict[int, float] = field(default_factory=dict)

    @property
    def orders_table(self) -> str:
        return f'"{self.schema}".orders'

    def insert_order(self, placeholder: str = "%s") -> str:
        return f"INSERT INTO {self.orders_table} (n) VALUES ({placeholder})"

    def specs(self, order: int) -> list[Any]:
        ship, remind = self.jobs.workers["ship"], self.jobs.workers["remind"]
        return [
            ship.new({"order": order}),
            ship.new({"order": order}),  # a unique duplicate in the same batch
            remind.new({"order": order}, schedule_in=3600, tags=["later"]),
        ]

    async def enqueue(self, order: int, conn: Any) -> Job[Any]:
        return self.check(await self.jobs.enqueue_many(self.specs(order), conn=conn))

    def enqueue_sync(self, order: int, conn: Any) -> Job[Any]:
        return self.check(self.jobs.enqueue_many_sync(self.specs(order), conn=conn))

    @staticmethod
    def check(inserted: list[Job[Any]]) -> Job[Any]:
        first, dup, later = inserted
        assert (first.conflict, dup.conflict, dup.id) == (False, True, first.id)
        assert (first.state, later.state) == (JobState.AVAILABLE, JobState.SCHEDULED)
        assert later.tags == ("later",)
        return first

    def orders(self) -> list[int]:
        with self.pgs.connect() as conn:
            found = conn.execute(f"SELECT n FROM {self.orders_table} ORDER BY n").fetchall()
        return [cast(int, r[0]) for r in found]

    async def verify(self, in_tx: InTx) -> None:
        """Rollback leaves nothing; commit keeps the row and the jobs and wakes the node."""
        gone = await in_tx(1, False)
        assert await self.jobs.get_job(gone.id) is None
        assert await self.jobs.list_jobs() == []
        assert self.orders() == []

        began = time.monotonic()
        kept = await in_tx(2, True)
        ran_at = await self.wait_started(kept.args["order"], began + POLL - 0.5)
        assert ran_at - began < WOKE_WITHIN, f"job started {ran_at - began:.2f}s after commit"
        assert ran_at < self.node_started + POLL, "the node may have polled: inconclusive"
        assert self.orders() == [2]
        stored = await self.wait_finished(kept.id)
        assert (stored.state, stored.args) == (JobState.COMPLETED, {"order": 2})
        waiting = await self.jobs.list_jobs(state=JobState.SCHEDULED)
        assert [j.args for j in waiting] == [{"order": 2}]

    async def wait_started(self, order: int, deadline: float) -> float:
        while order not in self.started:
            assert time.monotonic() < deadline, "the committed job did not run before a poll"
            await asyncio.sleep(0.01)
        return self.started[order]

    async def wait_finished(self, job_id: int) -> Job[Any]:
        deadline = time.monotonic() + 5.0
        while True:
            job = await self.jobs.get_job(job_id)
            if job is not None and job.state is JobState.COMPLETED:
                return job
            assert time.monotonic() < deadline, f"job {job_id} is {job}"
            await asyncio.sleep(0.02)

    async def wait_listening(self) -> None:
        """Until the node LISTENs, so that a notification is not missed."""
        statement = f"LISTEN {quote_ident(channels(self.schema)[1])}"
        deadline = time.monotonic() + 5.0
        with self.pgs.connect() as conn:
            while not conn.execute(
                "SELECT 1 FROM pg_stat_activity WHERE query = %s", (statement,)
            ).fetchone():
                assert time.monotonic() < deadline, "the node never listened"
                await asyncio.sleep(0.02)


@asynccontextmanager
async def running(pgs: Schemas) -> AsyncIterator[App]:
    schema = pgs.name()
    jobs = Jobs(
        database=pgs.url(schema),
        queues={"default": 5},
        poll_interval=POLL,
        heartbeat_interval=0.5,
        shutdown_grace=2.0,
        prune=None,
    )
    app = App(jobs, schema, pgs)

    @jobs.worker(name="ship", unique=Unique(period=60))
    async def ship(job: Job[Any]) -> None:
        app.started[job.args["order"]] = time.monotonic()

    @jobs.worker(name="remind")
    async def remind(job: Job[Any]) -> None: ...

    async with jobs:
        with pgs.connect() as conn:
            conn.execute(f"CREATE TABLE {app.orders_table} (n int PRIMARY KEY)")
        await app.wait_listening()
        yield app


def in_thread(pool: ThreadPoolExecutor, fn: Callable[[int, bool], Job[Any]]) -> InTx:
    """``fn`` (blocking) run on ``pool``'s one thread, so the node's loop keeps running."""

    async def run(order: int, commit: bool) -> Job[Any]:
        return await asyncio.get_running_loop().run_in_executor(pool, fn, order, commit)

    return run


def sqlalchemy_url(pgs: Schemas, driver: str) -> str:
    return pgs.base.replace("postgresql://", f"postgresql+{driver}://", 1)


# -- psycopg --------------------------------------------------------------------------------


async def test_psycopg_connection(pgs: Schemas) -> None:
    async with running(pgs) as app:
        with psycopg.connect(pgs.base) as conn, ThreadPoolExecutor(1) as pool:

            def in_tx(order: int, commit: bool) -> Job[Any]:
                with conn.transaction(force_rollback=not commit):
                    conn.execute(app.insert_order(), (order,))
                    return app.enqueue_sync(order, conn)

            await app.verify(in_thread(pool, in_tx))


async def test_psycopg_async_connection(pgs: Schemas) -> None:
    async with running(pgs) as app, await psycopg.AsyncConnection.connect(pgs.base) as conn:

        async def in_tx(order: int, commit: bool) -> Job[Any]:
            async with conn.transaction(force_rollback=not commit):
                await conn.execute(app.insert_order(), (order,))
                return await app.enqueue(order, conn)

        await app.verify(in_tx)


# -- asyncpg --------------------------------------------------------------------------------


async def test_asyncpg_connection(pgs: Schemas) -> None:
    async with running(pgs) as app:
        conn = await asyncpg.connect(pgs.base)
        try:

            async def in_tx(order: int, commit: bool) -> Job[Any]:
                tx = conn.transaction()
                await tx.start()
                await conn.execute(app.insert_order("$1"), order)
                job = await app.enqueue(order, conn)
                await (tx.commit() if commit else tx.rollback())
                return job

            await app.verify(in_tx)
            with pytest.raises(ConfigError, match="use the async enqueue"):
                app.jobs.workers["ship"].enqueue_sync({"order": 3}, conn=conn)
        finally:
            await conn.close()


# -- SQLAlchemy -----------------------------------------------------------------------------


async def test_sqlalchemy_session_psycopg(pgs: Schemas) -> None:
    engine = create_engine(sqlalchemy_url(pgs, "psycopg"))
    try:
        async with running(pgs) as app:
            with ThreadPoolExecutor(1) as pool:

                def in_tx(order: int, commit: bool) -> Job[Any]:
                    with Session(engine) as session:
                        session.execute(text(app.insert_order(":n")), {"n": order})
                        job = app.enqueue_sync(order, session)
                        session.commit() if commit else session.rollback()
                        return job

                await app.verify(in_thread(pool, in_tx))
    finally:
        engine.dispose()


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
async def test_sqlalchemy_async_session(pgs: Schemas, driver: str) -> None:
    engine = create_async_engine(sqlalchemy_url(pgs, driver))
    try:
        async with running(pgs) as app:

            async def in_tx(order: int, commit: bool) -> Job[Any]:
                async with AsyncSession(engine) as session:
                    await session.execute(text(app.insert_order(":n")), {"n": order})
                    job = await app.enqueue(order, session)
                    await (session.commit() if commit else session.rollback())
                    return job

            await app.verify(in_tx)
    finally:
        await engine.dispose()


# -- Django ---------------------------------------------------------------------------------


def configure_django(pgs: Schemas) -> None:
    """Django settings with the test database as ``default`` (once per process)."""
    import django
    from django.conf import settings

    if settings.configured:
        return
    url = urlsplit(pgs.base)
    database = {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/"),
        "USER": url.username or "",
        "PASSWORD": url.password or "",
        "HOST": url.hostname or "",
        "PORT": str(url.port or 5432),
    }
    settings.configure(DATABASES={"default": database}, USE_TZ=True)
    django.setup()


async def test_django_atomic(pgs: Schemas) -> None:
    configure_django(pgs)
    from django.db import connection, transaction

    class Rollback(Exception):
        pass

    async with running(pgs) as app:
        with ThreadPoolExecutor(1) as pool:

            def in_tx(order: int, commit: bool) -> Job[Any]:
                try:
                    with transaction.atomic():
                        with connection.cursor() as cursor:
                            cursor.execute(app.insert_order(), [order])
                        job = app.enqueue_sync(order, connection)
                        if not commit:
                            raise Rollback
                except Rollback:
                    pass
                return job

            try:
                await app.verify(in_thread(pool, in_tx))
            finally:
                await asyncio.get_running_loop().run_in_executor(pool, lambda: connection.close())


# -- what conn may be -----------------------------------------------------------------------


def test_an_unsupported_conn_lists_the_supported_kinds(pgs: Schemas) -> None:
    jobs = Jobs(database=pgs.url(), testing="manual")

    @jobs.worker
    def ship(job: Job[Any]) -> None: ...

    with pytest.raises(ConfigError) as raised:
        ship.enqueue_sync({}, conn=object())
    for kind in ("psycopg Connection", "asyncpg", "SQLAlchemy Session", "AsyncSession", "Django"):
        assert kind in str(raised.value)


async def test_an_async_only_conn_needs_the_async_enqueue(pgs: Schemas) -> None:
    jobs = Jobs(database=pgs.url(), testing="manual")

    @jobs.worker
    def ship(job: Job[Any]) -> None: ...

    engine = create_async_engine(sqlalchemy_url(pgs, "asyncpg"))
    try:
        async with AsyncSession(engine) as session:
            with pytest.raises(ConfigError, match="AsyncSession: use the async enqueue"):
                ship.enqueue_sync({}, conn=session)
    finally:
        await engine.dispose()


def test_a_sqlalchemy_session_on_another_database_is_refused(pgs: Schemas) -> None:
    jobs = Jobs(database=pgs.url(), testing="manual")

    @jobs.worker
    def ship(job: Job[Any]) -> None: ...

    engine = create_engine("sqlite://")
    try:
        with Session(engine) as session, pytest.raises(ConfigError, match="sqlite, not Postgre"):
            ship.enqueue_sync({}, conn=session)
    finally:
        engine.dispose()


async def test_a_failed_statement_names_the_application_connection(pgs: Schemas) -> None:
    jobs = Jobs(database=pgs.url(), testing="manual")

    @jobs.worker
    def ship(job: Job[Any]) -> None: ...

    conn = await asyncpg.connect(pgs.base)
    try:
        tx = conn.transaction()
        await tx.start()
        with pytest.raises(asyncpg.PostgresError):
            await conn.execute("SELECT 1/0")
        with pytest.raises(DatabaseError, match=r"\(through the application.s asyncpg Conn"):
            await ship.enqueue({}, conn=conn)
        await tx.rollback()
        assert await jobs.list_jobs() == []
    finally:
        await conn.close()


def test_no_driver_is_imported_for_other_objects() -> None:
    script = (
        "import sys, psycopg\n"
        "from underway.jobs.engines.postgres.adapters import adapt\n"
        "from underway.jobs.engines.postgres import PostgresEngine\n"
        "try:\n    adapt(object())\nexcept ValueError:\n    pass\n"
        "print(sorted(m for m in ('asyncpg', 'sqlalchemy', 'django') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
