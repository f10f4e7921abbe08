"""PipelineStats: per-minute rings fed by telemetry events, on a fake clock."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from underway import _telemetry as telemetry
from underway.errors import ConfigError
from underway.pipelines import DummyProducer, Message, Pipeline, PipelineStats
from underway.pipelines.stats import BatchSizes, MinuteStats

T0 = 1_700_000_040.0  # the start of a minute


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _pipeline(name: str = "orders", **options: Any) -> Pipeline:
    return Pipeline(producer=DummyProducer(), handle_message=lambda m: m, name=name, **options)


def _batch_pipeline(name: str = "orders") -> Pipeline:
    return _pipeline(
        name,
        batchers={"s3": {"batch_size": 10}},
        handle_batch=lambda batcher, batch, info: None,
    )


def _settled(pipeline: str, stage: str, ok: int, failed: int) -> None:
    telemetry.emit(
        "pipeline.settled", {"ok": ok, "failed": failed}, {"pipeline": pipeline, "stage": stage}
    )


def _batch(pipeline: str, batcher: str, size: int, *, failed: bool = False) -> None:
    event = "pipeline.batch.exception" if failed else "pipeline.batch.stop"
    telemetry.emit(
        event, {"duration": 0.01, "size": size}, {"pipeline": pipeline, "batcher": batcher}
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def stats(clock: Clock) -> Iterator[PipelineStats]:
    collector = PipelineStats([_batch_pipeline()], minutes=3, clock=clock).attach()
    yield collector
    collector.detach()


def _minute(offset: int) -> datetime:
    return datetime.fromtimestamp(T0 + 60 * offset, UTC)


def test_settled_messages_fill_the_minutes_of_their_stage(
    stats: PipelineStats, clock: Clock
) -> None:
    _settled("orders", "processor", 5, 1)
    clock.now += 30
    _settled("orders", "processor", 2, 0)
    clock.now += 60  # the next minute
    _settled("orders", "processor", 4, 2)
    _settled("orders", "batch_processor", 7, 3)

    [snapshot] = stats.snapshot()
    processors, batcher, batch_processors = snapshot.stages
    assert processors.kind == "processors"
    assert processors.minutes == (
        MinuteStats(_minute(-1), 0, 0),
        MinuteStats(_minute(0), 7, 1),
        MinuteStats(_minute(1), 4, 2),
    )
    assert (processors.ok, processors.failed) == (11, 3)
    assert processors.per_minute == pytest.approx(14 / 1.5)  # 14 in the 90 s since attached
    assert batch_processors.kind == "batch_processors"
    assert batch_processors.minutes[-1] == MinuteStats(_minute(1), 7, 3)
    assert batcher.minutes[-1] == MinuteStats(_minute(1), 0, 0)


def test_old_minutes_leave_the_ring_and_totals_stay(stats: PipelineStats, clock: Clock) -> None:
    _settled("orders", "processor", 5, 0)
    clock.now += 10 * 60
    _settled("orders", "processor", 1, 0)
    processors = stats.snapshot()[0].stages[0]
    assert [m.ok for m in processors.minutes] == [0, 0, 1]
    assert processors.minutes[0].minute == _minute(8)
    assert processors.ok == 6
    assert processors.per_minute == pytest.approx(0.5)  # 1 in the ring, which began 2 min ago
    clock.now += 5 * 60  # nothing since: every recent minute is empty
    assert [m.ok for m in stats.snapshot()[0].stages[0].minutes] == [0, 0, 0]


def test_batches_give_sizes_and_failures_per_batcher(stats: PipelineStats, clock: Clock) -> None:
    _batch("orders", "s3", 10)
    _batch("orders", "s3", 4)
    clock.now += 60
    _batch("orders", "s3", 7, failed=True)
    batcher = stats.snapshot()[0].stages[1]
    assert (batcher.kind, batcher.name, batcher.in_flight) == ("batcher", "s3", None)
    assert batcher.batches == BatchSizes(batches=3, failed=1, smallest=4, largest=10, messages=21)
    assert batcher.batches.mean == 7.0
    assert [(m.ok, m.failed) for m in batcher.minutes] == [(0, 0), (14, 0), (0, 7)]
    clock.now += 3 * 60
    empty = stats.snapshot()[0].stages[1].batches
    assert empty == BatchSizes(batches=0, failed=0, smallest=None, largest=None, messages=0)
    assert empty.mean is None


def test_a_pipeline_known_only_from_its_events_is_listed_without_state(
    stats: PipelineStats,
) -> None:
    _settled("elsewhere", "processor", 3, 0)
    capacity = stats.pipelines["orders"].capacity
    names = [(s.name, s.state, s.in_flight, s.capacity) for s in stats.snapshot()]
    assert names == [("elsewhere", None, None, None), ("orders", "stopped", 0, capacity)]
    [processors] = stats.snapshot()[0].stages
    assert processors.in_flight is None
    assert processors.ok == 3


def test_events_that_are_not_what_the_topology_emits_are_ignored(stats: PipelineStats) -> None:
    telemetry.emit("pipeline.settled", {"ok": 1, "failed": 0}, {"stage": "processor"})
    telemetry.emit("pipeline.settled", {"ok": 1, "failed": 0}, {"pipeline": "x", "stage": "?"})
    telemetry.emit("pipeline.batch.stop", {"size": "big"}, {"pipeline": "x", "batcher": "b"})
    telemetry.emit("pipeline.batch.stop", {"size": 3}, {"pipeline": "x"})
    assert [s.name for s in stats.snapshot()] == ["orders"]


def test_a_pipeline_without_batchers_has_only_processors() -> None:
    stats = PipelineStats([_pipeline(rate_limit=(50, 2.0))])
    [snapshot] = stats.snapshot()
    assert [s.kind for s in snapshot.stages] == ["processors"]
    assert snapshot.rate_limit == (50, 2.0)
    assert snapshot.stages[0].minutes[-1].ok == 0
    assert len(snapshot.stages[0].minutes) == 30


def test_attached_it_asks_for_no_span_per_message(clock: Clock) -> None:
    before = dict(telemetry.attached)
    assert not telemetry.wants("pipeline.message"), "another handler wants message spans"
    with PipelineStats(clock=clock) as stats:
        assert stats.attached
        assert not telemetry.wants("pipeline.message")
        assert telemetry.wants("pipeline.batch")
        _settled("p", "processor", 1, 0)
    assert telemetry.attached == before
    _settled("p", "processor", 1, 0)  # detached: not counted
    assert stats.snapshot()[0].stages[0].ok == 1


def test_attach_and_detach_are_idempotent(clock: Clock) -> None:
    before = dict(telemetry.attached)
    stats = PipelineStats(clock=clock)
    stats.attach()
    stats.attach()
    _settled("p", "processor", 1, 0)
    assert stats.snapshot()[0].stages[0].ok == 1  # counted once
    stats.detach()
    stats.detach()
    assert not stats.attached
    assert telemetry.attached == before


@pytest.mark.parametrize("minutes", [0, 1441, 2.5, True, "5"])
def test_minutes_must_be_an_int_in_range(minutes: Any) -> None:
    with pytest.raises(ConfigError, match="minutes must be an int from 1 to 1440"):
        PipelineStats(minutes=minutes)


def test_only_pipelines_with_names_of_their_own_are_taken() -> None:
    with pytest.raises(ConfigError, match="takes Pipeline objects"):
        PipelineStats([Message(data=1)])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="two pipelines are named 'orders'"):
        PipelineStats([_pipeline(), _pipeline()])
    same = _pipeline()
    assert list(PipelineStats([same, same]).pipelines) == ["orders"]
