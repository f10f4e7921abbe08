"""Consume an Amazon SQS queue (extra ``underway[sqs]``, aiobotocore)."""

from __future__ import annotations

from underway.pipelines.producers.sqs._producer import SQSProducer

__all__ = ["SQSProducer"]
