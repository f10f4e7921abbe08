"""A queue's producer against an engine in memory: its limit, control, and its stop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from underway.jobs import Job, Jobs, JobState
from underway.jobs._runtime.acker import Acker
from underway.jobs._runtime.executor import Executor
from underway.jobs._runtime.producer import Producer
from underway.jobs._runtime.queues import Queues

from .memory_engine import MemoryEngine, settle, wait_until

WAIT = 10.0


class Gate:
    """An async worker's jobs wait here until let through; it counts what runs at once."""

    def __init__(self) -> None:
        self.started: list[int] = []
        self.running = 0
        self.most = 0
        self.go: dict[int, asyncio.Event] = {}

    def event(self, job_id: int) -> asyncio.Event:
        return self.go.setdefault(job_id, asyncio.Event())

    async def __call__(self, job: Job[Any]) -> None:
        self.started.append(job.id)
        self.running += 1
        self.most = max(self.most, self.running)
        try:
            await self.event(job.id).wait()
        finally:
            self.running -= 1

    def let_through(self, *job_ids: int) -> None:
        for job_id in job_ids:
            self.event(job_id).set()


class Rig:
    """A producer of queue ``default`` (and any more) on one memory engine."""

    def __init__(self, pool: ThreadPoolExecutor) -> None:
        self.engine = MemoryEngine()
        self.app = Jobs("sqlite:///:memory:")
        self.gate = gate = Gate()
        self.thread_go = threading.Event()

        @self.app.worker(name="w")
        async def gated(job: Job[Any]) -> None:
            await gate(job)

        self.app.worker(name="sync")(self._sync)
        self.executor = Executor(self.app.workers, "n", pool)
        self.acker = Acker(self.engine, node="n")
        self.producers: list[Producer] = []

    def _sync(self, job: Job[Any]) -> None:
        self.thread_go.wait(WAIT)

    def producer(self, limit: int, queue: str = "default") -> Producer:
        producer = Producer(
            queue,
            limit,
            engine=self.engine,
            executor=self.executor,
            acker=self.acker,
            node="n",
            poll_interval=60.0,  # only notifications and freed capacity make it fetch
        )
        self.producers.append(producer)
        return producer

    def completed(self) -> list[int]:
        return [a.job_id for batch in self.engine.acked for a in batch]


@pytest.fixture
async def rig(pool: ThreadPoolExecutor) -> AsyncIterator[Rig]:
    made = Rig(pool)
    await made.acker.start()
    yield made
    made.gate.let_through(*made.engine.jobs)
    made.thread_go.set()
    for producer in made.producers:
        producer.hurry()
        await producer.stop(0)
    await made.acker.stop()


async def test_never_more_jobs_run_than_the_limit(rig: Rig) -> None:
    ids = [rig.engine.add() for _ in range(10)]
    producer = rig.producer(limit=3)
    await producer.start()
    await wait_until(lambda: len(rig.gate.started) == 3, "three jobs to start")
    producer.notify()  # told of more jobs while full, it still claims none
    await settle()
    assert rig.gate.started == ids[:3]
    assert rig.engine.fetched == [3]

    rig.gate.let_through(ids[0])
    await wait_until(lambda: len(rig.gate.started) == 4, "a fourth job to start")
    assert rig.engine.fetched[1:] == [1], "it asks for the freed slot only"
    rig.gate.let_through(*ids)
    await wait_until(lambda: sorted(rig.completed()) == ids, "every job to complete")
    assert rig.gate.most == 3
    assert all(rig.engine.state(i) is JobState.COMPLETED for i in ids)


async def test_pause_resume_and_scale(rig: Rig) -> None:
    ids = [rig.engine.add() for _ in range(6)]
    producer = rig.producer(limit=2)
    producer.pause()
    await producer.start()
    producer.notify()
    await settle()
    assert rig.engine.fetched == []
    assert rig.gate.started == []

    producer.resume()
    await wait_until(lambda: len(rig.gate.started) == 2, "two jobs to start once resumed")
    producer.scale(5)
    await wait_until(lambda: len(rig.gate.started) == 5, "five jobs at the new limit")
    producer.pause()
    rig.gate.let_through(*ids[:5])  # running jobs finish while paused...
    await wait_until(lambda: len(rig.completed()) == 5, "the running jobs to complete")
    await settle()
    assert rig.gate.started == ids[:5], "...and no new one starts"
    assert rig.gate.most == 5


async def test_a_stop_claims_nothing_more_and_waits_for_running_jobs(rig: Rig) -> None:
    first, second, waiting = (rig.engine.add() for _ in range(3))
    producer = rig.producer(limit=2)
    await producer.start()
    await wait_until(lambda: len(rig.gate.started) == 2, "two jobs to start")
    stopping = asyncio.create_task(producer.stop(None))
    await settle()
    assert not stopping.done(), "the stop waits for the running jobs"
    rig.gate.let_through(first)
    await settle()
    assert rig.gate.started == [first, second], "a freed slot is not filled while stopping"
    rig.gate.let_through(second)
    await asyncio.wait_for(stopping, WAIT)
    assert (producer.handed_back, producer.left_running) == ([], [])
    assert rig.engine.state(waiting) is JobState.AVAILABLE
    await rig.acker.stop()
    assert sorted(rig.completed()) == [first, second]


async def test_hurry_cancels_running_jobs_and_hands_their_claims_back(rig: Rig) -> None:
    ids = [rig.engine.add() for _ in range(2)]
    producer = rig.producer(limit=2)
    await producer.start()
    await wait_until(lambda: len(rig.gate.started) == 2, "two jobs to start")
    stopping = asyncio.create_task(producer.stop(None))  # no bound: only hurry ends it
    await settle()
    assert not stopping.done()
    producer.hurry()
    await asyncio.wait_for(stopping, WAIT)
    assert sorted(producer.handed_back) == [(i, 1) for i in ids]
    assert producer.left_running == []
    assert rig.gate.running == 0
    await rig.acker.stop()
    assert rig.completed() == [], "a cancelled job is handed back, not acked"


async def test_the_grace_ends_with_the_jobs_left_handed_back(rig: Rig) -> None:
    job_id = rig.engine.add()
    producer = rig.producer(limit=1)
    await producer.start()
    await wait_until(lambda: rig.gate.started == [job_id], "the job to start")
    await asyncio.wait_for(producer.stop(0.01), WAIT)
    assert producer.handed_back == [(job_id, 1)]


async def test_a_sync_job_still_in_its_thread_is_left_running_or_waited_for(rig: Rig) -> None:
    job_id = rig.engine.add(worker="sync")
    producer = rig.producer(limit=1)
    await producer.start()
    await wait_until(lambda: job_id in rig.executor.in_threads, "the sync job to start")
    producer.wait_for_threads = False
    await asyncio.wait_for(producer.stop(0), WAIT)
    assert (producer.handed_back, producer.left_running) == ([], [job_id])

    other = rig.producer(limit=1, queue="other")
    second = rig.engine.add(queue="other", worker="sync")
    await other.start()
    await wait_until(lambda: second in rig.executor.in_threads, "the second sync job to start")
    waiting = asyncio.create_task(other.stop(0))  # waits for the thread by default
    await settle()
    assert not waiting.done()
    rig.thread_go.set()
    await asyncio.wait_for(waiting, WAIT)
    assert (other.handed_back, other.left_running) == ([], [])
    await rig.acker.stop()
    assert second in rig.completed()


async def test_queues_stop_claiming_everywhere_then_hand_back_in_one_release(rig: Rig) -> None:
    a, b = rig.engine.add("a"), rig.engine.add("b")
    queues = Queues(
        {"a": rig.producer(1, "a"), "b": rig.producer(1, "b")},
        engine=rig.engine,
        node="n",
        grace=60.0,
    )
    await queues.start()
    await wait_until(lambda: len(rig.gate.started) == 2, "a job of each queue to start")
    late = rig.engine.add("a")
    queues.hurry()
    await asyncio.wait_for(queues.stop(), WAIT)
    assert sorted(queues.handed_back) == [(a, 1), (b, 1)]
    assert sorted(rig.engine.released) == [(a, 1), (b, 1)]
    assert rig.engine.calls.count("release") == 1
    assert {rig.engine.state(i) for i in (a, b, late)} == {JobState.AVAILABLE}
