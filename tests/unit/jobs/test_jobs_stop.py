"""``Jobs``' stop against an engine in memory: cut short, failing, hurried before a start."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from underway.errors import DatabaseError
from underway.jobs import Job, Jobs, JobState
from underway.tasks import ChildSpec, Ready, Supervisor

from .memory_engine import MemoryEngine, wait_until


class ClosesBadly(MemoryEngine):
    """An engine whose close fails."""

    async def close(self) -> None:
        await super().close()
        raise DatabaseError("disk I/O error while closing")


def _app(engine: MemoryEngine, started: list[int], finish: asyncio.Event) -> Jobs:
    jobs = Jobs("sqlite:///:memory:", queues={"default": 2}, shutdown_grace=60.0, prune=None)
    jobs.engine = engine

    @jobs.worker(name="w")
    async def gated(job: Job[Any]) -> None:
        started.append(job.id)
        await finish.wait()

    return jobs


def _runtime_tasks() -> list[str]:
    return sorted(t.get_name() for t in asyncio.all_tasks() if t.get_name().startswith("underway."))


async def test_a_child_cut_short_while_stopping_still_hands_back_and_closes() -> None:
    engine = MemoryEngine()
    started: list[int] = []
    jobs = _app(engine, started, asyncio.Event())
    job_id = engine.add()
    # cancel_timeout: the supervisor waits for the hurried stop, however loaded the machine
    app = Supervisor([jobs.child_spec(shutdown=0.2)], name="app", cancel_timeout=60.0)
    await app.start()
    await wait_until(lambda: started == [job_id], "the job to start")
    await app.stop()  # the job's 60 s grace outlasts the child's 0.2 s: it is cancelled
    assert engine.state(job_id) is JobState.AVAILABLE
    assert engine.released == [(job_id, 1)]
    assert _runtime_tasks() == []
    assert engine.calls[-2:] == ["forget_node", "close"]
    assert jobs.node is None


async def test_a_cancelled_stop_hurries_the_node_and_finishes_before_propagating() -> None:
    engine = MemoryEngine()
    started: list[int] = []
    jobs = _app(engine, started, asyncio.Event())
    job_id = engine.add()
    await jobs.start()
    await wait_until(lambda: started == [job_id], "the job to start")
    stopping = asyncio.create_task(jobs.stop())
    await wait_until(lambda: jobs.node is None, "the stop to begin")
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert engine.state(job_id) is JobState.AVAILABLE
    assert _runtime_tasks() == []
    assert engine.calls[-1] == "close"


async def test_serve_raises_what_failed_while_stopping() -> None:
    engine = ClosesBadly()
    jobs = _app(engine, [], asyncio.Event())
    stop = asyncio.Event()
    serving = asyncio.create_task(jobs.serve(stop=stop))
    await wait_until(lambda: jobs.node is not None, "the node to start")
    stop.set()
    with pytest.raises(DatabaseError, match="while closing"):
        await serving
    assert _runtime_tasks() == []


async def test_stop_now_before_a_start_does_not_cut_a_later_stop_short() -> None:
    engine = MemoryEngine()
    started: list[int] = []
    finish = asyncio.Event()
    jobs = _app(engine, started, finish)
    jobs.stop_now()  # no node runs: nothing to hurry
    await jobs.start()
    job_id = engine.add()
    jobs.node.wake("default")  # type: ignore[union-attr]
    await wait_until(lambda: started == [job_id], "the job to start")
    stopping = asyncio.create_task(jobs.stop())
    await wait_until(lambda: jobs.node is None, "the stop to begin")
    finish.set()  # within the grace
    await stopping
    assert engine.state(job_id) is JobState.COMPLETED
    assert engine.released == []


async def test_a_child_cancelled_while_starting_does_not_hurry_the_next_stop() -> None:
    engine = MemoryEngine()
    opening = asyncio.Event()
    release_open = asyncio.Event()
    open_engine = engine.open

    async def slow_open() -> None:
        opening.set()
        await release_open.wait()
        await open_engine()

    engine.open = slow_open  # type: ignore[method-assign]
    started: list[int] = []
    finish = asyncio.Event()
    jobs = _app(engine, started, finish)
    child: asyncio.Future[Any] = asyncio.ensure_future(jobs.child_spec().start(ready=Ready()))
    await opening.wait()
    release_open.set()
    child.cancel()  # cancelled while it starts: its stop, with no node, is hurried
    with pytest.raises(asyncio.CancelledError):
        await child
    await jobs.start()
    job_id = engine.add()
    jobs.node.wake("default")  # type: ignore[union-attr]
    await wait_until(lambda: started == [job_id], "the job to start")
    stopping = asyncio.create_task(jobs.stop())
    await wait_until(lambda: jobs.node is None, "the stop to begin")
    finish.set()
    await stopping
    assert engine.state(job_id) is JobState.COMPLETED


class SlowRelease(MemoryEngine):
    """An engine whose first hand-back waits until the test lets it go on."""

    def __init__(self) -> None:
        super().__init__()
        self.release_may_end = asyncio.Event()
        self.releasing = asyncio.Event()
        self.is_open = False

    async def open(self) -> None:
        await super().open()
        self.is_open = True

    async def close(self) -> None:
        await super().close()
        self.is_open = False

    async def release(self, claims: Any, node: str, now: float) -> int:
        if not self.releasing.is_set():
            self.releasing.set()
            await self.release_may_end.wait()
        return await super().release(claims, node, now)


async def test_a_restart_waits_for_the_stop_its_supervisor_gave_up_on() -> None:
    engine = SlowRelease()
    started: list[int] = []
    jobs = _app(engine, started, asyncio.Event())
    crashed = asyncio.Event()

    async def sibling(*, ready: Ready) -> None:
        ready()
        await wait_until(lambda: bool(started), "a job to start")
        if not crashed.is_set():
            crashed.set()
            raise OSError("the sibling crashes once")
        await asyncio.Event().wait()

    engine.add()
    app = Supervisor(
        [jobs.child_spec(shutdown=0.05), ChildSpec("sibling", sibling, ready=True)],
        strategy="one_for_all",
        name="app",
        cancel_timeout=0.05,  # gives up on the node's stop while its hand-back waits
    )
    await app.start()

    def jobs_task() -> object:
        return next(c.task for c in app.which_children() if c.id == "jobs")

    first = jobs_task()
    try:
        await engine.releasing.wait()  # the old node's stop hands back, slowly
        # the supervisor gives up on that child and starts a new one
        await wait_until(lambda: jobs_task() not in (first, None), "the new child")
        await asyncio.sleep(0.2)
        assert jobs.node is None  # the new node waits for the old stop
        engine.release_may_end.set()
        await wait_until(lambda: jobs.node is not None, "the new node to start")
        await asyncio.sleep(0.1)
        assert engine.is_open  # the old stop closed the database before the new start
        assert jobs.node is not None
    finally:
        engine.release_may_end.set()
        await app.stop()
