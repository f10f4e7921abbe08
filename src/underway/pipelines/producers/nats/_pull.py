"""The pull requests of a :class:`NATSProducer`, answered on an inbox of its own.

A pull request asks the durable consumer for up to ``size`` messages within ``expires``
seconds; the server sends them, as they come, to the request's reply subject, and ends the
request with a status (``404``/``408``: no more; ``409``: refused, e.g. a batch above the
consumer's ``max_batch``) unless it delivered them all. Every delivery is handed to
``deliver`` as soon as the connection reads it, never kept in a list of a call that could be
cancelled: a pipeline that stops while a pull is under way loses nothing.

One request is under way at a time, so :class:`Pulls` knows how many messages it may still
bring (:attr:`Pulls.owed`); the producer pulls no more than the demand minus that.
:meth:`Pulls.stop` tells the server that the inbox is gone, waits for the server to confirm
it (so every message it sent first has been read) and hands those to ``deliver`` too.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import Error as NATSError

__all__ = ["Pulls", "remaining"]

_log = logging.getLogger("underway.pipelines.nats")

_GRACE = 1.0  # seconds past a request's expiry before it is deemed unanswered
_STATUS, _DESCRIPTION = "Status", "Description"
_ENDED = ("404", "408")  # no messages / request timeout: the request is over, normally


@dataclass
class _Request:
    reply: str
    owed: int
    deadline: float
    answered: bool = False


class Pulls:
    """The pull request under way for one durable consumer, if any.

    Args:
        client: The connection.
        stream: The stream's name.
        durable: The durable consumer's name.
        expires: Seconds the server keeps one request open.
        deliver: Called with each message delivered (in order, on the connection's task).
    """

    def __init__(
        self,
        client: Client,
        stream: str,
        durable: str,
        *,
        expires: float,
        deliver: Callable[[Msg], None],
    ) -> None:
        self.client = client
        self.expires = expires
        self._deliver = deliver
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self._inbox = client.new_inbox()
        self._sub: Subscription | None = None
        self._current: _Request | None = None
        self._count = 0
        self._changed = asyncio.Event()
        #: The status of the last request the server refused (``409 ...``), until read.
        self.refused: str | None = None
        #: Whether a request ran out with no answer at all, until cleared.
        self.unanswered = False

    async def start(self) -> None:
        """Subscribe to the inbox."""
        self._sub = await self.client.subscribe(f"{self._inbox}.*", cb=self._on_msg)

    @property
    def under_way(self) -> bool:
        """Whether a request is under way."""
        return self._current is not None

    @property
    def owed(self) -> int:
        """Messages the request under way may still bring."""
        return 0 if self._current is None else self._current.owed

    @property
    def changed(self) -> asyncio.Event:
        """Set at the next delivery or end of a request (take it before looking at state)."""
        return self._changed

    @property
    def deadline(self) -> float | None:
        """When the request under way is deemed unanswered (``None``: none under way)."""
        return None if self._current is None else self._current.deadline

    async def request(self, size: int) -> None:
        """Ask for up to ``size`` messages (none must be under way).

        Raises:
            nats.errors.Error: The request could not be sent (the connection is closed, or
                its buffer is full while reconnecting).
        """
        self._count += 1
        request = _Request(
            f"{self._inbox}.{self._count}", size, time.monotonic() + self.expires + _GRACE
        )
        self._current = request  # before it is sent: a concurrent caller sees it
        payload = json.dumps({"batch": size, "expires": int(self.expires * 1e9)}).encode()
        try:
            await self.client.publish(self._next_subject, payload, reply=request.reply)
        except BaseException:
            if self._current is request:
                self._current = None
            raise

    def expire(self) -> None:
        """End the request under way if past its deadline (:attr:`unanswered` if silent)."""
        request = self._current
        if request is not None and request.deadline <= time.monotonic():
            self._current = None
            if not request.answered:
                self.unanswered = True

    async def stop(self, bound: float) -> None:
        """Close the inbox, handing over every message the server sent to it first."""
        sub, self._sub = self._sub, None
        if sub is None:
            return
        try:
            if self.client.is_connected:
                # Unsubscribes at the server, waits for its answer (everything it sent
                # before is read by then), then lets the callback take what is queued.
                await asyncio.wait_for(sub.drain(), bound)  # type: ignore[no-untyped-call]
            else:
                await asyncio.wait_for(sub.unsubscribe(), bound)
        except (NATSError, TimeoutError) as exc:
            _log.debug("closing the pull inbox %s failed: %r", self._inbox, exc)
        finally:
            self._current = None
            self._notify()

    async def _on_msg(self, msg: Msg) -> None:
        request = self._current
        if msg.reply and msg.reply.startswith("$JS.ACK."):
            # A delivery keeps its own subject: it counts against the request under way.
            if request is not None:
                request.answered = True
                request.owed -= 1
                if request.owed <= 0:
                    self._current = None
            self._deliver(msg)
        else:
            headers = msg.headers or {}
            status = headers.get(_STATUS)
            if status == "100" or request is None or msg.subject != request.reply:
                return  # a heartbeat (none is asked for), or the end of an older request
            self._current = None
            if status not in _ENDED:
                self.refused = f"{status} {headers.get(_DESCRIPTION, '')}".strip()
        self._notify()

    def _notify(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()


def remaining(deadline: float | None, default: float) -> float:
    """Seconds until ``deadline`` (at least a millisecond), or ``default`` without one."""
    if deadline is None:
        return default
    return max(0.001, deadline - time.monotonic())
