"""The Kafka producer's offset tracker: the commit point never passes a gap (pure)."""

from __future__ import annotations

import random

from underway.pipelines.producers.kafka._offsets import OffsetTracker, PartitionOffsets


def test_nothing_read_nothing_to_commit() -> None:
    state = PartitionOffsets(generation=1)
    assert state.commit_point() is None
    assert state.to_commit() is None


def test_commit_point_stops_at_the_first_unsettled_offset() -> None:
    state = PartitionOffsets(generation=1)
    for offset in range(10, 20):
        state.add(offset)
    assert state.commit_point() == 10
    for offset in (11, 12, 14, 15):
        state.settle(offset)
    assert state.commit_point() == 10  # 10 still in flight: the gap holds the commit
    state.settle(10)
    assert state.commit_point() == 13
    state.settle(13)
    assert state.commit_point() == 16
    for offset in range(16, 20):
        state.settle(offset)
    assert state.commit_point() == 20  # everything settled: the next offset to read
    assert state.in_flight == 0


def test_offsets_need_not_be_contiguous() -> None:
    state = PartitionOffsets(generation=1)
    for offset in (3, 7, 8, 12):  # compacted log, transaction markers
        state.add(offset)
    state.settle(3)
    assert state.commit_point() == 7
    state.settle(8)
    state.settle(12)
    assert state.commit_point() == 7
    state.settle(7)
    assert state.commit_point() == 13


def test_stopped_offset_holds_the_commit_for_good() -> None:
    state = PartitionOffsets(generation=1)
    for offset in range(5):
        state.add(offset)
    assert state.stop(2)
    assert not state.settle(2)  # a stopped offset is never settled
    for offset in (0, 1, 3, 4):
        state.settle(offset)
    assert state.commit_point() == 2
    assert state.in_flight == 0


def test_settling_twice_or_unknown_offsets_counts_once() -> None:
    state = PartitionOffsets(generation=1)
    state.add(0)
    assert state.settle(0)
    assert not state.settle(0)
    assert not state.settle(99)
    assert not state.stop(99)


def test_to_commit_only_when_the_point_moved_on() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.assign(["a", "b"])
    a = tracker.get("a")
    assert a is not None
    a.add(0)
    a.add(1)
    assert tracker.to_commit() == {"a": (0, a.generation)}
    a.settle(0)
    points = tracker.to_commit()
    assert points == {"a": (1, a.generation)}
    tracker.committed(points)
    assert tracker.to_commit() == {}
    a.settle(1)
    assert tracker.to_commit() == {"a": (2, a.generation)}


def test_a_revoked_partition_drops_its_settlements() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.assign(["a"])
    old = tracker.get("a")
    assert old is not None
    old.add(0)
    tracker.revoke(["a"])
    assert tracker.get("a") is None
    assert "a" not in tracker
    tracker.assign(["a"])  # assigned again: a new generation
    new = tracker.get("a")
    assert new is not None
    assert new.generation != old.generation
    assert tracker.get("a", old.generation) is None
    points = {"a": (5, old.generation)}
    tracker.committed(points)  # a commit of the old generation is not recorded
    assert new.committed is None


def test_in_flight_counts_by_partition() -> None:
    tracker: OffsetTracker[str] = OffsetTracker()
    tracker.assign(["a", "b"])
    for name, count in (("a", 3), ("b", 2)):
        state = tracker.get(name)
        assert state is not None
        for offset in range(count):
            state.add(offset)
    assert tracker.in_flight() == 5
    assert tracker.in_flight(["b"]) == 2
    assert tracker.in_flight(["c"]) == 0


def test_random_settle_order_never_commits_past_an_unsettled_offset() -> None:
    rng = random.Random(7)
    state = PartitionOffsets(generation=1)
    offsets = list(range(500))
    for offset in offsets:
        state.add(offset)
    order = offsets[:]
    rng.shuffle(order)
    settled: set[int] = set()
    for offset in order:
        state.settle(offset)
        settled.add(offset)
        point = state.commit_point()
        assert point is not None
        assert all(o in settled for o in range(point))  # everything before it is settled
        assert point == 500 or point not in settled  # and it stops at the first gap
    assert state.commit_point() == 500


class _Model:
    """The tracker's meaning, spelled out with a set: what the fast structure must match."""

    def __init__(self) -> None:
        self.pending: set[int] = set()
        self.stopped: set[int] = set()
        self.next: int | None = None

    def add(self, offset: int) -> None:
        self.pending.add(offset)
        self.next = offset + 1 if self.next is None else max(self.next, offset + 1)

    def settle(self, offset: int) -> bool:
        if offset not in self.pending or offset in self.stopped:
            return False
        self.pending.discard(offset)
        return True

    def stop(self, offset: int) -> bool:
        if offset not in self.pending:
            return False
        self.stopped.add(offset)
        return True

    def point(self) -> int | None:
        return min(self.pending) if self.pending else self.next


def test_matches_the_set_model_under_random_operations() -> None:
    rng = random.Random(11)
    for _ in range(30):
        state, model = PartitionOffsets(generation=1), _Model()
        top = 0
        for _ in range(3000):
            roll = rng.random()
            if roll < 0.35:  # mostly increasing, sometimes with gaps
                top += rng.choice((1, 1, 1, 2, 5))
                state.add(top)
                model.add(top)
            elif roll < 0.4:  # out of order, or handed out again
                offset = rng.randrange(top + 1)
                state.add(offset)
                model.add(offset)
            elif roll < 0.8:
                offset = rng.randrange(top + 2)
                assert state.settle(offset) == model.settle(offset)
            elif roll < 0.97:  # a group of one processor's chunk, in any order
                some = [rng.randrange(max(0, top - 20), top + 2) for _ in range(rng.randrange(8))]
                assert state.settle_all(some) == sum(model.settle(o) for o in some)
            else:
                offset = rng.randrange(top + 2)
                assert state.stop(offset) == model.stop(offset)
            assert state.commit_point() == model.point()
            assert state.in_flight == len(model.pending) - len(model.stopped)
        assert state.stopped == model.stopped


def test_add_all_and_settle_all_in_bulk() -> None:
    state = PartitionOffsets(generation=1)
    state.add_all(list(range(0, 5000)))
    state.add_all([4990, 5001, 5003])  # overlaps what is held: added one at a time
    state.add_all([5003, 5002])  # not increasing: one at a time
    assert state.in_flight == 5003
    assert state.settle_all(range(1, 5004)) == 5003 - 1
    assert state.commit_point() == 0
    assert state.settle_all([0, 0]) == 1
    assert state.commit_point() == 5004
    assert state.in_flight == 0


def test_long_in_order_runs_keep_the_point_and_compact() -> None:
    state = PartitionOffsets(generation=1)
    state.add(0)  # held back: everything after it waits
    state.add_all(list(range(1, 10_001)))
    assert state.settle_all(range(1, 10_001)) == 10_000
    assert state.commit_point() == 0
    state.settle(0)
    assert state.commit_point() == 10_001
    for offset in range(10_001, 20_001):  # settled as they come, past several compactions
        state.add(offset)
        if offset % 3 == 0:
            assert state.settle(offset - 1)
    assert state.settle_all(range(10_001, 20_001)) == 10_000 - 3333
    assert state.commit_point() == 20_001
    assert state.to_commit() == 20_001


def test_head_runs_settled_in_one_step_match_the_set_model() -> None:
    # Chunks settled in order are the pending run at the head (settled in one step); runs
    # that hold a settled, stopped or missing offset must take the offset-by-offset path.
    rng = random.Random(5)
    for _ in range(40):
        state, model = PartitionOffsets(generation=1), _Model()
        top = 0
        for _ in range(600):
            roll = rng.random()
            if roll < 0.4:
                run = []
                for _ in range(rng.randrange(1, 12)):
                    top += rng.choice((1, 1, 1, 3))
                    run.append(top)
                state.add_all(run)
                for offset in run:
                    model.add(offset)
            elif roll < 0.8:  # the first pending ones, in order (sometimes with a stopped one)
                ordered = sorted(model.pending)[: rng.randrange(1, 10)]
                if ordered and rng.random() < 0.2:
                    ordered.append(ordered[-1] + 1)  # perhaps never handed out
                assert state.settle_all(ordered) == sum(model.settle(o) for o in ordered)
            elif roll < 0.95:
                offset = rng.randrange(top + 2)
                assert state.settle(offset) == model.settle(offset)
            else:
                offset = rng.randrange(top + 2)
                assert state.stop(offset) == model.stop(offset)
            assert state.commit_point() == model.point()
            assert state.in_flight == len(model.pending) - len(model.stopped)
        assert state.stopped == model.stopped
