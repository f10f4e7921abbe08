"""The per-minute counters of finished attempts on SQLite: added up by the transaction that
acks a batch (or cancels jobs by request), read by range, pruned by the pruner.

SQLite cannot aggregate the rows an ``UPDATE ... RETURNING`` changed inside another
statement, so the ack statements return the queue and worker of each job they changed, a
:class:`Tally` adds them up by minute, queue and worker, and one upsert
(``sql/counters_add.sql``) writes the batch's counts in the same write transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from underway.jobs.engines._sql import query
from underway.jobs.engines.base import CounterRow
from underway.jobs.engines.sqlite._thread import DIALECT

__all__ = ["KINDS", "Tally", "prune_counters", "read_counters"]

KINDS = ("completed", "failed", "discarded", "cancelled", "snoozed")
"""The counts of a row, in the order of the table's columns."""
_INDEX = {kind: i for i, kind in enumerate(KINDS)}
_INDEX["retryable"] = _INDEX["failed"]  # a failed attempt's next state is retryable


def _sql(name: str) -> str:
    return query(DIALECT, name)


class Tally:
    """Counts of one batch by (minute, queue, worker), written with one statement."""

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[int, str, str], list[int]] = {}

    def add(self, at: float, queue: str, worker: str, kind: str, n: int = 1) -> None:
        """Count ``n`` attempts of ``kind`` (a counter, or ``retryable`` for ``failed``)
        that finished at ``at`` (epoch seconds) in ``queue`` and ``worker``."""
        key = (int(at // 60) * 60, queue, worker)
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0, 0, 0, 0, 0]
        counts[_INDEX[kind]] += n

    def add_rows(self, rows: Iterable[tuple[Any, ...]], kind: str, at: float) -> None:
        """Count each ``(queue, worker, ...)`` row as one attempt of ``kind`` at ``at``."""
        for row in rows:
            self.add(at, row[0], row[1], kind)

    def write(self, conn: sqlite3.Connection) -> None:
        """Add the counts to the table (in the caller's transaction); nothing if empty."""
        if self._counts:
            counts = [[*key, *values] for key, values in self._counts.items()]
            conn.execute(_sql("counters_add"), {"counts": json.dumps(counts)})


def read_counters(
    conn: sqlite3.Connection,
    since: float,
    until: float,
    queues: tuple[str, ...],
    workers: tuple[str, ...],
    bucket: int = 60,
    by: tuple[str, ...] = ("queue", "worker"),
) -> list[CounterRow]:
    """The counters of the minutes in ``[since, until)`` (of ``queues`` and ``workers`` if
    given), in key order; summed per ``bucket`` seconds from ``since`` and by the
    dimensions of ``by`` unless they are the rows themselves (a minute, both)."""
    params: dict[str, Any] = {
        "since": int(since),
        "until": until,
        "queues": json.dumps(list(queues)) if queues else None,
        "workers": json.dumps(list(workers)) if workers else None,
    }
    if bucket == 60 and by == ("queue", "worker"):
        name = "job_counters"
    else:
        name = "job_counter_sums"
        params |= {"bucket": bucket, "by_queue": "queue" in by, "by_worker": "worker" in by}
    return [
        (float(m), q, w, c, f, d, x, s)
        for m, q, w, c, f, d, x, s in conn.execute(_sql(name), params)
    ]


def prune_counters(conn: sqlite3.Connection, params: dict[str, Any]) -> int:
    """Delete one batch of old counters (its own transaction); how many went."""
    return int(conn.execute(_sql("prune_counters"), params).rowcount)
