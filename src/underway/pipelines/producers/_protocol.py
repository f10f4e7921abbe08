"""What a pipeline asks of a producer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from underway.pipelines.message import Message

__all__ = ["Producer"]


@runtime_checkable
class Producer(Protocol):
    """A source of messages. ``fetch`` returns at most ``demand`` messages.

    ``fetch`` may wait until messages are available. It is cancelled on shutdown, so
    messages it has not returned must stay with the broker; with ``producer_concurrency``
    above 1 it is called concurrently. Optional hooks, plain or ``async``, all awaited by
    the pipeline:

    - ``prepare_for_start(capacity)`` before the first fetch, with the most messages the
      pipeline holds at once (a push-based broker sets its prefetch from it);
    - ``prepare_for_draining()`` when the pipeline starts to drain: stop taking messages;
    - ``close()`` once every message was acknowledged, or the shutdown bound ran out.
    """

    async def fetch(self, demand: int) -> Sequence[Message]:
        """Return between 1 and ``demand`` messages, waiting for them if needed."""
        ...
