"""Every outcome of a job, end to end on a running node, on each engine."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import threading
import time
from typing import Any, cast

import pytest

from underway.errors import EnqueueError
from underway.jobs import Cancel, Error, Job, JobState, Snooze, Worker
from underway.jobs.outcomes import decide

from ..conftest import MakeJobs, wait_for_state, wait_until


async def test_return_completes_and_records_the_result(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker(record_result=True)
    async def add(job: Job[Any]) -> dict[str, int]:
        return {"sum": job.args["a"] + job.args["b"]}

    @jobs.worker
    async def add_unrecorded(job: Job[Any]) -> int:
        return int(job.args["a"] + job.args["b"])

    async with jobs:
        recorded = await add.enqueue({"a": 2, "b": 3})
        unrecorded = await add_unrecorded.enqueue({"a": 2, "b": 3})
        done = await wait_for_state(jobs, recorded.id)
        plain = await wait_for_state(jobs, unrecorded.id)

    assert done.state is JobState.COMPLETED
    assert done.result == {"sum": 5}
    assert done.attempt == 1
    assert done.errors == ()
    assert done.completed_at is not None
    assert done.attempted_by == jobs.config.name
    assert plain.state is JobState.COMPLETED
    assert plain.result is None


async def test_a_result_that_is_not_json_is_an_error(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker(record_result=True, max_attempts=1)
    async def opaque(job: Job[Any]) -> object:
        return object()

    async with jobs:
        job = await opaque.enqueue({})
        done = await wait_for_state(jobs, job.id)

    assert done.state is JobState.DISCARDED
    assert done.result is None
    assert len(done.errors) == 1
    assert "not JSON-serialisable" in done.errors[0].error


async def test_snooze_reschedules_without_counting_the_attempt(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker(max_attempts=1)
    async def later(job: Job[Any]) -> Snooze:
        return Snooze(60)

    async with jobs:
        before = time.time()
        job = await later.enqueue({})
        snoozed = await wait_for_state(jobs, job.id, JobState.SCHEDULED)

    assert snoozed.attempt == 0
    assert snoozed.meta["snoozed"] == 1
    assert snoozed.errors == ()
    assert snoozed.scheduled_at is not None
    assert before + 59 <= snoozed.scheduled_at.timestamp() <= time.time() + 61


async def test_a_snoozed_job_runs_again_later(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    runs: list[float] = []

    @jobs.worker(max_attempts=1)
    async def twice_snoozed(job: Job[Any]) -> Snooze | str:
        runs.append(time.monotonic())
        return Snooze(0.2) if len(runs) <= 2 else "done"

    async with jobs:
        job = await twice_snoozed.enqueue({})
        done = await wait_for_state(jobs, job.id)

    assert done.state is JobState.COMPLETED
    assert len(runs) == 3
    assert done.attempt == 1
    assert done.meta["snoozed"] == 2
    assert all(b - a >= 0.2 for a, b in itertools.pairwise(runs))


async def test_cancel_ends_the_job_and_it_is_never_retried(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    runs: list[int] = []

    @jobs.worker(max_attempts=5, backoff=0)
    async def give_up(job: Job[Any]) -> Cancel:
        runs.append(job.attempt)
        return Cancel("customer left")

    async with jobs:
        job = await give_up.enqueue({})
        done = await wait_for_state(jobs, job.id)
        await asyncio.sleep(0.3)  # several stage and poll intervals: nothing may rerun it
        after = await jobs.get_job(job.id)

    assert done.state is JobState.CANCELLED
    assert done.cancelled_at is not None
    assert [e.error for e in done.errors] == ["cancelled: customer left"]
    assert runs == [1]
    assert after is not None
    assert after.state is JobState.CANCELLED


async def test_an_exception_is_retried_then_discarded_keeping_every_error(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs()

    @jobs.worker(max_attempts=3, backoff=0.01)
    async def flaky(job: Job[Any]) -> None:
        raise ValueError(f"boom on attempt {job.attempt}")

    async with jobs:
        job = await flaky.enqueue({})
        done = await wait_for_state(jobs, job.id)

    assert done.state is JobState.DISCARDED
    assert done.discarded_at is not None
    assert done.attempt == 3
    assert [e.attempt for e in done.errors] == [1, 2, 3]
    assert [e.error for e in done.errors] == [f"ValueError: boom on attempt {n}" for n in (1, 2, 3)]
    for error in done.errors:
        assert error.traceback is not None
        assert "Traceback" in error.traceback
        assert "in flaky" in error.traceback
        assert f"boom on attempt {error.attempt}" in error.traceback


async def test_a_failed_attempt_waits_for_its_backoff(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()
    seen_attempts: list[int] = []

    def backoff(job: Job[Any]) -> float:
        seen_attempts.append(job.attempt)
        return 60.0 if job.args["long"] else 0.3

    @jobs.worker(max_attempts=2, backoff=backoff)
    async def fails(job: Job[Any]) -> None:
        raise RuntimeError("nope")

    async with jobs:
        waiting = await fails.enqueue({"long": True})
        quick = await fails.enqueue({"long": False})
        retryable = await wait_for_state(jobs, waiting.id, JobState.RETRYABLE)
        done = await wait_for_state(jobs, quick.id)

    assert retryable.attempt == 1
    assert retryable.attempted_at is not None
    assert retryable.scheduled_at is not None
    delay = retryable.scheduled_at.timestamp() - retryable.attempted_at.timestamp()
    assert 60.0 <= delay < 61.0
    assert done.state is JobState.DISCARDED
    first, second = done.errors
    assert (second.at - first.at).total_seconds() >= 0.3
    assert seen_attempts.count(1) == 2  # called with the failed attempt of each job


async def test_returning_error_fails_the_attempt_without_a_traceback(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker(max_attempts=2, backoff=0.01)
    async def refuses(job: Job[Any]) -> Error:
        return Error(f"upstream said no ({job.attempt})")

    async with jobs:
        job = await refuses.enqueue({})
        done = await wait_for_state(jobs, job.id)

    assert done.state is JobState.DISCARDED
    assert [(e.attempt, e.error, e.traceback) for e in done.errors] == [
        (1, "upstream said no (1)", None),
        (2, "upstream said no (2)", None),
    ]


async def test_an_async_job_past_its_timeout_fails_with_a_clear_message(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs()
    interrupted: list[bool] = []

    @jobs.worker(timeout=0.2, max_attempts=1)
    async def too_slow(job: Job[Any]) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            interrupted.append(True)
            raise

    async with jobs:
        started = time.monotonic()
        job = await too_slow.enqueue({})
        done = await wait_for_state(jobs, job.id)
        elapsed = time.monotonic() - started

    assert done.state is JobState.DISCARDED
    assert elapsed < 6.0  # stopped at its timeout, not after the 10 s sleep
    assert interrupted == [True]
    (error,) = done.errors
    assert error.error.startswith("JobTimeout: ")
    assert f"job {job.id} ran longer than its timeout of 0.2s" in error.error


async def test_a_sync_job_past_its_timeout_keeps_its_slot_until_its_thread_returns(
    make_jobs: MakeJobs,
) -> None:
    """A thread cannot be interrupted: the job stays executing (never run twice while
    alive) and fails with a clear message once its body returns."""
    jobs = make_jobs(queues={"default": 1})
    release = threading.Event()
    runs: list[int] = []

    @jobs.worker(timeout=0.2, max_attempts=2, backoff=0)
    def blocks(job: Job[Any]) -> None:
        runs.append(job.attempt)
        release.wait(5)

    try:
        async with jobs:
            job = await blocks.enqueue({})
            await wait_until(lambda: runs, message="the job started")
            await asyncio.sleep(0.5)  # well past the timeout: still executing, not retried
            assert jobs.get_job_sync(job.id).state is JobState.EXECUTING  # type: ignore[union-attr]
            assert runs == [1]
            release.set()
            await wait_until(lambda: len(runs) == 2, message="the retry ran")
            done = await wait_for_state(jobs, job.id)
    finally:
        release.set()

    assert (done.state, done.attempt, len(done.errors)) == (JobState.COMPLETED, 2, 1)
    first = done.errors[0]
    assert first.error.startswith("JobTimeout: ")
    assert "longer than its timeout of 0.2s" in first.error
    assert "cannot be interrupted" in first.error


async def test_sync_workers_run_in_threads_and_the_loop_stays_responsive(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs()
    threads: list[int] = []
    started = threading.Event()

    @jobs.worker
    def blocking(job: Job[Any]) -> None:
        threads.append(threading.get_ident())
        started.set()
        time.sleep(1.0)

    gaps: list[float] = []

    async def ticker(stop: asyncio.Event) -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.01)
            now = time.monotonic()
            if started.is_set():
                gaps.append(now - last)
            last = now

    async with jobs:
        stop = asyncio.Event()
        ticking = asyncio.create_task(ticker(stop))
        job = await blocking.enqueue({})
        done = await wait_for_state(jobs, job.id)
        stop.set()
        await ticking

    assert done.state is JobState.COMPLETED
    assert threads
    assert threads[0] != threading.get_ident()
    assert sum(gaps) >= 0.9  # the ticker ran during the whole blocking call
    assert max(gaps) < 0.5  # a loop blocked by the call would show a gap of 1 s
    assert len(gaps) >= 20


async def test_a_class_worker_performs_and_backs_off_through_its_methods(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs()

    @jobs.worker(max_attempts=2)
    class Importer:
        def __init__(self) -> None:
            self.calls = 0

        def backoff(self, job: Job[Any]) -> float:
            return 0.01

        async def perform(self, job: Job[Any]) -> None:
            self.calls += 1
            if self.calls == 1:
                raise OSError("disk not ready")

    importer = cast(Worker, Importer)  # mypy keeps the type of a decorated class
    async with jobs:
        job = await importer.enqueue({})
        done = await wait_for_state(jobs, job.id)

    assert done.state is JobState.COMPLETED
    assert done.attempt == 2
    assert [e.error for e in done.errors] == ["OSError: disk not ready"]


async def test_wait_until_raises_when_the_condition_never_holds() -> None:
    started = time.monotonic()
    with pytest.raises(AssertionError, match=r"never did not hold within 0\.1s"):
        await wait_until(lambda: False, 0.1, message="never")
    assert time.monotonic() - started < 1.0


# -- text a database may not store ------------------------------------------------------------
# A job's error or result is written in one batch with other jobs' acks: text the database
# refuses must not take the others down with it.


async def _ack_with_text(make_jobs: MakeJobs, text: str) -> list[Job[Any]]:
    """Claim three jobs and ack them in one batch, as a node's acker does: a plain completion,
    a completion recording ``text``, and a discard with ``text`` in its error and traceback."""
    jobs = make_jobs(testing="manual")

    @jobs.worker
    async def parse(job: Job[Any]) -> None: ...

    async with jobs:
        made = await jobs.enqueue_many(parse.new({"n": n}) for n in range(3))
        plain, records, fails = await jobs.engine.fetch("default", 3, "node-a", time.time())
        failure = ValueError(f"bad {text} name")
        now = time.time()
        acks = [
            decide(plain.id, 1, 20, None, now=now, backoff=0),
            decide(records.id, 1, 20, "", now=now, backoff=0, result=json.dumps(f"read {text}")),
            decide(fails.id, 1, 1, failure, now=now, backoff=0),
        ]
        await jobs.engine.ack(acks, "node-a")
        return [await wait_for_state(jobs, j.id, timeout=10.0) for j in made]


async def test_a_nul_character_in_an_error_or_result_holds_up_no_ack(
    make_jobs: MakeJobs, request: pytest.FixtureRequest
) -> None:
    plain, records, fails = await _ack_with_text(make_jobs, "a\x00b")

    assert (plain.state, records.state, fails.state) == (
        JobState.COMPLETED,
        JobState.COMPLETED,
        JobState.DISCARDED,
    )
    assert records.result is not None
    assert records.result.startswith("read a")
    assert fails.errors[0].error.startswith("ValueError: bad a")


async def test_a_lone_surrogate_in_an_error_or_result_holds_up_no_ack(
    make_jobs: MakeJobs, request: pytest.FixtureRequest
) -> None:
    plain, records, fails = await _ack_with_text(make_jobs, os.fsdecode(b"report-\xff.csv"))

    assert (plain.state, records.state, fails.state) == (
        JobState.COMPLETED,
        JobState.COMPLETED,
        JobState.DISCARDED,
    )
    assert records.result is not None
    assert records.result.startswith("read report-")
    assert fails.errors[0].error.startswith("ValueError: bad report-")


@pytest.mark.parametrize(
    ("args", "meta", "what"),
    [
        ({"line": "a\x00b"}, None, "NUL character"),
        ({"line": "ok"}, {"m": "\x00"}, "NUL character"),
        ({"name": os.fsdecode(b"report-\xff.csv")}, None, "lone surrogate"),
    ],
)
async def test_args_the_database_cannot_store_are_refused_at_enqueue_on_every_engine(
    make_jobs: MakeJobs, args: dict[str, str], meta: dict[str, str] | None, what: str
) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker
    async def parse(job: Job[Any]) -> None: ...

    with pytest.raises(EnqueueError, match=what):
        await parse.enqueue(args, meta=meta)
    assert await jobs.list_jobs() == []
    emoji = await parse.enqueue({"line": "caf\u00e9 \U0001f600"})  # valid text is fine
    stored = await jobs.get_job(emoji.id)
    assert stored is not None
    assert stored.args == {"line": "caf\u00e9 \U0001f600"}
