"""Hooks around handling messages and batches: the way in for instrumentation.

Both lists are empty unless an instrumentation (such as :mod:`underway.otel`) registers a
hook; the processors test the list and do nothing more while it is empty. A hook is a
callable returning a context manager entered before the user's callback runs and exited
after it, in the processor's task, so what the hook makes current (a span) is current in
the callback; hooks registered later are entered later, inside the earlier ones. A hook
that raises is logged and ignored (see :mod:`underway._hooks`): it never fails a message
or a batch.

- A message hook is called as ``hook(pipeline, message)`` around ``handle_message``. It
  never sees the callback's exception: on exit the message's ``status`` and ``reason``
  tell how it went (an exception raised has failed the message with it as the reason).
- A batch hook is called as ``hook(pipeline, messages, info)`` around ``handle_batch``;
  an exception the callback raised goes through it (and then fails the whole batch).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager

from underway._hooks import enter_guarded
from underway.pipelines.message import BatchInfo, Message

__all__ = [
    "BatchHook",
    "MessageHook",
    "around_batch",
    "around_message",
    "batch_hooks",
    "message_hooks",
]

MessageHook = Callable[[str, Message], AbstractContextManager[object]]
BatchHook = Callable[[str, list[Message], BatchInfo], AbstractContextManager[object]]

#: Entered around ``handle_message`` for each message.
message_hooks: list[MessageHook] = []
#: Entered around ``handle_batch`` for each batch.
batch_hooks: list[BatchHook] = []


@contextmanager
def around_message(pipeline: str, message: Message) -> Iterator[None]:
    """Enter every message hook around the block, the first registered outermost."""
    with ExitStack() as stack:
        enter_guarded(stack, list(message_hooks), pipeline, message)
        yield


@contextmanager
def around_batch(pipeline: str, batch: list[Message], info: BatchInfo) -> Iterator[None]:
    """Enter every batch hook around the block, the first registered outermost."""
    with ExitStack() as stack:
        enter_guarded(stack, list(batch_hooks), pipeline, batch, info)
        yield
