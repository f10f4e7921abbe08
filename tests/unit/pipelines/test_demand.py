"""The demand accounting shared by a pipeline's stages: counts and what to ask for."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from underway.pipelines._policy import parse_batchers, parse_processors, total_capacity
from underway.pipelines._topology import Demand


def make(capacity: int | None = None, **processors: int) -> Demand:
    config = parse_processors(processors)
    return Demand(config, config.capacity if capacity is None else capacity)


def test_an_empty_pipeline_asks_for_its_whole_share() -> None:
    demand = make(concurrency=2, max_demand=10)
    assert demand.wanted(share=20) == 20
    assert demand.wanted(share=7) == 7


def test_admitted_messages_shrink_the_demand_until_below_the_refill_threshold() -> None:
    demand = make(concurrency=1, max_demand=10, min_demand=5)  # refill: 5 free slots
    demand.admit(4)
    assert (demand.in_flight, demand.in_processors) == (4, 4)
    assert demand.wanted(share=10) == 6
    demand.admit(2)
    assert demand.wanted(share=10) == 0  # 4 free slots: wait for more room
    demand.settle(1, batched=False)
    assert (demand.in_flight, demand.in_processors) == (5, 5)
    assert demand.wanted(share=10) == 5


def test_a_reservation_counts_until_released() -> None:
    demand = make(concurrency=1, max_demand=10, min_demand=9)  # refill: 1 free slot
    demand.reserve(8)  # one fetch loop waits for 8
    assert demand.wanted(share=10) == 2  # another loop sees only what is left
    demand.release(5)  # the fetch returned 3 of them...
    demand.admit(3)  # ...which the processors took
    demand.release(3)
    assert demand.reserved == 0
    assert demand.wanted(share=10) == 7


def test_messages_in_a_batcher_free_processor_slots_but_not_the_capacity() -> None:
    processors = parse_processors({"concurrency": 1, "max_demand": 4, "min_demand": 0})
    batchers = parse_batchers({"b": {"batch_size": 2, "concurrency": 1}})
    demand = Demand(processors, total_capacity(processors, batchers))  # 4 + 2 * 2 = 8
    demand.admit(4)
    assert demand.wanted(share=4) == 0
    demand.hand_to_batcher(4)
    assert (demand.in_flight, demand.in_processors) == (4, 0)
    assert demand.wanted(share=4) == 4  # the processors are empty and the capacity allows it
    demand.admit(4)
    demand.hand_to_batcher(4)
    assert demand.wanted(share=4) == 0  # 8 held in the batcher: the capacity is reached
    demand.settle(2, batched=True)
    assert (demand.in_flight, demand.in_processors) == (6, 0)
    assert demand.wanted(share=4) == 2


def test_reset_forgets_every_count() -> None:
    demand = make()
    demand.admit(7)
    demand.reserve(3)
    demand.hand_to_batcher(2)
    demand.reset()
    assert (demand.in_flight, demand.in_processors, demand.reserved) == (0, 0, 0)
    assert demand.wanted(share=demand.capacity) == demand.capacity


def test_what_frees_room_is_noted_for_the_waiting_fetch_loops() -> None:
    def held() -> Demand:
        demand = make()
        demand.reserve(1)
        demand.admit(3)
        assert not demand.room_freed  # reserving and admitting take room
        return demand

    frees: list[Callable[[Demand], None]] = [
        lambda d: d.release(1),
        lambda d: d.hand_to_batcher(1),
        lambda d: d.settle(1, batched=False),
        lambda d: d.settle(1, batched=True),
    ]
    for free in frees:
        demand = held()
        free(demand)
        assert demand.room_freed


async def test_a_waiting_fetch_loop_wakes_when_room_is_freed() -> None:
    demand = make()
    demand.settle(0, batched=False)  # room freed before the wait does not count
    waiter = asyncio.create_task(demand.wait_for_room())
    await asyncio.sleep(0)
    assert not waiter.done()
    demand.admit(1)
    await asyncio.sleep(0)
    assert not waiter.done()  # admitting takes room, it frees none
    demand.settle(1, batched=False)
    await asyncio.wait_for(waiter, 30)
