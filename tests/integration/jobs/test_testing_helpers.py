"""The helpers users test their own jobs with: modes, assertions, perform_job, drain_queue.

Each test runs on both engines: the helpers must behave the same whatever database the
application is configured with.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest

from underway.errors import EnqueueError
from underway.jobs import Cancel, Error, Job, Jobs, JobState, Snooze, TestingMode
from underway.jobs.testing import (
    DrainResult,
    all_enqueued,
    assert_enqueued,
    drain_queue,
    drain_queue_sync,
    perform_job,
    perform_job_sync,
    refute_enqueued,
    use_testing,
)

from ..conftest import Database, MakeJobs


@dataclass
class Resize:
    image_id: int
    width: int = 100


@pytest.fixture
def inline(make_jobs: MakeJobs) -> Jobs:
    return make_jobs(testing="inline")


@pytest.fixture
def manual(make_jobs: MakeJobs) -> Jobs:
    return make_jobs(testing="manual")


def state_of(jobs: Jobs, job: Job[Any]) -> Job[Any]:
    found = jobs.get_job_sync(job.id)
    assert found is not None
    return found


def near(when: Any, expected: float, slack: float = 5.0) -> bool:
    return when is not None and abs(when.timestamp() - expected) < slack


# -- inline mode ----------------------------------------------------------------------------


async def test_inline_enqueue_runs_at_once_and_returns_the_completed_job(
    inline: Jobs, database: Database
) -> None:
    ran: list[dict[str, Any]] = []

    @inline.worker(record_result=True, queue="mail", tags=["t"], priority=3)
    async def welcome(job: Job[Any]) -> str:
        ran.append(job.args)
        return f"hi {job.args['name']}"

    job = await welcome.enqueue({"name": "ada"}, meta={"m": 1})
    assert ran == [{"name": "ada"}]
    assert job.state is JobState.COMPLETED
    assert job.result == "hi ada"
    assert job.attempt == 1
    assert job.completed_at is not None
    assert job.errors == ()
    assert (job.queue, job.tags, job.priority, job.meta) == ("mail", ("t",), 3, {"m": 1})
    assert not database.exists(), "inline mode must not touch the database"


async def test_inline_failure_is_retryable_with_its_error(inline: Jobs) -> None:
    @inline.worker(backoff=30)
    async def flaky(job: Job[Any]) -> None:
        raise ConnectionError("smtp down")

    before = time.time()
    job = await flaky.enqueue({})
    assert job.state is JobState.RETRYABLE
    (error,) = job.errors
    assert error.attempt == 1
    assert error.error == "ConnectionError: smtp down"
    assert error.traceback is not None
    assert "smtp down" in error.traceback
    assert near(job.scheduled_at, before + 30)


async def test_inline_error_value_and_last_attempt(inline: Jobs) -> None:
    @inline.worker
    async def soft(job: Job[Any]) -> Error:
        return Error("quota")

    @inline.worker(max_attempts=1)
    async def once(job: Job[Any]) -> None:
        raise ValueError("bad input")

    soft_job = await soft.enqueue({})
    assert soft_job.state is JobState.RETRYABLE
    assert soft_job.errors[0].error == "quota"
    discarded = await once.enqueue({})
    assert discarded.state is JobState.DISCARDED
    assert discarded.discarded_at is not None
    assert discarded.errors[0].error == "ValueError: bad input"


async def test_inline_cancel_and_snooze(inline: Jobs) -> None:
    @inline.worker
    async def stop(job: Job[Any]) -> Cancel:
        return Cancel("not needed")

    @inline.worker
    async def later(job: Job[Any]) -> Snooze:
        return Snooze(120)

    cancelled = await stop.enqueue({})
    assert cancelled.state is JobState.CANCELLED
    assert cancelled.cancelled_at is not None
    assert "not needed" in cancelled.errors[0].error
    before = time.time()
    snoozed = await later.enqueue({})
    assert snoozed.state is JobState.SCHEDULED
    assert near(snoozed.scheduled_at, before + 120)
    assert snoozed.errors == ()


def test_inline_sync_enqueue_from_sync_code(inline: Jobs) -> None:
    threads: list[threading.Thread] = []

    @inline.worker(record_result=True)
    def add(job: Job[Any]) -> int:
        threads.append(threading.current_thread())
        return int(job.args["a"] + job.args["b"])

    job = add.enqueue_sync({"a": 2, "b": 3})
    assert job.state is JobState.COMPLETED
    assert job.result == 5
    assert threads
    assert threads[0] is not threading.main_thread()


async def test_inline_sync_enqueue_inside_a_running_loop(inline: Jobs) -> None:
    @inline.worker(record_result=True)
    async def double(job: Job[Any]) -> int:
        return int(job.args["n"]) * 2

    job = double.enqueue_sync({"n": 21})
    assert job.state is JobState.COMPLETED
    assert job.result == 42


async def test_inline_enqueue_many_runs_in_order(inline: Jobs) -> None:
    order: list[int] = []

    @inline.worker
    async def step(job: Job[Any]) -> None:
        order.append(job.args["n"])

    done = await inline.enqueue_many([step.new({"n": n}) for n in (3, 1, 2)])
    assert order == [3, 1, 2]
    assert [j.args["n"] for j in done] == [3, 1, 2]
    assert {j.state for j in done} == {JobState.COMPLETED}
    assert len({j.id for j in done}) == 3


async def test_inline_job_enqueueing_another_runs_both(inline: Jobs) -> None:
    order: list[str] = []

    @inline.worker
    async def child(job: Job[Any]) -> None:
        order.append(f"child {job.args['of']}")

    @inline.worker
    async def parent(job: Job[Any]) -> None:
        order.append("parent")
        inner = await child.enqueue({"of": "parent"})
        assert inner.state is JobState.COMPLETED

    await parent.enqueue({})
    assert order == ["parent", "child parent"]


async def test_inline_args_are_json_round_tripped(inline: Jobs) -> None:
    seen: list[Any] = []

    @inline.worker
    async def take(job: Job[Any]) -> None:
        seen.append(job.args)

    await take.enqueue({"pair": (1, 2), "n": 1.0})
    assert seen == [{"pair": [1, 2], "n": 1.0}]
    with pytest.raises(EnqueueError):
        await take.enqueue({"s": {1}})
    assert len(seen) == 1


# -- manual mode and assertions -------------------------------------------------------------


async def test_manual_mode_stores_jobs_and_runs_nothing(manual: Jobs) -> None:
    ran: list[Job[Any]] = []

    @manual.worker
    async def work(job: Job[Any]) -> None:
        ran.append(job)

    async with manual:
        assert manual.node is None
        job = await work.enqueue({"n": 1})
        assert job.state is JobState.AVAILABLE
    assert ran == []
    assert state_of(manual, job).state is JobState.AVAILABLE
    assert state_of(manual, job).attempt == 0


def test_assert_enqueued_by_worker_object_or_name(manual: Jobs) -> None:
    @manual.worker
    def send(job: Job[Any]) -> None:
        return None

    job = send.enqueue_sync({"to": "a@b.c"})
    assert assert_enqueued(manual, worker=send).id == job.id
    assert assert_enqueued(manual, worker=send.name).id == job.id
    with pytest.raises(AssertionError):
        assert_enqueued(manual, worker="someone.else")


def test_assert_enqueued_matches_a_subset_of_args_and_meta(manual: Jobs) -> None:
    @manual.worker
    def send(job: Job[Any]) -> None:
        return None

    send.enqueue_sync({"to": "a@b.c", "lang": "fr", "ids": [1, 2]}, meta={"trace": "t1", "x": 1})
    assert_enqueued(manual, worker=send, args={"to": "a@b.c"})
    assert_enqueued(manual, args={"ids": (1, 2)})
    assert_enqueued(manual, worker=send, args={}, meta={"trace": "t1"})
    for wrong in ({"to": "x@y.z"}, {"missing": None}, {"ids": [2, 1]}):
        with pytest.raises(AssertionError):
            assert_enqueued(manual, args=wrong)
    with pytest.raises(AssertionError):
        assert_enqueued(manual, meta={"trace": "t2"})


def test_assert_enqueued_by_queue_tags_priority_and_attempts(manual: Jobs) -> None:
    @manual.worker(queue="mail", tags=["a", "b"], priority=4, max_attempts=5)
    def send(job: Job[Any]) -> None:
        return None

    send.enqueue_sync({})
    assert_enqueued(manual, queue="mail", tags=["a"], priority=4, max_attempts=5)
    assert_enqueued(manual, tags=["b", "a"])
    for wrong in ({"queue": "default"}, {"tags": ["c"]}, {"priority": 0}, {"max_attempts": 20}):
        with pytest.raises(AssertionError):
            assert_enqueued(manual, **wrong)


def test_assert_enqueued_with_a_schema_instance(manual: Jobs) -> None:
    @manual.worker(args=Resize)
    def resize(job: Job[Resize]) -> None:
        return None

    resize.enqueue_sync(Resize(7))
    assert_enqueued(manual, worker=resize, args=Resize(7))
    with pytest.raises(AssertionError):
        assert_enqueued(manual, worker=resize, args=Resize(8))


def test_scheduled_jobs_count_as_enqueued_finished_ones_do_not(manual: Jobs) -> None:
    @manual.worker
    def send(job: Job[Any]) -> None:
        return None

    later = send.enqueue_sync({"n": "later"}, schedule_in=3600)
    assert later.state is JobState.SCHEDULED
    assert_enqueued(manual, args={"n": "later"})
    now = send.enqueue_sync({"n": "now"})
    drain_queue_sync(manual)
    assert state_of(manual, now).state is JobState.COMPLETED
    refute_enqueued(manual, args={"n": "now"})
    assert [j.id for j in all_enqueued(manual, state="completed")] == [now.id]


def test_refute_enqueued(manual: Jobs) -> None:
    @manual.worker
    def send(job: Job[Any]) -> None:
        return None

    refute_enqueued(manual, worker=send)
    first = send.enqueue_sync({"n": 1})
    second = send.enqueue_sync({"n": 1})
    refute_enqueued(manual, worker=send, args={"n": 2})
    with pytest.raises(AssertionError) as info:
        refute_enqueued(manual, worker=send, args={"n": 1})
    assert f"#{first.id}" in str(info.value)
    assert f"#{second.id}" in str(info.value)
    assert "found 2" in str(info.value)


def test_all_enqueued_lists_matches_oldest_first(manual: Jobs) -> None:
    @manual.worker
    def a(job: Job[Any]) -> None:
        return None

    @manual.worker(queue="other")
    def b(job: Job[Any]) -> None:
        return None

    jobs = [a.enqueue_sync({"n": 1}), b.enqueue_sync({"n": 2}), a.enqueue_sync({"n": 3})]
    assert [j.id for j in all_enqueued(manual)] == [j.id for j in jobs]
    assert [j.args["n"] for j in all_enqueued(manual, worker=a)] == [1, 3]
    assert [j.args["n"] for j in all_enqueued(manual, queue="other")] == [2]
    assert all_enqueued(manual, worker=a, args={"n": 2}) == []


def test_assertion_message_lists_the_waiting_jobs(manual: Jobs) -> None:
    @manual.worker
    def send(job: Job[Any]) -> None:
        return None

    with pytest.raises(AssertionError, match=r"\(no waiting jobs\)"):
        assert_enqueued(manual, worker=send)
    job = send.enqueue_sync({"to": "ada"}, meta={"k": "v"})
    with pytest.raises(AssertionError) as info:
        assert_enqueued(manual, worker=send, args={"to": "bob"})
    message = str(info.value)
    assert "'to': 'bob'" in message
    assert f"#{job.id} {send.name}" in message
    assert "'to': 'ada'" in message
    assert "'k': 'v'" in message


def test_unknown_filter_is_an_error(manual: Jobs) -> None:
    with pytest.raises(TypeError, match="unknown filter"):
        assert_enqueued(manual, wroker="typo")


# -- perform_job ---------------------------------------------------------------------------


async def test_perform_job_returns_what_the_worker_returned(manual: Jobs) -> None:
    seen: list[Job[Any]] = []

    @manual.worker(queue="mail")
    async def send(job: Job[Any]) -> Snooze:
        seen.append(job)
        return Snooze(5)

    assert await perform_job(send, {"pair": (1, 2)}, meta={"m": 1}) == Snooze(5)
    (job,) = seen
    assert job.args == {"pair": [1, 2]}
    assert job.meta == {"m": 1}
    assert job.queue == "mail"
    assert job.attempt == 1
    assert manual.list_jobs_sync() == [], "perform_job must not store the job"


async def test_perform_job_attempt_option(manual: Jobs) -> None:
    @manual.worker
    async def which(job: Job[Any]) -> int:
        return job.attempt

    assert await perform_job(which, {}, attempt=4) == 4


async def test_perform_job_validates_and_propagates(manual: Jobs) -> None:
    @manual.worker(args=Resize)
    async def resize(job: Job[Resize]) -> int:
        if job.args.width == 0:
            raise ZeroDivisionError("width is zero")
        return job.args.image_id

    assert await perform_job(resize, {"image_id": 3}) == 3
    with pytest.raises(EnqueueError, match="image_id"):
        await perform_job(resize, {"image_id": "3"})
    with pytest.raises(EnqueueError, match="unknown field"):
        await perform_job(resize, {"image_id": 3, "when": 1})
    with pytest.raises(ZeroDivisionError, match="width is zero"):
        await perform_job(resize, {"image_id": 3, "width": 0})


def test_perform_job_sync(manual: Jobs) -> None:
    @manual.worker
    def total(job: Job[Any]) -> int:
        return sum(job.args["values"])

    @manual.worker
    async def boom(job: Job[Any]) -> None:
        raise KeyError("missing")

    assert perform_job_sync(total, {"values": (1, 2, 3)}) == 6
    with pytest.raises(EnqueueError, match="JSON"):
        perform_job_sync(total, {"values": {1, 2}})
    with pytest.raises(KeyError, match="missing"):
        perform_job_sync(boom, {})


async def test_perform_job_sync_inside_a_running_loop(manual: Jobs) -> None:
    @manual.worker
    async def echo(job: Job[Any]) -> Any:
        return job.args

    assert perform_job_sync(echo, {"t": (1,)}) == {"t": [1]}


# -- drain_queue -----------------------------------------------------------------------------


async def test_drain_counts_each_outcome_and_records_it(manual: Jobs) -> None:
    @manual.worker
    async def outcome(job: Job[Any]) -> Any:
        kind = job.args["kind"]
        if kind == "raise":
            raise RuntimeError("failed")
        return {"error": Error("soft"), "cancel": Cancel("no"), "snooze": Snooze(600)}.get(kind)

    @manual.worker(max_attempts=1)
    async def last(job: Job[Any]) -> None:
        raise RuntimeError("out of attempts")

    kinds = ["ok", "ok", "raise", "error", "cancel", "snooze"]
    made = {k: await outcome.enqueue({"kind": k}) for k in kinds}
    discarded = await last.enqueue({})

    result = await drain_queue(manual)
    assert result == DrainResult(completed=2, retryable=2, discarded=1, cancelled=1, snoozed=1)
    assert result.total == 7

    assert state_of(manual, made["ok"]).state is JobState.COMPLETED
    raised = state_of(manual, made["raise"])
    assert raised.state is JobState.RETRYABLE
    assert raised.errors[0].error == "RuntimeError: failed"
    assert state_of(manual, made["error"]).state is JobState.RETRYABLE
    assert state_of(manual, made["cancel"]).state is JobState.CANCELLED
    snoozed = state_of(manual, made["snooze"])
    assert snoozed.state is JobState.SCHEDULED
    assert snoozed.attempt == 0, "a snooze does not count as an attempt"
    assert state_of(manual, discarded).state is JobState.DISCARDED

    assert await drain_queue(manual) == DrainResult(), "nothing due is left"


async def test_drain_with_scheduled_runs_future_jobs(manual: Jobs) -> None:
    @manual.worker
    async def later(job: Job[Any]) -> None:
        return None

    job = await later.enqueue({}, schedule_in=3600)
    assert await drain_queue(manual) == DrainResult()
    assert state_of(manual, job).state is JobState.SCHEDULED
    assert await drain_queue(manual, with_scheduled=True) == DrainResult(completed=1)
    assert state_of(manual, job).state is JobState.COMPLETED


async def test_drain_with_scheduled_retries_until_discarded(manual: Jobs) -> None:
    attempts: list[int] = []

    @manual.worker(max_attempts=3)
    async def flaky(job: Job[Any]) -> None:
        attempts.append(job.attempt)
        raise RuntimeError("again")

    job = await flaky.enqueue({})
    result = await drain_queue(manual, with_scheduled=True)
    assert result == DrainResult(retryable=2, discarded=1)
    assert attempts == [1, 2, 3]
    assert len(state_of(manual, job).errors) == 3


async def test_drain_with_recursion_runs_jobs_that_jobs_enqueue(manual: Jobs) -> None:
    @manual.worker
    async def child(job: Job[Any]) -> None:
        return None

    @manual.worker
    async def parent(job: Job[Any]) -> None:
        await child.enqueue({"from": job.id})

    first = await parent.enqueue({})
    assert await drain_queue(manual) == DrainResult(completed=2)
    refute_enqueued(manual)

    second = await parent.enqueue({})
    assert await drain_queue(manual, with_recursion=False) == DrainResult(completed=1)
    assert state_of(manual, second).state is JobState.COMPLETED
    assert_enqueued(manual, worker=child, args={"from": second.id})
    refute_enqueued(manual, worker=child, args={"from": first.id})


async def test_drain_without_safety_reraises_after_one_run(manual: Jobs) -> None:
    runs: list[int] = []

    @manual.worker
    async def work(job: Job[Any]) -> None:
        runs.append(job.args["n"])
        if job.args["n"] == 2:
            raise LookupError("row 2 missing")

    jobs = [await work.enqueue({"n": n}) for n in (1, 2, 3)]
    with pytest.raises(LookupError, match="row 2 missing"):
        await drain_queue(manual, with_safety=False)
    assert runs == [1, 2], "each job runs once and the drain stops at the failure"
    assert state_of(manual, jobs[0]).state is JobState.COMPLETED
    failed = state_of(manual, jobs[1])
    assert failed.state is JobState.RETRYABLE
    assert failed.errors[0].error == "LookupError: row 2 missing"
    rest = state_of(manual, jobs[2])
    assert rest.state is JobState.AVAILABLE, "jobs behind the failure are not left claimed"
    assert rest.attempt == 0
    assert await drain_queue(manual, with_safety=False) == DrainResult(completed=1)
    assert runs == [1, 2, 3]


async def test_drain_without_safety_keeps_value_outcomes(manual: Jobs) -> None:
    @manual.worker
    async def soft(job: Job[Any]) -> Any:
        return Error("soft") if job.args["n"] else Cancel("stop")

    await soft.enqueue({"n": 1})
    await soft.enqueue({"n": 0})
    assert await drain_queue(manual, with_safety=False) == DrainResult(retryable=1, cancelled=1)


async def test_drain_with_limit(manual: Jobs) -> None:
    ran: list[int] = []

    @manual.worker
    async def work(job: Job[Any]) -> None:
        ran.append(job.args["n"])

    for n in range(5):
        await work.enqueue({"n": n})
    assert await drain_queue(manual, with_limit=2) == DrainResult(completed=2)
    assert ran == [0, 1]
    assert len(all_enqueued(manual)) == 3
    assert await drain_queue(manual, with_limit=0) == DrainResult()
    assert await drain_queue(manual, with_limit=10) == DrainResult(completed=3)
    assert ran == [0, 1, 2, 3, 4]


async def test_drain_follows_priority_then_insertion(manual: Jobs) -> None:
    ran: list[str] = []

    @manual.worker
    async def work(job: Job[Any]) -> None:
        ran.append(job.args["name"])

    await work.enqueue({"name": "low"}, priority=9)
    await work.enqueue({"name": "first"})
    await work.enqueue({"name": "urgent"}, priority=0)
    await drain_queue(manual)
    assert ran == ["first", "urgent", "low"]


async def test_drain_touches_only_its_queue(manual: Jobs) -> None:
    @manual.worker(queue="mail")
    async def mail(job: Job[Any]) -> None:
        return None

    @manual.worker
    async def other(job: Job[Any]) -> None:
        return None

    await mail.enqueue({})
    await other.enqueue({})
    assert await drain_queue(manual, "mail") == DrainResult(completed=1)
    assert_enqueued(manual, worker=other)
    refute_enqueued(manual, worker=mail)


async def test_drain_hands_typed_args_and_runs_sync_workers(manual: Jobs) -> None:
    seen: list[Resize] = []

    @manual.worker(args=Resize)
    def resize(job: Job[Resize]) -> None:
        assert threading.current_thread() is not threading.main_thread()
        seen.append(job.args)

    await resize.enqueue({"image_id": 5})
    await drain_queue(manual)
    assert seen == [Resize(5)]


async def test_drain_discards_a_job_whose_worker_is_unknown(
    manual: Jobs, make_jobs: MakeJobs
) -> None:
    elsewhere = make_jobs(testing="manual")

    @elsewhere.worker(name="gone.worker")
    async def gone(job: Job[Any]) -> None:
        return None

    job = await gone.enqueue({})
    await elsewhere.engine.close()
    assert await drain_queue(manual) == DrainResult(discarded=1)
    stored = state_of(manual, job)
    assert stored.state is JobState.DISCARDED
    assert "gone.worker" in stored.errors[0].error


def test_drain_queue_sync(manual: Jobs) -> None:
    @manual.worker
    def work(job: Job[Any]) -> None:
        if job.args["fail"]:
            raise ValueError("x")

    work.enqueue_sync({"fail": False})
    work.enqueue_sync({"fail": True})
    result = drain_queue_sync(manual)
    assert (result.completed, result.retryable, result.total) == (1, 1, 2)


def test_sync_helpers_serve_one_event_loop_after_another(manual: Jobs) -> None:
    """Each ``*_sync`` call from sync code runs an event loop of its own, ended after."""

    @manual.worker
    def work(job: Job[Any]) -> None:
        return None

    for n in range(3):
        work.enqueue_sync({"n": n})
        assert drain_queue_sync(manual) == DrainResult(completed=1)
    assert sorted(j.args["n"] for j in all_enqueued(manual, state="completed")) == [0, 1, 2]


# -- use_testing ------------------------------------------------------------------------------


def test_use_testing_swaps_in_a_fresh_database_and_restores(
    make_jobs: MakeJobs, database: Database
) -> None:
    app = make_jobs()
    old_engine, old_url = app.engine, app.database

    @app.worker
    def send(job: Job[Any]) -> None:
        return None

    with use_testing(app) as jobs:
        assert jobs is app
        assert app.testing == "manual"
        assert app.engine is not old_engine
        assert app.database != old_url
        send.enqueue_sync({"n": 1})
        assert_enqueued(app, worker=send, args={"n": 1})
        temp_db = Path(app.database.removeprefix("sqlite:///"))
        assert temp_db.exists()
    assert app.engine is old_engine
    assert app.database == old_url
    assert cast(TestingMode | None, app.testing) is None  # mypy kept "manual" from the block
    assert not temp_db.exists(), "the temporary database is removed"
    assert not database.exists(), "nothing was written to the application's database"


def test_use_testing_restores_the_previous_mode_after_an_error(make_jobs: MakeJobs) -> None:
    app = make_jobs(testing="inline")
    engine = app.engine
    modes: list[str | None] = []

    def failing_test() -> None:
        with use_testing(app, "manual"):
            modes.append(app.testing)
            raise RuntimeError("test failed")

    with pytest.raises(RuntimeError, match="test failed"):
        failing_test()
    assert modes == ["manual"]
    assert app.testing == "inline"
    assert app.engine is engine


def test_use_testing_inline_and_nested(make_jobs: MakeJobs) -> None:
    app = make_jobs()

    @app.worker(record_result=True)
    def echo(job: Job[Any]) -> Any:
        return job.args["v"]

    with use_testing(app, "manual"):
        manual_engine = app.engine
        with use_testing(app, "inline"):
            assert echo.enqueue_sync({"v": 3}).result == 3
        assert app.testing == "manual"
        assert app.engine is manual_engine
        refute_enqueued(app)
    assert app.testing is None


def test_use_testing_with_a_given_database(make_jobs: MakeJobs, database: Database) -> None:
    app = make_jobs()
    chosen = database.other("chosen")

    @app.worker
    def send(job: Job[Any]) -> None:
        return None

    with use_testing(app, database=chosen.url):
        send.enqueue_sync({})
        send.enqueue_sync({})
    assert chosen.sql("SELECT count(*) FROM underway_jobs") == [(2,)]
    assert not database.exists(), "nothing was written to the application's database"


def test_use_testing_closes_the_database_it_opened(make_jobs: MakeJobs, database: Database) -> None:
    app = make_jobs()
    chosen = database.other("chosen")

    @app.worker
    def send(job: Job[Any]) -> None:
        return None

    before = set(threading.enumerate())
    with use_testing(app, database=chosen.url):
        send.enqueue_sync({})
        assert set(threading.enumerate()) - before, "the engine works in threads of its own"
    assert set(threading.enumerate()) <= before
