"""The rules that keep a live node's jobs from running twice, without an event loop's waits."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import pytest

from underway.jobs._runtime.lifeline import Heartbeat, Lifeline
from underway.jobs._runtime.reconciler import orphaned
from underway.jobs._runtime.unclaimed import served_queues, unclaimable
from underway.jobs.job import JobState
from underway.jobs.outcomes import Ack, for_claim


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeEngine:
    """Heartbeats that fail while ``down`` (or hang while ``stuck``); counted rescues."""

    def __init__(self) -> None:
        self.down = False
        self.stuck = False
        self.rescues = 0

    async def heartbeat(self, node: str, now: float, meta: Mapping[str, Any]) -> None:
        if self.stuck:
            await asyncio.Event().wait()  # a write on a connection that died silently
        if self.down:
            raise ConnectionError("database unreachable")

    async def rescue(self, stale_before: float, now: float) -> dict[str, int]:
        self.rescues += 1
        return {}


def _beating(engine: FakeEngine, clock: Clock) -> tuple[Heartbeat, Lifeline]:
    beat = Heartbeat(
        engine,  # type: ignore[arg-type]
        node="n",
        interval=1.0,
        queues=dict,
        clock=clock,
    )
    life = Lifeline(
        engine,  # type: ignore[arg-type]
        node="n",
        interval=1.0,
        rescue_after=5.0,
        wake=lambda q: None,
        connected_for=beat.connected_for,
    )
    return beat, life


async def _run_for(beat: Heartbeat, life: Lifeline, clock: Clock, seconds: int) -> None:
    for _ in range(seconds):
        with contextlib.suppress(ConnectionError):
            await beat.tick()
        await life.tick()
        clock.now += 1.0


async def test_the_lifeline_judges_only_after_rescue_after_of_unbroken_heartbeats() -> None:
    engine, clock = FakeEngine(), Clock()
    beat, life = _beating(engine, clock)

    await _run_for(beat, life, clock, 5)
    assert engine.rescues == 0, "judged before its own node was connected for rescue_after"
    await _run_for(beat, life, clock, 2)
    assert engine.rescues > 0


async def test_an_outage_starts_the_wait_again() -> None:
    engine, clock = FakeEngine(), Clock()
    beat, life = _beating(engine, clock)
    await _run_for(beat, life, clock, 10)
    judged = engine.rescues

    engine.down = True
    await _run_for(beat, life, clock, 20)
    engine.down = False
    await _run_for(beat, life, clock, 5)

    assert engine.rescues == judged, "judged other nodes on silence nobody could avoid"
    await _run_for(beat, life, clock, 2)
    assert engine.rescues > judged


async def test_a_gap_between_heartbeats_counts_as_an_outage() -> None:
    engine, clock = FakeEngine(), Clock()
    beat, _ = _beating(engine, clock)
    for _ in range(10):
        await beat.tick()
        clock.now += 1.0
    assert beat.connected_for() >= 5.0

    clock.now += 30.0  # a stalled loop: no heartbeat, no failure seen either
    assert beat.connected_for() == 0.0
    await beat.tick()
    assert beat.connected_for() == 0.0


def test_a_heartbeat_records_the_nodes_workers() -> None:
    beat = Heartbeat(
        FakeEngine(),  # type: ignore[arg-type]
        node="n",
        interval=1.0,
        queues=lambda: {"default": 3},
        workers=lambda: ["b", "a"],
    )
    meta = beat.meta()
    assert (meta["queues"], meta["workers"]) == ({"default": 3}, ["a", "b"])


def test_an_outcome_is_recorded_for_the_newest_claim() -> None:
    done = Ack(7, JobState.COMPLETED, 1.0, 1, result='"x"')
    failed = Ack(7, JobState.RETRYABLE, 1.0, 1, scheduled_at=9.0, error="boom")

    assert for_claim(done, 1, 3) is done
    assert for_claim(done, 2, 3) == Ack(7, JobState.COMPLETED, 1.0, 2, result='"x"')
    assert for_claim(failed, 2, 3).state is JobState.RETRYABLE
    last = for_claim(failed, 3, 3)
    assert (last.state, last.attempt, last.error) == (JobState.DISCARDED, 3, "boom")


def test_a_claim_is_orphaned_only_if_no_run_holds_its_job_and_no_ack_settles_it() -> None:
    claimed = {(1, 1), (2, 2), (3, 1), (4, 5)}
    running = {1, 4}  # job 4 runs here as an older attempt: it holds the newer claim
    acking = {(3, 1), (2, 1)}  # the ack of job 2's older attempt does not settle attempt 2

    assert orphaned(claimed, running, acking) == {(2, 2)}


def test_jobs_are_unclaimable_only_when_every_live_node_says_what_it_has() -> None:
    sample = {("default", "a"): 3, ("default", "gone"): 2, ("mail", "b"): 1}
    nodes = {
        "n1": {"queues": {"default": 5}, "workers": ["a"]},
        "n2": {"queues": {"mail": 1, "default": 2}, "workers": ["b"]},
    }

    assert served_queues(nodes) == {"default", "mail"}
    assert unclaimable(nodes, sample) == {("default", "gone"): 2}
    # n3 has worker "c" but runs only "mail": nobody claims "c" in "default".
    apart = {**nodes, "n3": {"queues": {"mail": 1}, "workers": ["c"]}}
    assert unclaimable(apart, {("default", "c"): 4, ("mail", "c"): 1}) == {("default", "c"): 4}
    assert unclaimable({**nodes, "old": {"queues": {"default": 1}}}, sample) is None
    assert unclaimable({}, sample) is None


async def test_a_heartbeat_stuck_on_a_dead_connection_is_given_up() -> None:
    engine, clock = FakeEngine(), Clock()
    beat, _ = _beating(engine, clock)
    await beat.tick()
    engine.stuck = True

    async with asyncio.timeout(30):  # a hang bound: the heartbeat gives up by itself
        with pytest.raises(TimeoutError):
            await beat.tick()
    assert beat.connected_for() == 0.0
    engine.stuck = False
    await beat.tick()
    clock.now += 1.0
    assert beat.connected_for() == 1.0
