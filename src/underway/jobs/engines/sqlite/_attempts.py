"""Claiming jobs for a node and recording how their attempts ended, on SQLite."""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from typing import Any

from underway.jobs.engines._claimed import claimed_job
from underway.jobs.engines._rows import COLUMNS, UndecodableRow, discard_params
from underway.jobs.engines._sql import query
from underway.jobs.engines.sqlite._counters import Tally
from underway.jobs.engines.sqlite._thread import DIALECT, write_transaction
from underway.jobs.job import Job, JobState
from underway.jobs.outcomes import Ack

__all__ = ["ack_writer", "claim"]

_log = logging.getLogger("underway.jobs")


def _sql(name: str) -> str:
    return query(DIALECT, name)


def claim(conn: sqlite3.Connection, params: dict[str, Any]) -> list[Job[Any]]:
    """Claim available jobs of ``params["queue"]`` for ``params["node"]``, in start order.

    A queue with nothing available is seen with a read, without taking the write lock. A
    claimed row that cannot be decoded is discarded in the same transaction, with an error
    naming the column; the other jobs are returned.
    """
    if conn.execute(_sql("fetch_probe"), params).fetchone() is None:
        return []
    with write_transaction(conn):
        rows = conn.execute(_sql("fetch").format(columns=COLUMNS), params).fetchall()
        rows.sort(key=lambda r: (r[10], r[12], r[0]))
        jobs: list[Job[Any]] = []
        undecodable: list[UndecodableRow] = []
        for row in rows:
            try:
                jobs.append(claimed_job(row))
            except UndecodableRow as exc:
                undecodable.append(exc)
        if undecodable:
            conn.executemany(
                _sql("discard_undecodable"),
                [discard_params(bad, params) for bad in undecodable],
            )
    for bad in undecodable:
        _log.warning("job %d discarded: %s", bad.job_id, bad)
    return jobs


def ack_writer(acks: Sequence[Ack], node: str) -> Callable[[sqlite3.Connection], None]:
    """A function that records ``acks`` of ``node`` in one write transaction.

    Completed attempts, the usual case, go in one statement (a JSON array of them), the
    others one statement each. Each job an ack changed comes back and is counted; the
    counts of the batch are added to the per-minute counters with one more statement.
    """
    completed: list[list[Any]] = []
    others: list[tuple[Ack, str, dict[str, Any]]] = []
    for a in acks:
        if a.state is JobState.COMPLETED:
            completed.append([a.job_id, a.at, a.attempt, a.result])
        else:
            others.append((a, *_ack_params(a, node)))
    done = {"acks": json.dumps(completed), "node": node}

    def write(conn: sqlite3.Connection) -> None:
        tally = Tally()
        with write_transaction(conn):
            if completed:
                for queue, worker, at in conn.execute(_sql("ack_completed"), done):
                    tally.add(at, queue, worker, "completed")
            for a, name, params in others:
                kind = "snoozed" if a.snoozed else a.state.value
                tally.add_rows(conn.execute(_sql(name), params), kind, a.at)
            tally.write(conn)

    return write


def _ack_params(a: Ack, node: str) -> tuple[str, dict[str, Any]]:
    """The query that records ``a`` (not completed) and its parameters."""
    if a.snoozed:
        params = {"id": a.job_id, "scheduled_at": a.scheduled_at, "attempt": a.attempt}
        return "ack_snoozed", {**params, "node": node}
    return "ack_failed", {
        "id": a.job_id,
        "state": a.state.value,
        "at": a.at,
        "attempt": a.attempt,
        "scheduled_at": a.scheduled_at,
        "error": a.error,
        "traceback": a.traceback,
        "node": node,
    }
