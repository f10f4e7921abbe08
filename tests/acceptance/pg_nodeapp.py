"""The application the PostgreSQL acceptance tests run in node subprocesses.

Settings travel as ``UWPG_<NAME>`` environment variables (see :class:`PgSettings`), so the
same module serves the test process (to enqueue) and every node process. Run a node with
``python -m tests.acceptance.pg_nodeapp``; it stops gracefully on SIGTERM.

Every execution of the :data:`RECORD` worker first inserts one row into the test's ``runs``
table (``job_id, node, attempt`` and the server's clock) on a connection of its own, in its
own transaction, then sleeps as long as its args say. A job that ran twice has two rows.
The workers named in ``extra_workers`` do the same (nodes with different worker sets).

The :data:`LEDGER` worker touches no database: it appends ``start`` and ``finish`` lines to
an execution log in ``log_dir`` (see :class:`~tests.acceptance.nodeapp.ExecutionLog`), so
runs are recorded while the database is unreachable too.
"""

from __future__ import annotations

import asyncio
import os
import sys
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, ClassVar

from psycopg_pool import AsyncConnectionPool

from tests.acceptance.nodeapp import (
    EnvSettings,
    ExecutionLog,
    duration,
    log_to_stderr,
    stopping,
)
from underway.jobs import Job, Jobs

RECORD = "pg_acceptance.record"
LEDGER = "pg_acceptance.ledger"
RUNS_DDL = (
    "CREATE TABLE {schema}.runs (id bigserial PRIMARY KEY, job_id bigint NOT NULL, "
    "node text NOT NULL, attempt integer NOT NULL, at timestamptz NOT NULL "
    "DEFAULT clock_timestamp())"
)
_INSERT_RUN = "INSERT INTO {schema}.runs (job_id, node, attempt) VALUES (%s, %s, %s)"


@dataclass(frozen=True)
class PgSettings(EnvSettings):
    """How a node is set up; each field travels as ``UWPG_<NAME>``.

    Attributes:
        dsn: The test database (without underway's options).
        schema: The schema of underway's tables and of ``runs``.
        node: The node's name.
        queues: ``"name=limit,..."``.
        cron: A cron expression for the :data:`RECORD` worker, or empty for none.
        pool_size: Connections of the engine's pool (and of the ``runs`` pool).
        log_dir: Where the :data:`LEDGER` worker writes its execution log.
        extra_workers: Comma-separated names of more workers that behave as :data:`RECORD`.
    """

    env_prefix: ClassVar[str] = "UWPG_"

    dsn: str
    schema: str
    node: str = "node"
    queues: str = "default=10"
    heartbeat: float = 0.2
    rescue_after: float = 1.5
    leader_ttl: float = 1.0
    grace: float = 5.0
    poll: float = 0.1
    retry_after: float = 0.2
    cron: str = ""
    pool_size: int = 4
    log_dir: str = "."
    extra_workers: str = ""

    @property
    def url(self) -> str:
        """The engine URL: the test database with the schema and the pool size."""
        return f"{self.dsn}?schema={self.schema}&pool_size={self.pool_size}"


class Runs:
    """Writes one ``runs`` row per execution through a small pool of its own."""

    def __init__(self, settings: PgSettings) -> None:
        self.sql = _INSERT_RUN.format(schema=settings.schema)
        self.node = settings.node
        self.pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
            settings.dsn,
            min_size=1,
            max_size=settings.pool_size,
            open=False,
            kwargs={"autocommit": True},
            timeout=10.0,
            name=f"runs-{settings.node}",
        )

    async def record(self, job: Job[Any]) -> None:
        """Insert the row of this execution (autocommit: its own transaction)."""
        async with self.pool.connection() as conn:
            await conn.execute(self.sql, (job.id, self.node, job.attempt))


def build(settings: PgSettings, runs: Runs | None = None) -> Jobs:
    """The app configured by ``settings``; its worker writes to ``runs`` when given."""
    jobs = Jobs(
        settings.url,
        queues=settings.queue_limits(),
        node_name=settings.node,
        poll_interval=settings.poll,
        stage_interval=settings.poll,
        heartbeat_interval=settings.heartbeat,
        rescue_after=settings.rescue_after,
        leader_ttl=settings.leader_ttl,
        shutdown_grace=settings.grace,
    )

    async def record(job: Job[dict[str, Any]]) -> None:
        if runs is None:
            raise RuntimeError("this app only enqueues")
        await runs.record(job)
        await asyncio.sleep(duration(job.args, settings.node))

    for name in (RECORD, *filter(None, settings.extra_workers.split(","))):
        jobs.worker(name=name, backoff=settings.retry_after)(record)
    log = ExecutionLog(settings.log_dir, settings.node)

    @jobs.worker(name=LEDGER, backoff=settings.retry_after)
    async def ledger(job: Job[dict[str, Any]]) -> None:
        log.write("start", job)
        await asyncio.sleep(duration(job.args, settings.node))
        log.write("finish", job)

    if settings.cron:
        jobs.add_cron(settings.cron, jobs.workers[RECORD], args={"cron": settings.cron})
    return jobs


def client(settings: PgSettings) -> AbstractContextManager[Jobs]:
    """An app that enqueues and inspects without running a node; closed on exit."""
    return stopping(build(settings))


async def serve(settings: PgSettings) -> None:
    """Run a node until SIGTERM/SIGINT, with the ``runs`` pool open meanwhile."""
    runs = Runs(settings)
    await runs.pool.open(wait=False)
    try:
        await build(settings, runs).serve(wait_for_threads=False)
    finally:
        await runs.pool.close()


def main() -> int:
    """Run one node with the settings of the environment."""
    settings = PgSettings.from_env(os.environ)
    log_to_stderr(settings.node)
    asyncio.run(serve(settings))
    return 0


if __name__ == "__main__":
    sys.exit(main())
