"""A pipeline's user callbacks, each run with telemetry and its failures confined.

An exception in ``handle_message`` or ``prepare_messages`` fails only the messages it was
given, one in ``handle_batch`` fails its batch, and one in ``handle_failed`` is logged: the
acknowledgement still happens. Whatever object a callback returns, the message the
pipeline received stays the one acknowledged.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from underway import _telemetry as telemetry
from underway.pipelines import _hooks as hooks
from underway.pipelines.message import BatchInfo, Message

__all__ = [
    "HandleBatch",
    "HandleFailed",
    "HandleMessage",
    "Handlers",
    "PrepareMessages",
    "carry_over",
    "maybe_await",
]

_log = logging.getLogger("underway.pipelines")
_NO_HOOKS = contextlib.nullcontext()

HandleMessage = Callable[[Message], "Message | Awaitable[Message | None] | None"]
HandleBatch = Callable[[str, list[Message], BatchInfo], "Awaitable[None] | None"]
HandleFailed = Callable[[list[Message]], "Awaitable[None] | None"]
PrepareMessages = Callable[[list[Message]], "list[Message] | Awaitable[list[Message]]"]


async def maybe_await(value: Any) -> Any:
    """``await value`` when it is awaitable, else ``value``."""
    if inspect.isawaitable(value):
        return await value
    return value


class Handlers:
    """Runs the user's callbacks of the pipeline called ``name``."""

    def __init__(
        self,
        name: str,
        handle_message: HandleMessage,
        handle_batch: HandleBatch | None,
        handle_failed: HandleFailed | None,
        prepare_messages: PrepareMessages | None,
    ) -> None:
        self.name = name
        self.handle_message = handle_message
        self._message_is_async = inspect.iscoroutinefunction(handle_message)
        self._warned = False
        self.handle_batch = handle_batch
        self.handle_failed = handle_failed
        self.prepare_messages = prepare_messages

    def _meta(self, **extra: Any) -> dict[str, Any]:
        return {"pipeline": self.name, **extra} if telemetry.enabled() else {}

    async def prepare(self, chunk: list[Message]) -> None:
        """Run ``prepare_messages`` on ``chunk``; fail the whole chunk if it misbehaves."""
        assert self.prepare_messages is not None
        try:
            prepared = list(await maybe_await(self.prepare_messages(list(chunk))))
        except Exception as exc:
            for message in chunk:
                message.failed(exc)
            return
        if len(prepared) != len(chunk) or not all(isinstance(m, Message) for m in prepared):
            error = ValueError(
                f"prepare_messages returned {len(prepared)} item(s) for {len(chunk)} "
                f"message(s); it must return one Message per message given, in order"
            )
            for message in chunk:
                message.failed(error)
            return
        for message, result in zip(chunk, prepared, strict=True):
            carry_over(result, message)

    async def messages(self, chunk: list[Message]) -> None:
        """Run ``handle_message`` on each message of ``chunk`` not failed yet, in order.

        An exception fails its message only. This loop runs for every message a
        pipeline handles, so the handler is called from it directly (no coroutine per
        message but the handler's own) and a span is opened only while a telemetry
        handler is attached to its events.
        """
        handle = self.handle_message if self._message_is_async else self._call_sync
        attached = telemetry.attached  # tested per message: one may be attached mid-chunk
        hooked = hooks.message_hooks  # likewise
        for message in chunk:
            if message.status == "failed":
                continue
            if hooked:
                await self._hooked(handle, message)
                continue
            try:
                if attached:
                    with telemetry.span("pipeline.message", self._meta()):
                        result = await handle(message)  # type: ignore[misc]
                else:
                    result = await handle(message)  # type: ignore[misc]
            except Exception as exc:
                message.failed(exc)
                continue
            if result is not None and result is not message:
                self._returned(result, message)

    async def _hooked(self, handle: Callable[[Message], Any], message: Message) -> None:
        """Run ``handle`` on one message inside the message hooks, as :meth:`messages` runs it."""
        with hooks.around_message(self.name, message):
            try:
                if telemetry.attached:
                    with telemetry.span("pipeline.message", self._meta()):
                        result = await handle(message)
                else:
                    result = await handle(message)
            except Exception as exc:
                message.failed(exc)
                return
            if result is not None and result is not message:
                self._returned(result, message)

    async def _call_sync(self, message: Message) -> Any:
        """Call a plain ``handle_message``; await what it returns if that is awaitable."""
        result = self.handle_message(message)
        if result is not None and not isinstance(result, Message):
            result = await maybe_await(result)
        return result

    def _returned(self, result: object, message: Message) -> None:
        """Take what ``handle_message`` returned for ``message`` (another object or value)."""
        if isinstance(result, Message):
            carry_over(result, message)
        elif not self._warned:
            self._warned = True
            _log.warning(
                "%s: handle_message returned a %s, which is ignored: return the message "
                "(or another Message, or None)",
                self.name,
                type(result).__name__,
            )

    async def batch(self, batch: list[Message], info: BatchInfo) -> None:
        """Run ``handle_batch``; an exception fails every message of the batch."""
        assert self.handle_batch is not None
        try:
            around = hooks.around_batch(self.name, batch, info) if hooks.batch_hooks else _NO_HOOKS
            with telemetry.span("pipeline.batch", self._meta(batcher=info.batcher)) as extra:
                extra["size"] = info.size
                with around:
                    await maybe_await(self.handle_batch(info.batcher, list(batch), info))
        except Exception as exc:
            for message in batch:
                if not message.is_failed:
                    message.failed(exc)

    async def failed(self, failed: list[Message]) -> None:
        """Run ``handle_failed`` (if any); an exception is logged, never raised."""
        if self.handle_failed is None:
            return
        try:
            with telemetry.span("pipeline.handle_failed", self._meta()) as extra:
                extra["count"] = len(failed)
                await maybe_await(self.handle_failed(failed))
        except Exception:
            _log.exception("%s: handle_failed raised; acknowledging anyway", self.name)


def carry_over(result: Message, message: Message) -> None:
    """Copy what a user function set on ``result``, another object, onto ``message``.

    ``message`` stays the one acknowledged: its metadata and acknowledger identify the
    delivery. It counts as acked when either was acked through that acknowledger.
    """
    if result is message:
        return
    message.data = result.data
    message.batcher = result.batcher
    message.batch_key = result.batch_key
    message.status = result.status
    message.reason = result.reason
    message.ack_options = result.ack_options
    if result.acked and result.acknowledger is message.acknowledger:
        message.acked = True
