"""Consume message brokers with back-pressure, batching and exactly-once acknowledgements.

A :class:`Pipeline` pulls from producers no more messages than its processors asked for,
runs ``handle_message`` on each, optionally groups them in named batchers for
``handle_batch``, and acknowledges every message exactly once, grouped per acknowledger.
"""

from underway.pipelines.message import Acknowledger, Message, MessageStatus, NoopAcknowledger
from underway.pipelines.pipeline import BatchInfo, Pipeline, Producer
from underway.pipelines.producers.dummy import DummyProducer, RecordingAcknowledger
from underway.pipelines.rate_limit import RateLimiter
from underway.pipelines.stats import PipelineStats

__all__ = [
    "Acknowledger",
    "BatchInfo",
    "DummyProducer",
    "Message",
    "MessageStatus",
    "NoopAcknowledger",
    "Pipeline",
    "PipelineStats",
    "Producer",
    "RateLimiter",
    "RecordingAcknowledger",
]
