"""Bulk job actions on both engines: the filters (shared with listing), the states each
action touches, counts, one statement whatever the number of jobs, and bad input refused
before any SQL."""

from __future__ import annotations

import asyncio
import functools
import json
import sqlite3
import time
import zoneinfo
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from underway.errors import ConfigError
from underway.jobs import Job, Jobs, JobState, Unique
from underway.jobs.engines.base import BULK_CANCEL_STATES, BULK_DELETE_STATES, BULK_RETRY_STATES

from ..conftest import Database, MakeJobs, wait_for_state, wait_until

T0 = 1_700_000_000.0
ACTION_STATES = {
    "retry": BULK_RETRY_STATES,
    "cancel": BULK_CANCEL_STATES,
    "delete": BULK_DELETE_STATES,
}
AFTER = {"retry": JobState.AVAILABLE, "cancel": JobState.CANCELLED, "delete": None}

# name: (state, queue, worker, other columns)
JOBS: dict[str, tuple[str, str, str, dict[str, Any]]] = {
    "a": (
        "completed",
        "default",
        "w.a",
        {
            "tags": ["x", "y"],
            "args": {"user": 1, "kind": "mail", "nested": {"k": "v", "n": 2}, "list": [1, 2, "z"]},
            "meta": {"source": "api"},
            "attempted_by": "node-1",
            "attempt": 1,
            "inserted_at": T0 + 10,
            "completed_at": T0 + 20,
        },
    ),
    "b": (
        "discarded",
        "mail",
        "w.b",
        {
            "tags": ["x"],
            "args": {"user": 2, "kind": "mail"},
            "meta": {"source": "cron", "flag": True},
            "attempted_by": "node-2",
            "attempt": 3,
            "max_attempts": 3,
            "inserted_at": T0 + 30,
            "discarded_at": T0 + 40,
        },
    ),
    "c": (
        "cancelled",
        "mail",
        "w.a",
        {
            "args": {"user": 1.0},
            "meta": {"flag": False},
            "inserted_at": T0 + 50,
            "cancelled_at": T0 + 60,
        },
    ),
    "d": (
        "retryable",
        "default",
        "w.b",
        {
            "tags": ["y"],
            "args": {"user": "1"},
            "meta": {"none": None},
            "attempted_by": "node-1",
            "attempt": 1,
            "inserted_at": T0 + 70,
        },
    ),
    "e": (
        "scheduled",
        "other",
        "w.c",
        {"tags": ["x", "y", "z"], "args": {"list": [2]}, "inserted_at": T0 + 80},
    ),
    "f": ("available", "default", "w.a", {"inserted_at": T0 + 90}),
    "g": (
        "executing",
        "mail",
        "w.c",
        {
            "args": {"nested": {"k": "v"}},
            "attempted_by": "node-2",
            "attempt": 1,
            "inserted_at": T0 + 100,
        },
    ),
}

# (filters, the jobs they match)
CASES: list[tuple[dict[str, Any], str]] = [
    ({"state": "completed"}, "a"),
    ({"state": ["retryable", "scheduled"]}, "de"),
    ({"state": JobState.CANCELLED}, "c"),
    ({"queue": "mail"}, "bcg"),
    ({"queue": ["mail", "other"]}, "bceg"),
    ({"worker": "w.a"}, "acf"),
    ({"worker": ("w.b", "w.c")}, "bdeg"),
    ({"tags": ["x"]}, "abe"),
    ({"tags": ["x", "y"]}, "ae"),
    ({"node": "node-1"}, "ad"),
    ({"inserted_after": T0 + 50}, "cdefg"),
    ({"inserted_before": T0 + 50}, "ab"),
    ({"inserted_after": T0 + 30, "inserted_before": T0 + 70}, "bc"),
    ({"finished_after": datetime.fromtimestamp(T0 + 40, UTC)}, "bc"),
    ({"finished_before": T0 + 40}, "a"),
    ({"args": {"user": 1}}, "ac"),
    ({"args": {"user": "1"}}, "d"),
    ({"args": {"kind": "mail", "user": 2}}, "b"),
    ({"args": {"nested": {"k": "v"}}}, "ag"),
    ({"args": {"nested": {}}}, "ag"),
    ({"args": {"list": [2]}}, "ae"),
    ({"args": {"list": ["z", 1]}}, "a"),
    ({"meta": {"flag": True}}, "b"),
    ({"meta": {"flag": False}}, "c"),
    ({"meta": {"none": None}}, "d"),
    ({"meta": {"source": "api"}, "args": {"user": 1}}, "a"),
    ({"queue": "mail", "state": ["discarded", "cancelled"], "tags": ["x"]}, "b"),
]


def populate(database: Database, jobs: Jobs) -> dict[str, int]:
    """The jobs of :data:`JOBS` (in the schema of ``jobs``); their ids by name."""
    jobs.migrate_sync()
    return {
        name: database.add_job(state, queue=queue, worker=worker, scheduled_at=T0, **columns)
        for name, (state, queue, worker, columns) in JOBS.items()
    }


def states(database: Database) -> dict[int, str]:
    return {int(i): str(s) for i, s in database.sql("SELECT id, state FROM underway_jobs")}


def listed(jobs: Jobs, **filters: Any) -> set[int]:
    return {j.id for j in jobs.list_jobs_sync(limit=1000, **filters)}


def _actions(filters: dict[str, Any]) -> list[str]:
    """The actions that accept the states of ``filters``."""
    given = filters.get("state")
    wanted = {JobState(s) for s in ([given] if isinstance(given, str) else given or [])}
    return [a for a, allowed in ACTION_STATES.items() if wanted <= set(allowed)]


@pytest.mark.parametrize(
    ("filters", "action", "names"),
    [
        pytest.param(f, a, names, id=f"{a}-{i}-{'-'.join(f)}-{names}")
        for i, (f, names) in enumerate(CASES)
        for a in _actions(f)
    ],
)
async def test_each_filter_selects_its_jobs_for_listing_and_for_each_action(
    make_jobs: MakeJobs, database: Database, filters: dict[str, Any], action: str, names: str
) -> None:
    jobs = make_jobs()
    ids = populate(database, jobs)
    before = states(database)
    assert listed(jobs, **filters) == {ids[n] for n in names}

    run = getattr(jobs, f"{action}_all_jobs_sync")
    count = run(**filters)

    changed = {ids[n] for n in names if JobState(JOBS[n][0]) in ACTION_STATES[action]}
    assert count == len(changed)
    after = states(database)
    for job_id, state in before.items():
        if job_id not in changed:
            assert after[job_id] == state, f"job {job_id} ({state}) was touched"
        elif action == "delete":
            assert job_id not in after
        else:
            assert after[job_id] == AFTER[action]


async def test_retry_makes_jobs_available_now_with_an_attempt_left(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    ids = populate(database, jobs)
    started = time.time()

    assert jobs.retry_all_jobs_sync(queue=["mail", "default"]) == 4  # a b c d; f, g untouched

    for name in "abcd":
        job = jobs.get_job_sync(ids[name])
        assert job is not None
        assert job.state is JobState.AVAILABLE
        assert job.max_attempts >= job.attempt + 1
        assert job.completed_at is job.discarded_at is job.cancelled_at is None
        assert job.scheduled_at is not None
        assert job.scheduled_at.timestamp() >= started - 1
    available = jobs.get_job_sync(ids["f"])
    assert available is not None
    assert available.scheduled_at == datetime.fromtimestamp(T0, UTC)  # kept its place


async def test_cancel_records_why_like_the_single_cancel(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    ids = populate(database, jobs)

    assert jobs.cancel_all_jobs_sync(worker="w.b") == 1  # d; b is finished

    job = jobs.get_job_sync(ids["d"])
    assert job is not None
    assert job.state is JobState.CANCELLED
    assert job.cancelled_at is not None
    assert job.errors[-1].error == "cancelled: by request"
    assert states(database)[ids["b"]] == "discarded"


async def test_async_variants_return_the_same_counts(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    ids = populate(database, jobs)

    assert await jobs.retry_all_jobs(state="discarded") == 1
    assert await jobs.cancel_all_jobs(queue="mail") == 2  # b (retried), g
    assert await jobs.delete_all_jobs(queue="mail") == 3  # b, c, g
    assert {j.id for j in await jobs.list_jobs(limit=100)} == {ids[n] for n in "adef"}
    assert await jobs.delete_all_jobs(queue="mail") == 0


async def test_all_true_acts_on_every_job_of_the_actions_states(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    populate(database, jobs)

    assert jobs.delete_all_jobs_sync(all=True) == 3
    assert sorted(states(database).values()) == ["available", "executing", "retryable", "scheduled"]
    assert jobs.cancel_all_jobs_sync(all=True) == 4
    assert jobs.retry_all_jobs_sync(all=True) == 4
    assert sorted(states(database).values()) == ["available"] * 4


class _Counting:
    """A SQLite connection that records the statements executed through it."""

    def __init__(self, conn: sqlite3.Connection, sent: list[str]) -> None:
        self._conn = conn
        self._sent = sent

    def execute(self, sql: str, *params: Any) -> sqlite3.Cursor:
        self._sent.append(sql)
        return self._conn.execute(sql, *params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.fixture
def statements(database: Database, monkeypatch: pytest.MonkeyPatch) -> Any:
    """``count(jobs, fn)``: the statements the engine of ``jobs`` sent while ``fn`` ran."""

    def count(jobs: Jobs, fn: Any) -> list[str]:
        sent: list[str] = []
        if database.postgres:
            from underway.jobs.engines.postgres import _engine, _pool

            real = _pool.rows

            def counting(conn: Any, sql: str, params: Any) -> Any:
                sent.append(sql)
                return real(conn, sql, params)

            monkeypatch.setattr(_engine, "rows", counting)  # what the engine's calls use
            try:
                fn()
            finally:
                monkeypatch.setattr(_engine, "rows", real)
            return sent
        db = jobs.engine._db  # type: ignore[attr-defined]
        real_conn = db.connect()
        db.conn = _Counting(real_conn, sent)  # every statement the engine's calls execute
        try:
            fn()
        finally:
            db.conn = real_conn
        return sent

    return count


def _count_into(counted: list[int], run: Any, **filters: Any) -> None:
    counted.append(run(**filters))


@pytest.mark.parametrize("action", ["retry", "cancel", "delete"])
async def test_one_statement_changes_every_job_whatever_their_number(
    make_jobs: MakeJobs, database: Database, statements: Any, action: str
) -> None:
    jobs = make_jobs()
    jobs.migrate_sync()
    state = {"retry": "discarded", "cancel": "executing", "delete": "completed"}[action]
    sent: dict[int, list[str]] = {}
    for n in (3, 60):
        for _ in range(n):
            database.add_job(state, queue=f"q{n}", worker="w", attempted_by="node", attempt=1)
        run = getattr(jobs, f"{action}_all_jobs_sync")
        counted: list[int] = []
        sent[n] = statements(jobs, functools.partial(_count_into, counted, run, queue=f"q{n}"))
        assert counted == [n]

    assert len(sent[3]) == len(sent[60])
    changes = [s for s in sent[60] if "underway_jobs" in s and ("UPDATE" in s or "DELETE" in s)]
    assert len(changes) == 1
    if database.postgres or action != "cancel":
        assert len(sent[60]) == 1  # on PostgreSQL cancel's signals go in the same statement
    else:  # BEGIN, the executing ids, the update, the signals, the counters, COMMIT
        assert len(sent[60]) == 6


async def test_cancel_publishes_one_signal_per_executing_job_only(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    ids = populate(database, jobs)
    table = "underway_signals"
    before = database.sql(f"SELECT count(*) FROM {table}")[0][0]

    assert jobs.cancel_all_jobs_sync(all=True) == 4

    payloads = database.sql(f"SELECT payload FROM {table}")
    signals = [p if isinstance(p, dict) else json.loads(p) for (p,) in payloads]
    assert len(signals) == before + 1
    assert {"action": "cancel", "job_id": ids["g"]} in signals


async def test_a_cancelled_executing_job_is_interrupted_on_the_node_running_it(
    make_jobs: MakeJobs,
) -> None:
    node = make_jobs()
    interrupted = asyncio.Event()

    @node.worker(name="tests.bulk.slow")
    async def slow(job: Job[Any]) -> None:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            interrupted.set()
            raise

    other = make_jobs()  # no node: reaches the running one by a signal
    async with node:
        job = await slow.enqueue({})
        await wait_for_state(node, job.id, JobState.EXECUTING)

        assert await other.cancel_all_jobs(worker="tests.bulk.slow", state="executing") == 1

        await asyncio.wait_for(interrupted.wait(), 5)
        done = await node.get_job(job.id)
        assert done is not None
        assert done.state is JobState.CANCELLED


async def test_retried_jobs_run_at_once_on_a_node_of_this_process(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs(poll_interval=30.0, stage_interval=30.0)
    ran: list[int] = []

    @jobs.worker(name="tests.bulk.ok")
    async def ok(job: Job[Any]) -> None:
        ran.append(job.id)

    jobs.migrate_sync()
    job_id = database.add_job(
        "discarded",
        queue="default",
        worker="tests.bulk.ok",
        attempt=1,
        max_attempts=1,
        discarded_at=time.time(),
    )
    async with jobs:
        await asyncio.sleep(0.1)  # the node's first polls have passed
        assert await jobs.retry_all_jobs(worker=ok) == 1
        await wait_until(lambda: ran == [job_id], 5.0, message="the retried job ran")


async def test_delete_frees_the_unique_key_of_a_finished_job(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker(name="tests.bulk.unique", unique=Unique(period="forever", states=list(JobState)))
    async def unique(job: Job[Any]) -> None:
        return None

    await jobs.start()
    first = await unique.enqueue({"k": 1})
    assert await jobs.cancel_all_jobs(worker=unique) == 1
    assert (await unique.enqueue({"k": 1})).conflict is True

    assert await jobs.delete_all_jobs(worker=unique) == 1

    again = await unique.enqueue({"k": 1})
    assert again.conflict is False
    assert again.id != first.id


@pytest.mark.sqlite_only
async def test_rows_whose_json_is_broken_match_no_json_filter_and_fail_nothing(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    ids = populate(database, jobs)
    broken = database.add_job(
        "completed",
        queue="default",
        worker="w.a",
        args="{not json",
        tags="nope",
        meta="[]",
        completed_at=T0,
    )

    assert listed(jobs, args={"user": 1}) == {ids["a"], ids["c"]}
    assert listed(jobs, tags=["x"]) == {ids["a"], ids["b"], ids["e"]}
    assert jobs.delete_all_jobs_sync(meta={"source": "api"}) == 1
    assert broken in listed(jobs, queue="default")


# -- bad input: refused before any SQL ---------------------------------------------------------


@pytest.fixture
def untouched(tmp_path: Path) -> Iterator[Jobs]:
    """An app whose database does not exist: any statement would create the file."""
    path = tmp_path / "never.db"
    jobs = Jobs(f"sqlite:///{path}", prune=None)
    yield jobs
    assert not path.exists(), "a statement ran"


BAD: list[tuple[str, dict[str, Any], str]] = [
    ("retry", {"state": "finished"}, "unknown job state 'finished'"),
    ("retry", {"state": ["discarded", "nope"]}, "unknown job state 'nope'"),
    ("retry", {"queu": "mail"}, "unknown job filter 'queu'"),
    ("cancel", {"queue": 5}, "queue must be a string or a list of strings"),
    ("cancel", {"queue": []}, "queue is an empty list"),
    ("cancel", {"queue": "bad name!"}, "queue name must be"),
    ("cancel", {"state": 3}, "state must be a string"),
    ("cancel", {"worker": [None]}, "worker must be a string"),
    ("delete", {"tags": "x"}, "tags must be a list of strings"),
    ("delete", {"tags": [""]}, "tags must be non-empty strings"),
    ("delete", {"node": 1}, "node must be a node's name"),
    ("delete", {"inserted_after": "yesterday"}, "inserted_after must be a datetime"),
    ("delete", {"finished_before": datetime(2026, 1, 1)}, "must be an aware datetime"),
    ("delete", {"finished_after": True}, "finished_after must be a datetime"),
    ("delete", {"inserted_before": 1e13}, "inserted_before must be epoch seconds of the years"),
    ("delete", {"inserted_after": 10, "inserted_before": 5}, "inserted_after must be earlier"),
    ("delete", {"args": [1]}, "args must be a dict"),
    ("delete", {"args": {}}, "args is an empty dict"),
    ("delete", {"meta": {"a": [{"b": 1}]}}, "a list may hold only"),
    ("delete", {"meta": {"a": float("nan")}}, "not a JSON number"),
    ("delete", {"args": {'say "hi"': 1}}, "without a double quote"),
    ("delete", {"args": {"a": object()}}, "not a JSON value"),
    ("delete", {"state": "executing"}, "delete never touches executing jobs"),
    ("retry", {"state": ["available", "discarded"]}, "retry never touches available jobs"),
    ("cancel", {"state": "completed"}, "cancel never touches completed jobs"),
    ("retry", {}, "no filter given: pass all=True"),
    ("cancel", {"queue": None}, "no filter given: pass all=True"),
    ("delete", {"all": True, "queue": "mail"}, "all=True means every job"),
    ("delete", {"all": "yes"}, "all must be True or False"),
]


@pytest.mark.parametrize(
    ("action", "filters", "message"),
    [pytest.param(a, f, m, id=f"{a}-{m}") for a, f, m in BAD],
)
async def test_bad_input_is_refused_naming_the_reason_before_any_sql(
    untouched: Jobs, action: str, filters: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        getattr(untouched, f"{action}_all_jobs_sync")(**filters)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        await getattr(untouched, f"{action}_all_jobs")(**filters)


def test_listing_refuses_bad_filters_too(untouched: Jobs) -> None:
    with pytest.raises(ConfigError, match="unknown job filter 'sate'"):
        untouched.list_jobs_sync(sate="completed")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="unknown job state"):
        untouched.list_jobs_sync(state="done")


async def test_a_time_range_given_as_datetimes_or_seconds_is_the_same(
    make_jobs: MakeJobs, database: Database
) -> None:
    jobs = make_jobs()
    populate(database, jobs)
    start = datetime.fromtimestamp(T0, UTC) + timedelta(seconds=30)
    local = start.astimezone(zoneinfo.ZoneInfo("Asia/Tokyo"))

    assert listed(jobs, inserted_after=start) == listed(jobs, inserted_after=T0 + 30)
    assert listed(jobs, inserted_after=local) == listed(jobs, inserted_after=T0 + 30)
