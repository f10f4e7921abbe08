"""Prometheus metrics of running nodes: counters from telemetry, the leader's gauge."""

from __future__ import annotations

import asyncio
from typing import Any

from prometheus_client import CollectorRegistry

from underway.jobs import Cancel, Job, Jobs, JobState, Snooze
from underway.prometheus import exposition, instrument

from ..conftest import MakeJobs, wait_for_state, wait_until


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def queue_jobs(registry: CollectorRegistry, queue: str, state: str) -> float | None:
    return value(registry, "underway_queue_jobs", queue=queue, state=state)


def leads(jobs: Jobs) -> bool:
    return jobs.node is not None and jobs.node.leader.is_leader


async def test_counts_durations_and_gauge_after_a_run_of_known_outcomes(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs(queues={"default": 10, "mail": 2})
    snoozed: set[int] = set()

    @jobs.worker(name="ok")
    async def ok(job: Job[Any]) -> None:
        return None

    @jobs.worker(name="broken", max_attempts=2, backoff=0)
    async def broken(job: Job[Any]) -> None:
        raise RuntimeError("boom")

    @jobs.worker(name="withdrawn")
    async def withdrawn(job: Job[Any]) -> Cancel:
        return Cancel("not needed")

    @jobs.worker(name="later", queue="mail")
    def later(job: Job[Any]) -> Snooze | None:  # a sync worker, run in a thread
        if job.id in snoozed:
            return None
        snoozed.add(job.id)
        return Snooze(0.05)

    registry = CollectorRegistry()
    # An hour between readings: the gauge changes only when the test asks for a reading.
    with instrument(jobs, registry=registry, interval=3600) as metrics:
        async with jobs:
            enqueued = [await ok.enqueue({}) for _ in range(5)]
            enqueued += [await broken.enqueue({}) for _ in range(2)]
            enqueued += [await withdrawn.enqueue({}), await later.enqueue({})]
            done = [await wait_for_state(jobs, job.id, timeout=30) for job in enqueued]
            await wait_until(lambda: leads(jobs), 30, message="the node leads")
            assert await asyncio.to_thread(metrics.refresh)
        # Read while attached: a detach unregisters the metrics.
        assert [job.state for job in done] == [
            *[JobState.COMPLETED] * 5,
            *[JobState.DISCARDED] * 2,
            JobState.CANCELLED,
            JobState.COMPLETED,
        ]

        def jobs_total(queue: str, worker: str, outcome: str) -> float | None:
            return value(
                registry, "underway_jobs_total", queue=queue, worker=worker, outcome=outcome
            )

        assert jobs_total("default", "ok", "completed") == 5
        assert jobs_total("default", "broken", "retryable") == 2
        assert jobs_total("default", "broken", "discarded") == 2
        assert jobs_total("default", "broken", "completed") is None
        assert jobs_total("default", "withdrawn", "cancelled") == 1
        assert jobs_total("mail", "later", "snoozed") == 1
        assert jobs_total("mail", "later", "completed") == 1

        def attempts(queue: str, worker: str) -> float | None:
            return value(
                registry, "underway_job_duration_seconds_count", queue=queue, worker=worker
            )

        assert attempts("default", "ok") == 5
        assert attempts("default", "broken") == 4
        assert attempts("default", "withdrawn") == 1
        assert attempts("mail", "later") == 2
        spent = value(registry, "underway_job_duration_seconds_sum", queue="default", worker="ok")
        assert spent is not None
        assert spent >= 0
        slowest = value(
            registry,
            "underway_job_duration_seconds_bucket",
            queue="default",
            worker="ok",
            le="+Inf",
        )
        assert slowest == 5

        expected = {
            ("default", "completed"): 5,
            ("default", "discarded"): 2,
            ("default", "cancelled"): 1,
            ("mail", "completed"): 1,
        }
        for queue in ("default", "mail"):
            for state in JobState:
                assert queue_jobs(registry, queue, state.value) == expected.get((queue, state), 0)
        text = exposition(registry).decode()
        assert 'underway_queue_jobs{queue="mail",state="completed"} 1.0' in text
        assert (
            'underway_jobs_total{outcome="discarded",queue="default",worker="broken"} 2.0' in text
        )


async def test_only_the_leader_reads_the_counts_and_a_follower_takes_over(
    make_jobs: MakeJobs,
) -> None:
    first = make_jobs(node_name="first", leader_ttl=1.0)
    second = make_jobs(node_name="second", leader_ttl=1.0)

    @first.worker(name="task")
    async def task(job: Job[Any]) -> None:
        return None

    @second.worker(name="task")
    async def same_task(job: Job[Any]) -> None:
        return None

    first_registry, second_registry = CollectorRegistry(), CollectorRegistry()
    with (
        instrument(first, registry=first_registry, interval=3600) as first_metrics,
        instrument(second, registry=second_registry, interval=3600) as second_metrics,
    ):
        assert not first_metrics.refresh()  # no node runs yet
        await first.start()
        await wait_until(lambda: leads(first), 30, message="the first node leads")
        await second.start()
        job = await task.enqueue({})
        await wait_for_state(first, job.id, timeout=30)

        assert await asyncio.to_thread(first_metrics.refresh)
        assert not await asyncio.to_thread(second_metrics.refresh)
        assert queue_jobs(first_registry, "default", "completed") == 1
        assert queue_jobs(second_registry, "default", "completed") is None

        await first.stop()  # hands the lease over
        await wait_until(lambda: leads(second), 30, message="the second node leads")
        assert await asyncio.to_thread(second_metrics.refresh)
        assert not await asyncio.to_thread(first_metrics.refresh)
        assert queue_jobs(second_registry, "default", "completed") == 1
        assert queue_jobs(first_registry, "default", "completed") is None  # stepped down


async def test_the_leader_reads_the_counts_every_interval(make_jobs: MakeJobs) -> None:
    jobs = make_jobs()

    @jobs.worker(name="task")
    async def task(job: Job[Any]) -> None:
        return None

    registry = CollectorRegistry()
    with instrument(jobs, registry=registry, interval=0.05):
        async with jobs:
            await wait_until(
                lambda: queue_jobs(registry, "default", "available") == 0,
                30,
                message="a first reading",
            )
            enqueued = [await task.enqueue({}) for _ in range(3)]
            for job in enqueued:
                await wait_for_state(jobs, job.id, timeout=30)
            await wait_until(
                lambda: queue_jobs(registry, "default", "completed") == 3,
                30,
                message="a reading after the jobs completed",
            )


async def test_a_job_cancelled_while_it_runs_counts_as_cancelled_and_a_stop_does_not(
    make_jobs: MakeJobs,
) -> None:
    jobs = make_jobs(node_name="runner")
    admin = make_jobs(node_name="admin")  # another process's view: runs no node
    started: set[int] = set()

    @jobs.worker(name="waits")
    async def waits(job: Job[Any]) -> None:
        started.add(job.id)
        await asyncio.Event().wait()  # until interrupted

    registry = CollectorRegistry()

    def jobs_total(outcome: str) -> float | None:
        return value(
            registry, "underway_jobs_total", queue="default", worker="waits", outcome=outcome
        )

    with instrument(registry=registry):
        async with jobs:
            here, there, left = [await waits.enqueue({}) for _ in range(3)]
            bulk = await waits.enqueue({}, tags=["bulk"])
            await wait_until(lambda: len(started) == 4, 30, message="all four jobs running")

            await jobs.cancel_job(here.id)  # interrupted at once on this node
            await asyncio.to_thread(admin.cancel_job_sync, there.id)  # by a control signal
            assert await jobs.cancel_all_jobs(tags=["bulk"]) == 1
            await wait_until(
                lambda: jobs_total("cancelled") == 3, 30, message="three cancelled attempts"
            )
            for job in (here, there, bulk):
                done = await wait_for_state(jobs, job.id, timeout=30)
                assert done.state is JobState.CANCELLED
            jobs.stop_now()  # the last job is handed back by the stop: no outcome of its own

        assert jobs_total("cancelled") == 3
        assert jobs_total("completed") is None
        attempts = value(
            registry, "underway_job_duration_seconds_count", queue="default", worker="waits"
        )
        assert attempts == 3
    stored = await admin.get_job(left.id)
    assert stored is not None
    assert stored.state is JobState.AVAILABLE
