"""The pruner's and the vacuumer's loops, against engines that only count what they are asked."""

from __future__ import annotations

from collections.abc import Mapping

from underway.jobs._runtime.pruner import BATCH, Pruner
from underway.jobs._runtime.vacuumer import Vacuumer
from underway.jobs.engines.base import Vacuums
from underway.jobs.engines.postgres import PostgresEngine
from underway.jobs.engines.sqlite import SQLiteEngine
from underway.jobs.job import JobState

AGES = {JobState.COMPLETED: 10.0}


class Backlog:
    """Finished jobs that are all due: each prune deletes what it is allowed to."""

    def __init__(self, due: int, **others: int) -> None:
        self.due = {JobState.COMPLETED: due, **{JobState(k): n for k, n in others.items()}}
        self.asked: list[int] = []
        self.states: list[JobState] = []

    async def prune(self, max_age: Mapping[JobState, float], now: float, limit: int) -> int:
        [state] = max_age  # one state per batch
        self.asked.append(limit)
        self.states.append(state)
        deleted = min(limit, self.due.get(state, 0))
        self.due[state] = self.due.get(state, 0) - deleted
        return deleted


def pruner(engine: Backlog, limit: int) -> Pruner:
    return Pruner(engine, interval=60, max_age=AGES, limit=limit, node="n")  # type: ignore[arg-type]


async def test_a_pass_deletes_at_most_limit_rows_in_batches() -> None:
    engine = Backlog(due=10 * BATCH)
    await pruner(engine, limit=2 * BATCH + 5).tick()
    assert engine.asked == [BATCH, BATCH, 5]
    assert engine.due[JobState.COMPLETED] == 8 * BATCH - 5  # the rest waits for the next pass


async def test_a_pass_stops_at_the_first_short_batch() -> None:
    engine = Backlog(due=BATCH + 3)
    await pruner(engine, limit=100 * BATCH).tick()
    assert engine.asked == [BATCH, BATCH]
    assert engine.due[JobState.COMPLETED] == 0


async def test_a_limit_below_one_batch_is_one_statement() -> None:
    engine = Backlog(due=50)
    await pruner(engine, limit=7).tick()
    assert engine.asked == [7]


async def test_states_take_turns_so_a_flood_of_one_never_starves_the_others() -> None:
    engine = Backlog(due=100 * BATCH, discarded=2 * BATCH + 1, cancelled=10)
    ages = {
        JobState.COMPLETED: 10.0,
        JobState.DISCARDED: 10.0,
        JobState.CANCELLED: 10.0,
    }
    pruner = Pruner(engine, interval=60, max_age=ages, limit=6 * BATCH, node="n")  # type: ignore[arg-type]
    await pruner.tick()
    # every discarded and cancelled job goes; completed ones get the rest of the limit
    completed_left = 100 * BATCH - (6 * BATCH - (2 * BATCH + 1) - 10)
    assert engine.due == {
        JobState.COMPLETED: completed_left,
        JobState.DISCARDED: 0,
        JobState.CANCELLED: 0,
    }
    assert engine.states[:3] == [JobState.COMPLETED, JobState.DISCARDED, JobState.CANCELLED]
    assert engine.states.count(JobState.CANCELLED) == 1  # short at once: done for this pass


class Dead:
    """Live jobs with ``dead`` dead rows; a vacuum clears them."""

    def __init__(self, dead: int) -> None:
        self.dead = dead
        self.vacuumed = 0

    async def vacuum(self, dead_rows: int) -> int | None:
        if self.dead < dead_rows:
            return None
        found, self.dead = self.dead, 0
        self.vacuumed += 1
        return found


async def test_the_vacuumer_vacuums_only_past_its_threshold() -> None:
    engine = Dead(dead=99)
    vacuumer = Vacuumer(engine, interval=2, dead_rows=100)
    await vacuumer.tick()
    assert (engine.vacuumed, vacuumer.vacuums) == (0, 0)
    engine.dead = 150
    await vacuumer.tick()
    assert (engine.vacuumed, vacuumer.vacuums, engine.dead) == (1, 1, 0)


def test_only_postgresql_needs_vacuuming() -> None:
    assert issubclass(PostgresEngine, Vacuums)
    assert not issubclass(SQLiteEngine, Vacuums)
