"""Producers: sources of messages for a :class:`~underway.pipelines.Pipeline`."""

from underway.pipelines.producers.dummy import DummyProducer, RecordingAcknowledger

__all__ = ["DummyProducer", "RecordingAcknowledger"]
