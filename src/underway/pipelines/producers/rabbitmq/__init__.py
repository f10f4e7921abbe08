"""Consume a RabbitMQ queue (extra ``underway[rabbitmq]``); see :class:`RabbitMQProducer`."""

from __future__ import annotations

from underway.pipelines.producers.rabbitmq._producer import RabbitMQProducer

__all__ = ["RabbitMQProducer"]
