"""Prometheus metrics of a pipeline: messages by stage and outcome, batch sizes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline
from underway.prometheus import instrument


async def test_messages_and_batches_of_a_run_with_known_failures() -> None:
    # 4 and 9 raise, 7 is failed without raising, 3 goes to no batcher: the processors
    # settle those 4. The other 6 make 3 batches of 2; the one holding 0 raises.
    producer = DummyProducer(range(10))
    batches: list[list[int]] = []

    def handle(message: Message) -> Message:
        if message.data in (4, 9):
            raise ValueError(f"cannot take {message.data}")
        if message.data == 7:
            return message.failed("seven")
        if message.data == 3:
            return message
        return message.put_batcher("pairs")

    def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        batches.append([m.data for m in messages])
        if 0 in batches[-1]:
            raise ValueError("not this batch")

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2},
        # Cut by size only: 6 messages make 3 batches of 2 in whatever order they come.
        batchers={"pairs": {"batch_size": 2, "batch_timeout": 3600}},
        handle_batch=handle_batch,
        name="orders",
    )
    registry = CollectorRegistry()
    with instrument(registry=registry):
        async with pipeline:
            await producer.acknowledger.wait_for(10, timeout=30)
        # Read while attached: a detach unregisters the metrics.
        samples = {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in registry.collect()
            for sample in family.samples
        }

    def get(name: str, **labels: str) -> float | None:
        return samples.get((name, frozenset(labels.items())))

    failed = sorted(m.data for m in producer.acknowledger.failed)
    assert len(failed) == 5
    assert {4, 7, 9, 0} <= set(failed)
    assert sorted(len(batch) for batch in batches) == [2, 2, 2]
    messages = "underway_messages_total"
    assert get(messages, pipeline="orders", stage="processor", outcome="ok") == 1
    assert get(messages, pipeline="orders", stage="processor", outcome="failed") == 3
    assert get(messages, pipeline="orders", stage="batch_processor", outcome="ok") == 4
    assert get(messages, pipeline="orders", stage="batch_processor", outcome="failed") == 2
    assert get("underway_batch_size_count", pipeline="orders", batcher="pairs") == 3
    assert get("underway_batch_size_sum", pipeline="orders", batcher="pairs") == 6
    assert get("underway_batch_size_bucket", pipeline="orders", batcher="pairs", le="1.0") == 0
    assert get("underway_batch_size_bucket", pipeline="orders", batcher="pairs", le="2.0") == 3


async def test_nothing_is_counted_once_detached() -> None:
    registry = CollectorRegistry()
    metrics = instrument(registry=registry)
    metrics.detach()
    producer = DummyProducer(range(3))
    async with Pipeline(producer=producer, handle_message=lambda m: m, name="quiet"):
        await producer.acknowledger.wait_for(3, timeout=30)
    assert list(registry.collect()) == []  # unregistered
    (family,) = metrics.messages_total.collect()
    assert family.samples == []  # and the handlers detached: nothing counted
