"""Consume a Google Cloud Pub/Sub subscription (extra ``underway[pubsub]``).

See :class:`PubSubProducer`.
"""

from __future__ import annotations

from underway.pipelines.producers.pubsub._producer import PubSubProducer

__all__ = ["PubSubProducer"]
