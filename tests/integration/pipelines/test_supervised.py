"""A pipeline as a supervised child: started, drained when asked to stop, hurried when told."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tests.integration.conftest import wait_until
from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline, RecordingAcknowledger
from underway.tasks import Supervisor

BOUND = 30.0  # only a hang takes that long


def acked_once(ack: RecordingAcknowledger) -> list[object]:
    """The data of every message acknowledged, each acknowledged exactly once."""
    messages = [*ack.successful, *ack.failed]
    assert len({id(m) for m in messages}) == len(messages), "a message was acked twice"
    return sorted(m.data for m in messages)


class Gate:
    """A handler that holds the messages it is given until opened (or cancelled)."""

    def __init__(self, hold: Sequence[int]) -> None:
        self.hold = set(hold)
        self.opened = asyncio.Event()
        self.holding: set[int] = set()
        self.cancelled: set[int] = set()

    async def __call__(self, message: Message) -> Message:
        if message.data in self.hold:
            self.holding.add(message.data)
            try:
                await self.opened.wait()
            except asyncio.CancelledError:
                self.cancelled.add(message.data)
                raise
        return message


async def test_a_supervised_pipeline_starts_handles_messages_and_stops() -> None:
    producer = DummyProducer(range(30))
    pipeline = Pipeline(producer=producer, handle_message=lambda m: m, name="orders")
    supervisor = Supervisor([pipeline.child_spec()])
    await supervisor.start()
    try:
        started = pipeline.running  # the child is ready only once the pipeline started
        assert started
        [child] = supervisor.which_children()
        assert (child.id, child.status) == ("orders", "running")
        await producer.acknowledger.wait_for(30, timeout=BOUND)
    finally:
        await supervisor.stop()
    assert not pipeline.running
    assert producer.draining
    assert acked_once(producer.acknowledger) == list(range(30))


async def test_asked_to_stop_it_drains_what_it_holds() -> None:
    producer = DummyProducer(range(3))
    gate = Gate(hold=range(3))
    pipeline = Pipeline(
        producer=producer,
        handle_message=gate,
        processors={"concurrency": 3, "max_demand": 1},
        shutdown_timeout=BOUND,
    )
    supervisor = Supervisor([pipeline.child_spec(id="drain")])
    await supervisor.start()
    await wait_until(lambda: gate.holding == {0, 1, 2}, BOUND, message="all held")
    stopping = asyncio.create_task(supervisor.stop())
    await wait_until(lambda: producer.draining, BOUND, message="draining")
    producer.push(3, 4)  # not fetched any more: they stay with the broker
    assert not stopping.done()  # the stop waits for the messages in flight
    gate.opened.set()
    await asyncio.wait_for(stopping, BOUND)
    assert acked_once(producer.acknowledger) == [0, 1, 2]
    assert producer.acknowledger.failed == []
    assert producer.pending == 2
    assert not pipeline.running


async def test_told_to_hurry_it_stops_without_acking_what_it_did_not_finish() -> None:
    producer = DummyProducer(range(6))
    gate = Gate(hold=[4, 5])
    batches: list[list[object]] = []

    def route(message: Message) -> Message:
        return message.put_batcher("b") if message.data in (2, 3) else message

    async def handle(message: Message) -> Message:
        return await gate(route(message))

    async def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        batches.append([m.data for m in messages])

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2, "max_demand": 1},
        batchers={"b": {"batch_size": 10, "batch_timeout": 3600}},  # 2 and 3 wait there
        handle_batch=handle_batch,
        shutdown_timeout=3600,  # a drain would wait for the held messages for an hour
    )
    supervisor = Supervisor([pipeline.child_spec(shutdown=None)])
    await supervisor.start()
    await wait_until(lambda: gate.holding == {4, 5}, BOUND, message="4 and 5 held")
    await producer.acknowledger.wait_for(2, timeout=BOUND)  # 0 and 1 handled
    stopping = asyncio.create_task(supervisor.stop())
    await wait_until(lambda: producer.draining, BOUND, message="draining")
    supervisor.hurry()
    await asyncio.wait_for(stopping, BOUND)
    assert gate.cancelled == {4, 5}  # their handlers were interrupted...
    assert acked_once(producer.acknowledger) == [0, 1]  # ...and never acked, nor failed
    assert batches == []  # the open batch was not flushed: 2 and 3 stay with the broker
    assert not pipeline.running
    assert pipeline.in_flight == 0


async def test_hurried_before_the_stop_it_does_not_drain() -> None:
    producer = DummyProducer([1])
    gate = Gate(hold=[1])
    pipeline = Pipeline(producer=producer, handle_message=gate, shutdown_timeout=3600)
    supervisor = Supervisor([pipeline.child_spec()])
    await supervisor.start()
    await wait_until(lambda: gate.holding == {1}, BOUND, message="1 held")
    supervisor.hurry()  # its next stop is hurried
    await asyncio.wait_for(supervisor.stop(), BOUND)
    assert gate.cancelled == {1}
    assert producer.acknowledger.count == 0


async def test_cancelled_by_its_supervisor_it_stops_without_draining() -> None:
    producer = DummyProducer([1, 2])
    gate = Gate(hold=[2])
    pipeline = Pipeline(
        producer=producer,
        handle_message=gate,
        processors={"concurrency": 2, "max_demand": 1},
        shutdown_timeout=3600,
    )
    supervisor = Supervisor([pipeline.child_spec(shutdown=0)])  # no ask: a cancellation
    await supervisor.start()
    await wait_until(lambda: gate.holding == {2}, BOUND, message="2 held")
    await producer.acknowledger.wait_for(1, timeout=BOUND)
    await asyncio.wait_for(supervisor.stop(), BOUND)
    assert gate.cancelled == {2}
    assert acked_once(producer.acknowledger) == [1]
    assert producer.draining
    assert not pipeline.running


async def test_stop_now_cuts_a_stop_in_progress_short() -> None:
    producer = DummyProducer([1, 2])
    gate = Gate(hold=[2])
    pipeline = Pipeline(
        producer=producer,
        handle_message=gate,
        processors={"concurrency": 2, "max_demand": 1},
        shutdown_timeout=3600,
    )
    await pipeline.start()
    await wait_until(lambda: gate.holding == {2}, BOUND, message="2 held")
    await producer.acknowledger.wait_for(1, timeout=BOUND)
    stopping = asyncio.create_task(pipeline.stop())
    await wait_until(lambda: producer.draining, BOUND, message="draining")
    assert not stopping.done()
    await asyncio.wait_for(pipeline.stop_now(), BOUND)
    assert stopping.done()
    assert stopping.exception() is None
    assert gate.cancelled == {2}
    assert acked_once(producer.acknowledger) == [1]
    assert not pipeline.running
    await pipeline.stop_now()  # stopped already: nothing to do


async def test_run_returns_when_the_pipeline_is_stopped_elsewhere() -> None:
    producer = DummyProducer([1])
    pipeline = Pipeline(producer=producer, handle_message=lambda m: m)
    running = asyncio.create_task(pipeline.run())
    await producer.acknowledger.wait_for(1, timeout=BOUND)
    await pipeline.stop()
    await asyncio.wait_for(running, BOUND)
    assert acked_once(producer.acknowledger) == [1]
