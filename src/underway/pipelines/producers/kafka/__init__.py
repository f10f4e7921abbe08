"""Consume Kafka topics through a consumer group (extra ``underway[kafka]``, aiokafka)."""

from __future__ import annotations

from underway.pipelines.producers.kafka._producer import KafkaProducer

__all__ = ["KafkaProducer"]
