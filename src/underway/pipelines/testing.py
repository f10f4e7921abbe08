# ruff: noqa: PT028
"""Helpers to test a pipeline's handlers: push data in, await how it was acknowledged."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal

from underway.pipelines.message import Message
from underway.pipelines.pipeline import Pipeline

__all__ = ["test_batch", "test_message"]

BatchMode = Literal["flush", "bulk"]


class _Collector:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.successful: list[Message] = []
        self.failed: list[Message] = []
        self.seen: set[int] = set()
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def ack(self, successful: Sequence[Message], failed: Sequence[Message]) -> None:
        for message in [*successful, *failed]:
            if id(message) in self.seen:
                raise AssertionError(f"message acknowledged twice: {message!r}")
            self.seen.add(id(message))
        self.successful.extend(successful)
        self.failed.extend(failed)
        if len(self.seen) >= self.expected and not self.done.done():
            self.done.set_result(None)


async def _run(
    pipeline: Pipeline,
    data: Sequence[Any],
    metadata: dict[str, Any] | None,
    batch_mode: BatchMode,
    timeout: float,
) -> tuple[list[Message], list[Message]]:
    collector = _Collector(len(data))
    messages = [
        Message(data=item, metadata=dict(metadata or {}), acknowledger=collector) for item in data
    ]
    pipeline.push_messages(messages, flush=batch_mode == "flush")
    if messages:
        await asyncio.wait_for(asyncio.shield(collector.done), timeout)
    return collector.successful, collector.failed


async def test_message(
    pipeline: Pipeline,
    data: Any,
    *,
    metadata: dict[str, Any] | None = None,
    batch_mode: BatchMode = "flush",
    timeout: float = 5.0,
) -> tuple[list[Message], list[Message]]:
    """Push one payload through a running pipeline and await its acknowledgement.

    In ``"flush"`` mode the message's batch is emitted as soon as it reaches its batcher.

    Returns:
        ``(successful, failed)`` messages.

    Raises:
        TimeoutError: The message was not acknowledged within ``timeout`` seconds.
    """
    return await _run(pipeline, [data], metadata, batch_mode, timeout)


async def test_batch(
    pipeline: Pipeline,
    data: Sequence[Any],
    *,
    metadata: dict[str, Any] | None = None,
    batch_mode: BatchMode = "bulk",
    timeout: float = 5.0,
) -> tuple[list[Message], list[Message]]:
    """Push payloads through a running pipeline together and await all acknowledgements.

    In ``"bulk"`` mode batches are cut by ``batch_size`` and ``batch_timeout`` as usual.

    Returns:
        ``(successful, failed)`` messages.

    Raises:
        TimeoutError: Not all were acknowledged within ``timeout`` seconds.
    """
    return await _run(pipeline, list(data), metadata, batch_mode, timeout)


test_message.__test__ = False  # type: ignore[attr-defined]
test_batch.__test__ = False  # type: ignore[attr-defined]
