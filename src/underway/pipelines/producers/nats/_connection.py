"""The NATS connection of a :class:`NATSProducer`: a bounded first connect, logged outages.

nats-py's own connect retries forever when reconnecting is allowed, and gives up at the
first failure when it is not. The producer wants both: at start, retry within
``connect_timeout`` and then fail with a :class:`ConnectionError` naming the servers (an
authorization error fails at once); once connected, let the client reconnect for as long
as it takes. The client's callbacks log an outage once when it starts and once when it
ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from nats.aio.client import Client
from nats.errors import AuthorizationError

__all__ = ["Connection", "Outage", "redact"]

_log = logging.getLogger("underway.pipelines.nats")


def redact(servers: Sequence[str]) -> str:
    """The server URLs, comma-separated, with any password replaced by ``***``."""
    shown: list[str] = []
    for url in servers:
        parts = urlsplit(url)
        if parts.password is not None:
            host = parts.netloc.rpartition("@")[2]
            parts = parts._replace(netloc=f"{parts.username}:***@{host}")
        shown.append(urlunsplit(parts))
    return ", ".join(shown)


def _refusal(exc: BaseException) -> bool:
    """Whether the server refused the credentials (nats-py reports it as a plain error)."""
    text = str(exc).lower()
    return isinstance(exc, AuthorizationError) or (
        "authorization violation" in text or "authentication" in text
    )


class Outage:
    """Logs a lost connection once, when it starts, and once more when it ends."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.since: float | None = None
        #: Counts the outages so far: a failure seen after it changed is one of them.
        self.epoch = 0

    def failed(self, doing: str, exc: BaseException | None = None) -> None:
        """Note that ``doing`` failed (with ``exc``, if any)."""
        cause = "" if exc is None else f" ({type(exc).__name__}: {exc})"
        if self.since is None:
            self.since = time.monotonic()
            self.epoch += 1
            _log.warning("NATS at %s: %s%s; retrying", self.where, doing, cause)
        else:
            _log.debug("NATS at %s: still failing: %s%s", self.where, doing, cause)

    def recovered(self) -> None:
        """Note that the connection works again."""
        if self.since is not None:
            _log.info(
                "NATS at %s: working again after %.1f s", self.where, time.monotonic() - self.since
            )
            self.since = None


class Connection:
    """One client connection, opened within a bound, reconnecting once open.

    Args:
        servers: NATS server URLs.
        name: The connection's name (shown by the server's monitoring).
        connect_timeout: Seconds allowed for the first connection.
        reconnect_time_wait: Seconds between reconnection attempts.
        options: More keyword arguments for nats-py's ``connect`` (TLS, credentials...).
    """

    def __init__(
        self,
        servers: Sequence[str],
        *,
        name: str,
        connect_timeout: float,
        reconnect_time_wait: float,
        options: Mapping[str, Any],
    ) -> None:
        self.servers = list(servers)
        self.name = name
        self.connect_timeout = connect_timeout
        self.reconnect_time_wait = reconnect_time_wait
        self.options = dict(options)
        self.outage = Outage(redact(self.servers))
        self.client: Client | None = None
        self._last_error: BaseException | None = None
        self._refused: asyncio.Future[BaseException] | None = None
        self._closing = False

    async def open(self) -> Client:
        """Connect, retrying within ``connect_timeout``.

        Raises:
            ConnectionError: No server answered in time, or one refused the credentials.
        """
        loop = asyncio.get_running_loop()
        self._closing = False
        self._refused = loop.create_future()
        client = Client()
        connecting = loop.create_task(
            client.connect(
                self.servers,
                name=self.name,
                error_cb=self._on_error,
                disconnected_cb=self._on_disconnected,
                reconnected_cb=self._on_reconnected,
                allow_reconnect=True,
                max_reconnect_attempts=-1,
                connect_timeout=max(1, round(self.connect_timeout)),
                reconnect_time_wait=self.reconnect_time_wait,  # type: ignore[arg-type]
                **self.options,
            ),
            name=f"underway-nats-connect-{self.name}",
        )
        try:
            waited: set[asyncio.Future[Any]] = {connecting, self._refused}
            done, _ = await asyncio.wait(
                waited,
                timeout=self.connect_timeout,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:
            await self._abandon(client, connecting)
            raise
        if connecting not in done or connecting.exception() is not None:
            cause = (
                self._refused.result()
                if self._refused.done()
                else (connecting.exception() if connecting.done() else self._last_error)
            )
            await self._abandon(client, connecting)
            within = "" if self._refused.done() else f" within {self.connect_timeout:g}s"
            detail = "no answer" if cause is None else f"{type(cause).__name__}: {cause}"
            raise ConnectionError(
                f"cannot connect to NATS at {redact(self.servers)}{within}: {detail}"
            ) from cause
        self._refused.cancel()
        self.client = client
        return client

    async def _abandon(self, client: Client, connecting: asyncio.Task[None]) -> None:
        connecting.cancel()
        with contextlib.suppress(BaseException):
            await connecting
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.close(), 5.0)

    async def close(self) -> None:
        """Close the connection (buffered publications are flushed first, within a bound)."""
        self._closing = True
        client, self.client = self.client, None
        if client is None or client.is_closed:
            return
        try:
            await asyncio.wait_for(client.close(), 5.0)
        except (TimeoutError, Exception) as exc:
            _log.debug("closing the NATS connection failed: %r", exc)

    async def _on_error(self, exc: Exception) -> None:
        self._last_error = exc
        refused = self._refused
        if _refusal(exc) and refused is not None and not refused.done():
            refused.set_result(exc)
            return
        _log.debug("NATS connection error: %r", exc)

    async def _on_disconnected(self) -> None:
        if not self._closing and self.client is not None:
            self.outage.failed("connection lost")

    async def _on_reconnected(self) -> None:
        self.outage.recovered()
