"""Every statement a PostgreSQL node issues is planned without scanning the history.

The table is seeded with finished jobs (the history a production queue keeps, a third of
them holding unique keys) and a few thousand waiting and running ones, analyzed, and each
statement is explained with realistic parameters, in a session set up as the engine's pools
set theirs up and with ``enable_seqscan`` left on: a plan that reads every row of a jobs
table or of the unique keys (``Seq Scan``) fails. The statements come from
``postgres/sql``: a new one without parameters here fails the test, so none escapes it.
"""

from __future__ import annotations

import itertools
import json
import time
from importlib import resources
from typing import Any, cast

import pytest

from underway.jobs.engines.base import JobFilter
from underway.jobs.engines.postgres import PostgresEngine
from underway.jobs.engines.postgres._ack import KINDS, ack_statement
from underway.jobs.engines.postgres._insert import insert_params
from underway.jobs.engines.postgres._params import filter_params
from underway.jobs.engines.postgres._pool import SESSION
from underway.jobs.job import FINISHED_STATES, JobSpec

from ..pg import Schemas

pytestmark = pytest.mark.postgres

HISTORY = 300_000  # finished rows: enough that a scan of them is never the cheapest plan
# Tables that grow with the jobs and the history (the counters: a row per minute, queue and
# worker for as long as they are kept).
BIG = ("underway_jobs", "underway_unique", "underway_counters")
NOW = time.time()
# Not planned by test_no_statement_scans_a_jobs_table: VACUUM is maintenance of the live
# partition itself; the prune statement is a template per state, planned by its own test;
# counts is the exact count of every state that ``Jobs.counts`` and the CLI's stats line
# (off by default) ask for, which a node does not issue on its own; the bulk actions change
# every job matching a filter of the caller's choosing (args, tags, time ranges): a node
# never issues them, and some filters can only be checked row by row.
# The ack statement is made for each batch of the kinds of outcome in it: every combination
# is planned by its own test.
UNPLANNED = {"vacuum", "prune", "counts", "retry_jobs", "cancel_jobs", "delete_jobs", "ack"}
# Asked for by an overview (a dashboard), not by a node: the counts of waiting and running jobs
# read the live partition only, a pass the size of the backlog that the planner prefers to
# an index while most waiting jobs are available; the history is never read.
LIVE_ONLY = {"queue_counts"}

NAMED: dict[str, dict[str, Any]] = {
    "fetch": {
        "queue": "q",
        "limit": 100,
        "node": "n1",
        "now": NOW,
        "any_worker": False,
        "workers": ["w"],
    },
    "available_sample": {"queues": ["q", "other"], "sample": 100},
    "cancel_job": {"id": 5, "now": NOW},
    "cron_slot": {"name": "c", "slot": NOW},
    "cron_slots": {"names": ["c", "d"]},
    "dead_rows": {"live": "underway_jobs_live"},
    "discard_undecodable": {
        "id": 5,
        "now": NOW,
        "reset_errors": False,
        "error": "bad",
        "node": "n1",
    },
    "executing": {"node": "n1"},
    "forget_node": {"node": "n1"},
    "forget_stale_nodes": {"window": 60.0},
    "get_job": {"id": 5},
    "job_counters": {"since": NOW - 3600, "until": NOW, "queues": ["q"], "workers": None},
    "job_counter_sums": {
        "since": NOW - 6 * 3600,
        "until": NOW,
        "queues": None,
        "workers": None,
        "bucket": 300,
        "by_queue": True,
        "by_worker": False,
    },
    "heartbeat": {"node": "n1", "now": NOW, "meta": "{}"},
    "lease_acquire": {"name": "leader", "node": "n1", "ttl": 30.0},
    "lease_release": {"name": "leader", "node": "n1"},
    "list_jobs": {**filter_params(JobFilter()), "limit": 50, "offset": 0},
    "live_nodes": {"window": 60.0},
    "prune_counters": {"before": NOW - 7 * 86_400, "limit": 1000},
    "node_rows": {"lease": "leader"},
    "queue_counts": {},
    "release": {"ids": [1, 2], "attempts": [1, 1], "node": "n1", "now": NOW},
    "rescue": {"window": 60.0, "now": NOW},
    "retry_job": {"id": 5, "now": NOW},
    "signal_publish": {"payload": "{}"},
    "signals_since": {"since": NOW - 60},
    "stage": {"now": NOW, "queue": None},
}
ACKS = {
    "c_id": [1, 2],
    "c_at": [NOW, NOW],
    "c_result": [None, None],
    "c_attempt": [1, 1],
    "f_id": [3],
    "f_state": ["retryable"],
    "f_at": [NOW],
    "f_attempt": [1],
    "f_scheduled_at": [NOW + 5],
    "f_error": ["boom"],
    "f_traceback": [None],
    "s_id": [4],
    "s_at": [NOW],
    "s_scheduled_at": [NOW + 5],
    "s_attempt": [1],
    "node": "n1",
}
POSITIONAL: dict[str, tuple[Any, ...]] = {
    "insert": insert_params(
        [
            JobSpec(worker="w", queue="q", args={}, args_json="{}", unique_key="k1"),
            JobSpec(worker="w", queue="q", args={}, args_json="{}"),
        ],
        NOW,
    ),
    "unique_existing": (["k1", "k2"],),
    "unique_expire": (["k1", "k2"], NOW),
}

SEED = """
INSERT INTO underway_jobs (state, queue, worker, args, attempt, inserted_at, scheduled_at,
                           attempted_at, attempted_by, completed_at, discarded_at,
                           cancelled_at, unique_key, unique_states)
SELECT s, 'q', 'w', jsonb_build_object('i', i), 1, t, t, t, 'n0',
       CASE WHEN s = 'completed' THEN t END, CASE WHEN s = 'discarded' THEN t END,
       CASE WHEN s = 'cancelled' THEN t END,
       CASE WHEN i % 3 = 0 THEN 'key' || i END, CASE WHEN i % 3 = 0 THEN 127 ELSE 0 END
  FROM (SELECT i, now() - make_interval(secs => (%(n)s - i) * 0.05) AS t,
               CASE WHEN i % 10 = 0 THEN 'discarded' WHEN i % 10 = 1 THEN 'cancelled'
                    ELSE 'completed' END AS s
          FROM generate_series(1, %(n)s) AS i) AS g;
INSERT INTO underway_unique (key, job_id) SELECT unique_key, id FROM underway_jobs
 WHERE unique_key IS NOT NULL;
INSERT INTO underway_jobs (state, queue, worker, scheduled_at, attempt, attempted_by)
SELECT CASE WHEN i % 10 = 0 THEN 'executing' WHEN i % 10 = 1 THEN 'scheduled'
            WHEN i % 10 = 2 THEN 'retryable' ELSE 'available' END,
       CASE WHEN i % 2 = 0 THEN 'q' ELSE 'other' END, 'w',
       now() + make_interval(secs => i % 7), CASE WHEN i % 10 = 0 THEN 1 ELSE 0 END,
       CASE WHEN i % 10 = 0 THEN 'n1' END
  FROM generate_series(1, 4000) AS i;
INSERT INTO underway_nodes (name, started_at, heartbeat_at) VALUES ('n1', now(), now());
INSERT INTO underway_counters (minute, queue, worker, completed)
SELECT date_trunc('minute', now()) - make_interval(mins => m), 'q' || k % 4, 'w' || k / 4, 1
  FROM generate_series(0, 7 * 1440) AS m, generate_series(0, 11) AS k;
ANALYZE underway_jobs, underway_jobs_live, underway_jobs_done, underway_unique,
        underway_nodes, underway_counters;
"""


def _scans(plan: dict[str, Any]) -> list[tuple[str, str]]:
    """(node type, relation) of every node of a JSON plan that reads a relation."""
    found = []
    if "Relation Name" in plan:
        found.append((plan["Node Type"], plan["Relation Name"]))
    for child in plan.get("Plans", []):
        found += _scans(child)
    return found


def _statement_names() -> set[str]:
    folder = resources.files("underway.jobs.engines.postgres").joinpath("sql")
    return {p.name.removesuffix(".sql") for p in folder.iterdir() if p.name.endswith(".sql")}


@pytest.fixture(scope="module")
def seeded() -> Any:
    schemas = Schemas()
    engine = PostgresEngine(schemas.url())
    engine.migrate()
    with schemas.connect() as conn:
        conn.execute(f'SET search_path TO "{engine.schema}"')
        conn.execute(SEED.replace("%(n)s", str(HISTORY)))
    try:
        yield schemas, engine
    finally:
        engine.close_sync()
        schemas.drop_all()


def _explain(schemas: Schemas, sql: str, params: Any) -> list[tuple[str, str]]:
    with schemas.connect() as conn:
        conn.execute(SESSION)  # as the engine's pools set up their connections
        row = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
    assert row is not None
    plan = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    doc = cast("list[dict[str, Any]]", plan)  # EXPLAIN's JSON: one object per statement
    return _scans(doc[0]["Plan"])


def test_every_statement_has_parameters_here() -> None:
    assert _statement_names() - UNPLANNED == set(NAMED) | set(POSITIONAL)


@pytest.mark.parametrize("name", sorted(set(NAMED) | set(POSITIONAL)))
def test_no_statement_scans_a_jobs_table(seeded: Any, name: str) -> None:
    schemas, engine = seeded
    params = NAMED.get(name, POSITIONAL.get(name))
    scans = _explain(schemas, engine._sql[name], params)
    big = [rel for kind, rel in scans if kind == "Seq Scan" and rel.startswith(BIG)]
    if name in LIVE_ONLY:
        assert {rel for _, rel in scans} <= {"underway_jobs_live"}, scans
        big = [rel for rel in big if rel != "underway_jobs_live"]
    assert not big, scans


@pytest.mark.parametrize("state", sorted(FINISHED_STATES, key=str))
@pytest.mark.parametrize("due", [False, True])
def test_the_pruner_walks_its_index_whether_or_not_jobs_are_due(
    seeded: Any, state: Any, due: bool
) -> None:
    schemas, engine = seeded
    before = NOW if due else NOW - 30 * 86_400
    scans = _explain(schemas, engine.prune_sql(state), {"before": before, "limit": 1000})
    done = [kind for kind, rel in scans if rel == "underway_jobs_done"]
    assert done, scans
    assert all(kind.startswith("Index") for kind in done), scans


@pytest.mark.parametrize(
    "kinds",
    [c for n in range(1, len(KINDS) + 1) for c in itertools.combinations(KINDS, n)],
    ids="+".join,
)
def test_no_ack_statement_scans_a_jobs_table(seeded: Any, kinds: tuple[str, ...]) -> None:
    """Whatever kinds of outcome a batch holds, its jobs are found by primary key and its
    counts upserted through the counters' key."""
    schemas, engine = seeded
    scans = _explain(schemas, ack_statement(engine._sql.schema_sql, kinds), ACKS)
    big = [rel for kind, rel in scans if kind == "Seq Scan" and rel.startswith(BIG)]
    assert not big, scans
    assert {rel for _, rel in scans} >= {"underway_jobs_live", "underway_counters"}, scans


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("job_counters", {"since": NOW - 3600, "until": NOW, "queues": None, "workers": None}),
        ("job_counters", {"since": NOW - 60, "until": NOW, "queues": ["q1"], "workers": ["w1"]}),
        *(
            (
                "job_counter_sums",
                {
                    "since": NOW - hours * 3600,
                    "until": NOW,
                    "queues": queues,
                    "workers": None,
                    "bucket": bucket,
                    "by_queue": by_queue,
                    "by_worker": False,
                },
            )
            for hours, bucket in ((1, 60), (6, 300), (24, 900))
            for queues, by_queue in ((None, True), (None, False), (["q1"], True))
        ),
        ("prune_counters", {"before": NOW - 8 * 86_400, "limit": 1000}),
        ("prune_counters", {"before": NOW - 86_400, "limit": 1000}),
    ],
)
def test_the_counters_are_read_and_pruned_through_their_key(
    seeded: Any, name: str, params: dict[str, Any]
) -> None:
    """A range of minutes is read (and summed per bucket and queue, or in all), and the
    oldest minutes deleted, through the primary key (which starts with the minute), whether
    or not any minute is due."""
    schemas, engine = seeded
    scans = _explain(schemas, engine._sql[name], params)
    counters = [k for k, rel in scans if rel == "underway_counters" and k != "ModifyTable"]
    assert counters, scans
    assert all(kind.startswith(("Index", "Bitmap", "Tid")) for kind in counters), scans
