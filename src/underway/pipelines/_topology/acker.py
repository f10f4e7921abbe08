"""Settling: failed messages to ``handle_failed``, then every message acknowledged once."""

from __future__ import annotations

import logging

from underway.pipelines._handlers import Handlers
from underway.pipelines._topology.demand import Demand
from underway.pipelines.message import Message, call_ack, claim_acks

__all__ = ["Acker"]

_log = logging.getLogger("underway.pipelines")


class Acker:
    """Settles the messages of a pipeline, exactly once each, grouped per acknowledger.

    Args:
        handlers: The pipeline's callbacks (``handle_failed`` runs first).
        demand: Told how many messages left the pipeline.
        flush_ids: Ids of messages pushed in flush mode, forgotten once settled.
    """

    def __init__(self, handlers: Handlers, demand: Demand, flush_ids: set[int]) -> None:
        self._handlers = handlers
        self._demand = demand
        self._flush_ids = flush_ids

    async def settle_batched(self, messages: list[Message]) -> None:
        """Settle messages that went through a batcher."""
        await self.settle(messages, batched=True)

    async def settle(self, messages: list[Message], *, batched: bool = False) -> None:
        """Run ``handle_failed`` on the failed ones, then acknowledge those not yet acked.

        A message is marked acked before its acknowledger is called, so a late
        ``ack_immediately()`` never acknowledges it again; an acknowledger's exception is
        logged. The demand is told even when this is cancelled.
        """
        try:
            failed = [m for m in messages if m.status == "failed"]
            if failed:
                await self._handlers.failed(failed)
            for acknowledger, ok, bad in claim_acks(messages).values():
                try:
                    await call_ack(acknowledger, ok, bad)
                except Exception:
                    _log.exception("%s: acknowledger %r failed", self._handlers.name, acknowledger)
        finally:
            if self._flush_ids:
                for message in messages:
                    self._flush_ids.discard(id(message))
            self._demand.settle(len(messages), batched=batched)
