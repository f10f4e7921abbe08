"""Producers: sources of messages for a :class:`~underway.pipelines.Pipeline`."""

from underway.pipelines.producers._protocol import Producer
from underway.pipelines.producers.dummy import DummyProducer, RecordingAcknowledger

__all__ = ["DummyProducer", "Producer", "RecordingAcknowledger"]
