"""A bounded FIFO mailbox with one reader (the server's task) and waiting writers."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from underway.errors import MailboxFull, ServerExited


class Mailbox:
    """Messages in arrival order; at most ``size`` of them, except :meth:`force`'d ones."""

    __slots__ = ("_putters", "_reader", "closed", "items", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self.items: deque[Any] = deque()
        self.closed: ServerExited | None = None
        self._putters: deque[asyncio.Future[None]] = deque()
        self._reader: asyncio.Future[None] | None = None

    def put_nowait(self, item: Any) -> None:
        """Append ``item``.

        Raises:
            MailboxFull: No room.
        """
        if len(self.items) >= self.size:
            raise MailboxFull(f"the mailbox is full ({self.size} messages)")
        self.items.append(item)
        self._wake_reader()

    async def put(self, item: Any) -> None:
        """Append ``item``, waiting for room first.

        Raises:
            ServerExited: The mailbox was closed while waiting.
        """
        while len(self.items) >= self.size:
            if self.closed is not None:
                raise self._closed_error()
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake_putter()  # pass the room on
                else:
                    self._putters.remove(waiter)
                raise
        if self.closed is not None:
            raise self._closed_error()
        self.items.append(item)
        self._wake_reader()

    def force(self, item: Any) -> None:
        """Append ``item`` even past the size (for the stop marker)."""
        self.items.append(item)
        self._wake_reader()

    def take(self) -> Any:
        """Remove and return the oldest message (there must be one)."""
        item = self.items.popleft()
        if self._putters:
            self._wake_putter()
        return item

    async def wait(self) -> None:
        """Wait until a message arrives or :meth:`wake` is called."""
        reader = self._reader = asyncio.get_running_loop().create_future()
        try:
            await reader
        finally:
            self._reader = None

    def wake(self) -> None:
        """Let :meth:`wait` return without a message."""
        self._wake_reader()

    def close(self, error: ServerExited) -> list[Any]:
        """Refuse further messages with ``error``; return those left unread."""
        self.closed = error
        left = list(self.items)
        self.items.clear()
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the writer sees ``closed`` and raises
        return left

    def _closed_error(self) -> ServerExited:
        closed = self.closed
        assert closed is not None
        error = ServerExited(str(closed), closed.reason)
        error.__cause__ = closed.__cause__
        return error

    def _wake_reader(self) -> None:
        reader = self._reader
        if reader is not None and not reader.done():
            reader.set_result(None)

    def _wake_putter(self) -> None:
        while self._putters:
            waiter = self._putters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
