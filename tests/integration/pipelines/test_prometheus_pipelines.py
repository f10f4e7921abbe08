"""Prometheus metrics of a pipeline: messages by stage and outcome, batch sizes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from underway.pipelines import BatchInfo, DummyProducer, Message, Pipeline
from underway.prometheus import instrument


async def test_messages_and_batches_of_a_run_with_known_failures() -> None:
    producer = DummyProducer(range(10))
    batches: list[list[int]] = []

    def handle(message: Message) -> Message:
        if message.data % 5 == 4:  # 4 and 9
            raise ValueError(f"cannot take {message.data}")
        return message.put_batcher("pairs")

    def handle_batch(name: str, messages: list[Message], info: BatchInfo) -> None:
        batches.append([m.data for m in messages])

    pipeline = Pipeline(
        producer=producer,
        handle_message=handle,
        processors={"concurrency": 2},
        # Cut by size only: 8 messages make 4 batches of 2 in whatever order they come.
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

    assert sorted(m.data for m in producer.acknowledger.failed) == [4, 9]
    assert sorted(len(batch) for batch in batches) == [2, 2, 2, 2]
    messages = "underway_messages_total"
    assert get(messages, pipeline="orders", stage="processor", outcome="ok") == 8
    assert get(messages, pipeline="orders", stage="processor", outcome="failed") == 2
    assert get(messages, pipeline="orders", stage="batch_processor", outcome="ok") == 8
    assert get("underway_batch_size_count", pipeline="orders", batcher="pairs") == 4
    assert get("underway_batch_size_sum", pipeline="orders", batcher="pairs") == 8
    assert get("underway_batch_size_bucket", pipeline="orders", batcher="pairs", le="1.0") == 0
    assert get("underway_batch_size_bucket", pipeline="orders", batcher="pairs", le="2.0") == 4


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
