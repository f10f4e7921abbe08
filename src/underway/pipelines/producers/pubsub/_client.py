"""Opening the Pub/Sub subscriber client, and which of its errors are outages.

The client is the asyncio GAPIC client, :class:`google.pubsub_v1.SubscriberAsyncClient`.
For an emulator (``emulator_host=``, else ``PUBSUB_EMULATOR_HOST``) it talks over an
insecure gRPC channel with no credentials, so a test needs no process environment.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import grpc
from google.api_core import exceptions as gexc
from google.api_core.client_options import ClientOptions
from google.auth.credentials import Credentials
from google.pubsub_v1 import SubscriberAsyncClient
from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcAsyncIOTransport

__all__ = [
    "OUTAGE_ERRORS",
    "REFUSED_ERRORS",
    "Outage",
    "close_client",
    "endpoint",
    "open_client",
]

_log = logging.getLogger("underway.pipelines.pubsub")

#: Errors after which a call is retried later: the service or the network is down or busy.
OUTAGE_ERRORS: tuple[type[BaseException], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.Aborted,
    gexc.ResourceExhausted,
    gexc.Unknown,
    gexc.RetryError,
    gexc.Cancelled,
    grpc.RpcError,
    OSError,
    TimeoutError,
)
#: Errors that say the request cannot succeed as it is (missing, forbidden, malformed).
REFUSED_ERRORS: tuple[type[BaseException], ...] = (
    gexc.NotFound,
    gexc.PermissionDenied,
    gexc.Unauthenticated,
    gexc.InvalidArgument,
    gexc.FailedPrecondition,
)


def emulator_address(emulator_host: str | None) -> str | None:
    """``emulator_host``, else ``$PUBSUB_EMULATOR_HOST``, else ``None`` (the real service)."""
    return emulator_host or os.environ.get("PUBSUB_EMULATOR_HOST") or None


def endpoint(emulator_host: str | None, client_options: Mapping[str, Any] | None) -> str:
    """The address the client talks to, for messages."""
    host = emulator_address(emulator_host)
    if host:
        return f"the Pub/Sub emulator at {host}"
    custom = (client_options or {}).get("api_endpoint")
    return f"Pub/Sub at {custom}" if custom else "Pub/Sub (pubsub.googleapis.com)"


def open_client(
    emulator_host: str | None,
    client_options: Mapping[str, Any] | None,
    credentials: Credentials | None,
) -> SubscriberAsyncClient:
    """A subscriber client for the emulator or for the service (call in the running loop)."""
    host = emulator_address(emulator_host)
    if host:
        channel = grpc.aio.insecure_channel(host)
        return SubscriberAsyncClient(transport=SubscriberGrpcAsyncIOTransport(channel=channel))
    options = ClientOptions(**dict(client_options)) if client_options else None
    return SubscriberAsyncClient(credentials=credentials, client_options=options)


async def close_client(client: SubscriberAsyncClient) -> None:
    """Close the client's channel."""
    close: Callable[[], Awaitable[None]] = client.transport.close
    await close()


class Outage:
    """Logs a failing service once when the failures start, and once when they end."""

    def __init__(self, where: str, subscription: str) -> None:
        self.where = where
        self.subscription = subscription
        self.since: float | None = None
        self.failures = 0
        self.unsettled = 0

    def failed(self, doing: str, exc: BaseException, retry_in: float) -> None:
        """Note that ``doing`` failed with ``exc``; the caller retries in ``retry_in`` s."""
        self.failures += 1
        if self.since is None:
            self.since = time.monotonic()
            _log.warning(
                "%s failed while %s for subscription %r (%s: %s); retrying with backoff "
                "(first in %.3g s)",
                self.where,
                doing,
                self.subscription,
                type(exc).__name__,
                exc,
                retry_in,
            )
        else:
            _log.debug("%s still failing while %s: %r", self.where, doing, exc)

    def gave_up(self, count: int) -> None:
        """Note that ``count`` messages could not be settled during this outage."""
        self.unsettled += count

    def recovered(self) -> None:
        """Note that a call succeeded."""
        if self.since is not None:
            _log.info(
                "%s works again for subscription %r after %.1f s (%d failed call(s); %d "
                "message(s) could not be settled meanwhile and come again after their ack "
                "deadline)",
                self.where,
                self.subscription,
                time.monotonic() - self.since,
                self.failures,
                self.unsettled,
            )
            self.since = None
            self.failures = self.unsettled = 0
