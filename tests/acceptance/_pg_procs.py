"""Helpers for process-level tests on PostgreSQL: a database, node processes, queries.

Each test module gets a database of its own (:func:`database`), each test a schema of its
own in it (:class:`PgCluster`), where the engine's tables and the test's ``runs`` table
live. Every node started through a :class:`PgCluster` is killed when its ``with`` block
ends, so a failing test leaves nothing running; node output goes to files in the test's
directory and is shown when a wait times out.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import psycopg

from tests.acceptance._procs import NodeProcesses
from tests.acceptance.pg_nodeapp import RECORD, RUNS_DDL, PgSettings, client


def admin_url() -> str:
    """The server's maintenance database, at ``$UNDERWAY_POSTGRES_ADDR`` like the marker."""
    addr = os.environ.get("UNDERWAY_POSTGRES_ADDR", "127.0.0.1:5432")
    return f"postgresql://postgres@{addr}/postgres"


@contextmanager
def database(tag: str) -> Iterator[str]:
    """A fresh database ``uw_accept_<pid>_<tag>`` for one test module; dropped at the end.

    Yields:
        Its URL.
    """
    name = f"uw_accept_{os.getpid()}_{tag}"
    with psycopg.connect(admin_url(), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url().rpartition("/")[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class Run:
    """One row of the ``runs`` table: an execution of a job."""

    job_id: int
    node: str
    attempt: int
    at: float


class PgCluster(NodeProcesses[PgSettings]):
    """Node processes on one schema of the test database, and what they did.

    Args:
        base: Settings shared by every node (database and schema included).
        workdir: Where each process's stdout/stderr files go.
    """

    module = "tests.acceptance.pg_nodeapp"
    poll_interval = 0.05

    def __init__(self, base: PgSettings, workdir: Path) -> None:
        super().__init__(base, workdir)
        self.schema = base.schema

    def __enter__(self) -> PgCluster:
        with client(self.base) as jobs:  # the tables exist before any node starts
            jobs.migrate_sync()
        self.execute(RUNS_DDL.format(schema=self.schema))
        return self

    def log(self, name: str) -> str:
        """Everything node ``name`` wrote to stderr (its log)."""
        return (self.workdir / f"{name}.err").read_text(errors="replace")

    # -- the database -------------------------------------------------------------------------

    def query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run ``sql`` (``{s}`` stands for the schema) on a fresh connection; its rows."""
        with psycopg.connect(self.base.dsn, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql.format(s=self.schema), params)
            return cur.fetchall() if cur.description is not None else []

    def execute(self, sql: str) -> None:
        """Run a statement without parameters (``{schema}`` already filled in)."""
        with psycopg.connect(self.base.dsn, autocommit=True) as conn:
            conn.execute(sql)

    def alive(self, node: str) -> bool:
        """Whether ``node`` has a heartbeat row (written before it claims any job)."""
        return bool(self.query("SELECT 1 FROM {s}.underway_nodes WHERE name = %s", (node,)))

    def heartbeat_at(self, node: str) -> float | None:
        """``node``'s last heartbeat as epoch seconds, if it has a row."""
        found = self.query(
            "SELECT extract(epoch FROM heartbeat_at)::float8 FROM {s}.underway_nodes "
            "WHERE name = %s",
            (node,),
        )
        return found[0][0] if found else None

    def leader(self) -> str | None:
        """The node holding an unexpired leader lease, if any."""
        found = self.query(
            "SELECT node FROM {s}.underway_leases WHERE name = 'leader' AND expires_at > now()"
        )
        return found[0][0] if found else None

    def lease(self) -> tuple[str, float] | None:
        """The leader lease row, expired or not: holder and expiry (epoch seconds)."""
        found = self.query(
            "SELECT node, extract(epoch FROM expires_at)::float8 FROM {s}.underway_leases "
            "WHERE name = 'leader'"
        )
        return (found[0][0], found[0][1]) if found else None

    def states(self) -> Counter[str]:
        """Jobs per state."""
        rows = self.query("SELECT state, COUNT(*) FROM {s}.underway_jobs GROUP BY state")
        return Counter(dict(rows))

    def completed(self) -> int:
        """How many jobs are completed."""
        return self.states()["completed"]

    def executing_on(self, node: str) -> set[int]:
        """Ids of the jobs ``node`` holds in the ``executing`` state."""
        rows = self.query(
            "SELECT id FROM {s}.underway_jobs WHERE state = 'executing' AND attempted_by = %s",
            (node,),
        )
        return {r[0] for r in rows}

    def runs(self) -> list[Run]:
        """Every execution so far, in time order."""
        rows = self.query(
            "SELECT job_id, node, attempt, extract(epoch FROM at)::float8 FROM {s}.runs "
            "ORDER BY at, id"
        )
        return [Run(*row) for row in rows]

    def runs_by(self, node: str) -> int:
        """How many executions ``node`` started."""
        return int(self.query("SELECT COUNT(*) FROM {s}.runs WHERE node = %s", (node,))[0][0])

    def errors(self, job_id: int) -> list[dict[str, Any]]:
        """The errors recorded on job ``job_id`` (rescues included)."""
        found = self.query("SELECT errors FROM {s}.underway_jobs WHERE id = %s", (job_id,))
        return list(found[0][0]) if found else []

    def enqueue(self, args: Sequence[dict[str, Any]]) -> list[int]:
        """Bulk-insert one :data:`RECORD` job per item of ``args``; their ids."""
        with client(self.base) as jobs:
            record = jobs.workers[RECORD]
            return [j.id for j in jobs.enqueue_many_sync([record.new(a) for a in args])]


def cluster(url: str, workdir: Path, **changes: Any) -> Iterator[PgCluster]:
    """A fixture body: a :class:`PgCluster` on a fresh schema of ``url``'s database."""
    schema = f"s_{uuid.uuid4().hex[:10]}"
    base = replace(PgSettings(dsn=url, schema=schema), **changes)
    with PgCluster(base, workdir) as procs:
        yield procs
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def runs_per_job(runs: Sequence[Run]) -> Counter[int]:
    """How many times each job ran."""
    return Counter(r.job_id for r in runs)


def wait_until(at: float) -> None:
    """Sleep until the wall clock reads ``at`` (epoch seconds): for clock-bound tests."""
    time.sleep(max(0.0, at - time.time()))
