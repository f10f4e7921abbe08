"""The acker against an engine in memory: batches, retries, and what a stop writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import pytest

from underway.jobs._runtime.acker import Acker
from underway.jobs.job import JobState
from underway.jobs.outcomes import Ack

from .memory_engine import MemoryEngine, wait_until

WAIT = 10.0


def acks(*job_ids: int) -> list[Ack]:
    return [Ack(i, JobState.COMPLETED, 1.0, 1) for i in job_ids]


def ids(batches: list[list[Ack]]) -> list[list[int]]:
    return [[a.job_id for a in batch] for batch in batches]


async def test_acks_pushed_together_are_written_in_one_batch() -> None:
    engine = MemoryEngine()
    acker = Acker(engine, node="n")
    await acker.start()
    for ack in acks(1, 2, 3):
        acker.push(ack)
    await wait_until(lambda: engine.acked, "a flush")
    await acker.stop()
    assert ids(engine.acked) == [[1, 2, 3]]
    assert acker.pending == 0


async def test_batches_hold_at_most_max_batch_acks() -> None:
    engine = MemoryEngine()
    acker = Acker(engine, node="n", max_batch=2)
    await acker.start()
    for ack in acks(1, 2, 3, 4, 5):
        acker.push(ack)
    await wait_until(lambda: sum(map(len, engine.acked)) == 5, "every ack to be written")
    await acker.stop()
    assert ids(engine.acked) == [[1, 2], [3, 4], [5]]


async def test_a_failed_write_keeps_its_acks_and_is_retried() -> None:
    engine = MemoryEngine()
    engine.fail_acks = 2
    acker = Acker(engine, node="n")
    await acker.start()
    for ack in acks(1, 2):
        acker.push(ack)
    await wait_until(lambda: engine.acked, "a write that goes through")
    assert engine.fail_acks == 0, "both failures were met first"
    assert ids(engine.acked) == [[1, 2]]
    assert acker.claims() == set()
    await acker.stop()


async def test_acks_being_written_still_count_as_claims() -> None:
    engine = MemoryEngine()
    engine.ack_gate = gate = asyncio.Event()
    acker = Acker(engine, node="n")
    await acker.start()
    acker.push(Ack(7, JobState.COMPLETED, 1.0, 3))
    await wait_until(lambda: engine.ack_calls == 1, "the write to begin")
    assert acker.pending == 0
    assert acker.claims() == {(7, 3)}, "the reconciler must not hand back an acked claim"
    gate.set()
    await wait_until(lambda: engine.acked, "the write")
    assert acker.claims() == set()
    await acker.stop()


async def test_stop_writes_what_was_pushed() -> None:
    engine = MemoryEngine()
    acker = Acker(engine, node="n", interval=0.0)
    await acker.start()
    engine.fail_acks = 1  # the stop retries past a failure too
    for ack in acks(1, 2):
        acker.push(ack)
    await asyncio.wait_for(acker.stop(), WAIT)
    assert [i for batch in ids(engine.acked) for i in batch] == [1, 2]
    assert acker.pending == 0


async def test_stop_gives_up_after_its_timeout_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = MemoryEngine()
    engine.fail_acks = 10**9
    acker = Acker(engine, node="n")
    await acker.start()
    acker.push(acks(1)[0])
    with caplog.at_level(logging.ERROR, logger="underway.jobs"):
        await asyncio.wait_for(acker.stop(0.3), WAIT)
    assert acker.pending == 1
    assert engine.acked == []
    assert "could not write 1 acks before stopping" in caplog.text


class HangsOnce(MemoryEngine):
    """An engine whose first ack write never returns (until cancelled)."""

    async def ack(self, acks: Sequence[Ack], node: str) -> None:
        if self.ack_calls == 0:
            self.ack_calls += 1
            await asyncio.Event().wait()
        await super().ack(acks, node)


async def test_a_flush_cut_short_by_the_stop_is_tried_again() -> None:
    engine = HangsOnce()
    acker = Acker(engine, node="n", interval=0.0)
    await acker.start()
    acker.push(acks(1)[0])
    await wait_until(lambda: engine.ack_calls == 1, "the write to begin")
    await asyncio.wait_for(acker.stop(0.2), WAIT)
    assert ids(engine.acked) == [[1]]
    assert acker.pending == 0


async def test_the_last_tries_of_a_stop_are_bounded_when_every_write_hangs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    engine = MemoryEngine()
    engine.ack_gate = asyncio.Event()  # never set: every write waits
    acker = Acker(engine, node="n", interval=0.0)
    await acker.start()
    acker.push(acks(1)[0])
    await wait_until(lambda: engine.ack_calls == 1, "the write to begin")
    with caplog.at_level(logging.ERROR, logger="underway.jobs"):
        await asyncio.wait_for(acker.stop(0.2), WAIT)
    assert engine.ack_calls == 2, "one more attempt after the cut-short one"
    assert acker.pending == 1
    assert "could not write 1 acks before stopping" in caplog.text
