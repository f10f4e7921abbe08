"""Settling: failed messages to ``handle_failed``, then every message acknowledged once."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from underway import _telemetry as telemetry
from underway.pipelines._handlers import Handlers
from underway.pipelines._topology.demand import Demand
from underway.pipelines.message import Acknowledger, Message, call_ack, claim_acks

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
            if telemetry.attached:
                self._report(len(messages) - len(failed), len(failed), batched)
            if failed:
                await self._handlers.failed(failed)
            for acknowledger, ok, bad in claim_acks(messages).values():
                await self._ack(acknowledger, ok, bad)
        finally:
            self._done(messages, batched)

    async def settle_successful(self, messages: list[Message], acknowledger: Acknowledger) -> None:
        """Settle handled messages that all succeeded, none acked yet, of one acknowledger.

        What :meth:`settle` does, in one pass and one call (the usual chunk).
        """
        try:
            for message in messages:
                message.acked = True
            if telemetry.attached:
                self._report(len(messages), 0, False)
            await self._ack(acknowledger, messages, ())
        finally:
            self._done(messages, False)

    async def _ack(
        self, acknowledger: Acknowledger, ok: Sequence[Message], bad: Sequence[Message]
    ) -> None:
        try:
            await call_ack(acknowledger, ok, bad)
        except Exception:
            _log.exception("%s: acknowledger %r failed", self._handlers.name, acknowledger)

    def _report(self, ok: int, failed: int, batched: bool) -> None:
        """Emit ``pipeline.settled``: how many messages ended ok and failed, and where."""
        stage = "batch_processor" if batched else "processor"
        metadata = {"pipeline": self._handlers.name, "stage": stage}
        telemetry.emit("pipeline.settled", {"ok": ok, "failed": failed}, metadata)

    def _done(self, messages: list[Message], batched: bool) -> None:
        if self._flush_ids:
            for message in messages:
                self._flush_ids.discard(id(message))
        self._demand.settle(len(messages), batched=batched)
