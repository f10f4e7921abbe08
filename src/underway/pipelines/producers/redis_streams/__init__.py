"""Consume a Redis stream through a consumer group (extra ``underway[redis]``)."""

from __future__ import annotations

from underway.pipelines.producers.redis_streams._producer import RedisStreamProducer

__all__ = ["RedisStreamProducer"]
