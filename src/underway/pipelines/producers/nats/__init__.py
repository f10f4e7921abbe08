"""Consume a NATS JetStream stream through a durable pull consumer (extra ``underway[nats]``)."""

from __future__ import annotations

from underway.pipelines.producers.nats._producer import NATSProducer

__all__ = ["NATSProducer"]
