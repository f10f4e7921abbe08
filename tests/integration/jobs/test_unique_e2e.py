"""Unique jobs end to end on each engine: conflicts, each option, bulk inserts, races."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from underway.jobs import Job, Jobs, JobState, Unique

from ..conftest import MakeJobs, wait_for_state


def _count(jobs: Jobs) -> int:
    return sum(jobs.counts_sync().values())


async def test_a_duplicate_returns_the_existing_job_marked_as_a_conflict(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker(unique=Unique())
    async def sync_account(job: Job[Any]) -> None: ...

    async with jobs:
        first = await sync_account.enqueue({"account": 1}, tags=["a"])
        again = await sync_account.enqueue({"account": 1}, tags=["b"])
        other = await sync_account.enqueue({"account": 2})

    assert first.conflict is False
    assert again.conflict is True
    assert again.id == first.id
    assert again.tags == ("a",)  # the stored job, not the rejected one
    assert again.state is JobState.AVAILABLE
    assert other.conflict is False
    assert other.id != first.id
    assert _count(jobs) == 2


async def test_a_period_expires_and_forever_does_not(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker(unique=Unique(period=0.5))
    async def short(job: Job[Any]) -> None: ...

    @jobs.worker(unique=Unique(period="forever"))
    async def forever(job: Job[Any]) -> None: ...

    async with jobs:
        short_first = await short.enqueue({"k": 1})
        forever_first = await forever.enqueue({"k": 1})
        assert (await short.enqueue({"k": 1})).conflict is True
        await asyncio.sleep(0.6)  # the period is wall-clock time
        short_later = await short.enqueue({"k": 1})
        forever_later = await forever.enqueue({"k": 1})
        short_third = await short.enqueue({"k": 1})

    assert short_later.conflict is False
    assert short_later.id != short_first.id
    assert short_third.conflict is True
    assert short_third.id == short_later.id
    assert forever_later.conflict is True
    assert forever_later.id == forever_first.id


async def test_fields_choose_what_makes_jobs_the_same(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker(unique=Unique(fields=["worker"]))
    async def by_worker(job: Job[Any]) -> None: ...

    @jobs.worker(queue="mail", unique=Unique(fields=["queue"]))
    async def mail_a(job: Job[Any]) -> None: ...

    @jobs.worker(queue="mail", unique=Unique(fields=["queue"]))
    async def mail_b(job: Job[Any]) -> None: ...

    @jobs.worker(unique=Unique(fields=["worker", "args"]))
    async def by_args(job: Job[Any]) -> None: ...

    @jobs.worker(unique=Unique())
    async def by_default(job: Job[Any]) -> None: ...

    @jobs.worker(unique=Unique(fields=["worker", "meta"]))
    async def by_meta(job: Job[Any]) -> None: ...

    async with jobs:
        # worker only: any args collide
        assert not (await by_worker.enqueue({"x": 1})).conflict
        assert (await by_worker.enqueue({"x": 2})).conflict
        # queue only: another worker in the same queue collides, another queue does not
        assert not (await mail_a.enqueue({"x": 1})).conflict
        assert (await mail_b.enqueue({"x": 2})).conflict
        assert not (await mail_b.enqueue({"x": 2}, queue="mail-eu")).conflict
        # worker and args: the queue is not compared
        assert not (await by_args.enqueue({"x": 1})).conflict
        assert (await by_args.enqueue({"x": 1}, queue="elsewhere")).conflict
        assert not (await by_args.enqueue({"x": 2})).conflict
        # the default compares worker, queue and args
        assert not (await by_default.enqueue({"x": 1})).conflict
        assert not (await by_default.enqueue({"x": 1}, queue="elsewhere")).conflict
        assert (await by_default.enqueue({"x": 1}, queue="elsewhere")).conflict
        # worker and meta: args are ignored, meta is compared
        assert not (await by_meta.enqueue({"x": 1}, meta={"tenant": "a"})).conflict
        assert (await by_meta.enqueue({"x": 2}, meta={"tenant": "a"})).conflict
        assert not (await by_meta.enqueue({"x": 1}, meta={"tenant": "b"})).conflict

    assert _count(jobs) == 9


async def test_keys_compare_a_subset_of_args(make_jobs: MakeJobs) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker(unique=Unique(keys=["account"]))
    async def sync_account(job: Job[Any]) -> None: ...

    async with jobs:
        first = await sync_account.enqueue({"account": 1, "requested_by": "ann"})
        same_key = await sync_account.enqueue({"account": 1, "requested_by": "bob"})
        other_key = await sync_account.enqueue({"account": 2, "requested_by": "ann"})
        missing_key = await sync_account.enqueue({"requested_by": "ann"})
        missing_again = await sync_account.enqueue({"requested_by": "cat"})

    assert same_key.conflict
    assert same_key.id == first.id
    assert same_key.args == {"account": 1, "requested_by": "ann"}
    assert not other_key.conflict
    assert not missing_key.conflict
    assert missing_again.conflict
    assert missing_again.id == missing_key.id


async def test_a_completed_job_blocks_only_when_completed_is_in_states(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs()
    waiting = [JobState.SCHEDULED, JobState.AVAILABLE, JobState.EXECUTING, JobState.RETRYABLE]

    @jobs.worker(unique=Unique())
    async def with_completed(job: Job[Any]) -> None: ...

    @jobs.worker(unique=Unique(states=waiting))
    async def while_waiting(job: Job[Any]) -> None: ...

    async with jobs:
        a = await with_completed.enqueue({"n": 1})
        b = await while_waiting.enqueue({"n": 1})
        await wait_for_state(jobs, a.id)
        await wait_for_state(jobs, b.id)
        a_again = await with_completed.enqueue({"n": 1})
        b_again = await while_waiting.enqueue({"n": 1})
        await wait_for_state(jobs, b_again.id)

    assert a_again.conflict is True
    assert a_again.id == a.id
    assert a_again.state is JobState.COMPLETED
    assert b_again.conflict is False
    assert b_again.id != b.id


async def test_cancelled_and_discarded_jobs_do_not_block_by_default(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker(queue="parked", unique=Unique())
    async def parked(job: Job[Any]) -> None: ...

    @jobs.worker(unique=Unique(), max_attempts=1)
    async def broken(job: Job[Any]) -> None:
        raise RuntimeError("always")

    async with jobs:
        cancelled = await parked.enqueue({"n": 1})
        assert (await parked.enqueue({"n": 1})).conflict is True
        await jobs.cancel_job(cancelled.id)
        after_cancel = await parked.enqueue({"n": 1})

        discarded = await broken.enqueue({"n": 1})
        done = await wait_for_state(jobs, discarded.id)
        after_discard = await broken.enqueue({"n": 1})

    assert after_cancel.conflict is False
    assert after_cancel.id != cancelled.id
    assert done.state is JobState.DISCARDED
    assert after_discard.conflict is False
    assert after_discard.id != discarded.id


async def test_bulk_insert_flags_duplicates_in_the_batch_and_in_the_table(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs(testing="manual")

    @jobs.worker(unique=Unique(period="forever"))
    async def once(job: Job[Any]) -> None: ...

    @jobs.worker
    async def plain(job: Job[Any]) -> None: ...

    async with jobs:
        existing = await once.enqueue({"k": "c"})
        batch = [
            once.new({"k": "a"}),
            plain.new({"k": "a"}),
            once.new({"k": "b"}),
            once.new({"k": "a"}),
            once.new({"k": "c"}),
            plain.new({"k": "a"}),
            once.new({"k": "b"}),
            once.new({"k": "d"}),
        ]
        out = await jobs.enqueue_many(batch)

    assert [j.conflict for j in out] == [False, False, False, True, True, False, True, False]
    assert [j.worker for j in out] == [s.worker for s in batch]
    assert [j.args for j in out] == [s.args for s in batch]
    a, p1, b, a2, c, p2, b2, d = out
    assert a2.id == a.id
    assert b2.id == b.id
    assert c.id == existing.id
    assert len({a.id, p1.id, b.id, p2.id, d.id, existing.id}) == 6
    assert a.id < p1.id < b.id < p2.id < d.id
    assert _count(jobs) == 6


async def test_concurrent_inserts_from_two_engines_keep_one_job(make_jobs: MakeJobs) -> None:
    apps = [make_jobs(testing="manual") for _ in range(2)]
    workers = []
    for app in apps:

        @app.worker(name="dedupe", unique=Unique(period="forever"))
        def dedupe(job: Job[Any]) -> None: ...

        workers.append(dedupe)
        app.migrate_sync()

    results: list[Job[Any]] = []
    barrier = threading.Barrier(8)

    def insert(index: int) -> None:
        barrier.wait()
        for n in range(25):
            results.append(workers[index % 2].enqueue_sync({"n": n}))

    threads = [threading.Thread(target=insert, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    fresh = [j for j in results if not j.conflict]
    assert len(results) == 200
    assert sorted(j.args["n"] for j in fresh) == list(range(25))
    by_n = {j.args["n"]: j.id for j in fresh}
    assert all(j.id == by_n[j.args["n"]] for j in results)
    assert _count(apps[0]) == 25
