"""Consume a Google Cloud Pub/Sub subscription with unary pulls bounded by the demand.

Install the extra: ``pip install underway[pubsub]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Mapping
from typing import Any

from google.api_core import exceptions as gexc
from google.auth.credentials import Credentials
from google.auth.exceptions import GoogleAuthError
from google.pubsub_v1 import ReceivedMessage, SubscriberAsyncClient

from underway.errors import ConfigError
from underway.pipelines.message import Message
from underway.pipelines.producers._leases import LeaseKeeper
from underway.pipelines.producers.pubsub._acks import PubSubAcknowledger
from underway.pipelines.producers.pubsub._client import (
    OUTAGE_ERRORS,
    REFUSED_ERRORS,
    Outage,
    close_client,
    endpoint,
    open_client,
)
from underway.pipelines.producers.pubsub._policy import (
    MAX_DEADLINE,
    MIN_DEADLINE,
    FailurePolicy,
    OnFailure,
    check_delay,
    subscription_path,
)
from underway.pipelines.producers.pubsub._pulls import Pulls, to_message

__all__ = ["PubSubProducer"]

_log = logging.getLogger("underway.pipelines.pubsub")

#: Most messages one pull asks for (the service's own limit).
MAX_PULL = 1000
#: Seconds ``close`` waits for pulls under way before cancelling them.
_CLOSE_PULLS = 0.5
#: Seconds ``close`` gives the release (nack) of messages still held.
_CLOSE_RELEASE = 5.0


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number > 0, got {value!r}")
    return float(value)


class PubSubProducer:
    """A pipeline producer that pulls one Pub/Sub subscription.

    It uses unary ``Pull`` requests of the asyncio GAPIC client
    (:class:`google.pubsub_v1.SubscriberAsyncClient`), each asking for no more messages
    than the pipeline's demand (at most ``max_messages``), so a slow pipeline leaves the
    rest with the subscription. While a message is in flight its ack deadline is
    extended every ``ack_deadline / 2`` seconds, so a slow handler does not get it
    delivered twice.

    Each message's ``data`` is the payload (``bytes``), or ``decoder(payload)``; a payload
    the decoder rejects fails its message with :class:`~underway.errors.DecodeError`. Its
    ``metadata`` holds ``message_id``, ``publish_time``, ``attributes`` (a dict),
    ``ordering_key`` (``None`` when empty), ``ack_id`` (identifies the delivery to the
    acknowledger: do not change it) and ``delivery_attempt`` (counted by Pub/Sub only on
    a subscription with a dead-letter policy; ``None`` otherwise). A message with an
    ordering key gets it as ``message.ordering_key``, so the pipeline handles the
    messages of one key one at a time, in order. On a subscription with message ordering
    enabled, the producer's pulls go one at a time, each one's messages handed to the
    pipeline before the next pull starts: two concurrent pulls could answer in the
    opposite order to the one the service served them in. Keep ``producer_concurrency=1``
    there: more fetch loops take turns, each pulling only its share of the demand.

    Successes are acknowledged in bulk. A failure is settled per ``on_failure``, or per
    the message's ``message.configure_ack(on_failure=..., delay=...)``:

    - ``"nack"``: its ack deadline is set to 0, so it is delivered again now (after
      ``max_delivery_attempts``, a subscription's dead-letter policy moves it to the
      dead-letter topic);
    - ``"delay"``: delivered again after ``delay`` seconds (at most 600), or, with
      ``delay=None``, after a backoff of 10 s doubling with each ``delivery_attempt``
      (always 10 s without a dead-letter policy);
    - ``"ack"``: acknowledged, so dropped.

    Args:
        subscription: ``projects/PROJECT/subscriptions/NAME``, or a bare name with
            ``project``.
        project: The project of a bare subscription name.
        emulator_host: ``host:port`` of a Pub/Sub emulator, reached over an insecure
            channel without credentials; by default ``$PUBSUB_EMULATOR_HOST`` when set.
        client_options: Options of the client for the real service (such as
            ``{"api_endpoint": ...}``), as for ``google.api_core.ClientOptions``.
        credentials: Credentials for the real service; default: the environment's.
        decoder: Turns a payload into ``data``; ``None`` keeps the raw bytes.
        on_failure: ``"nack"``, ``"delay"`` or ``"ack"``.
        delay: Seconds a ``"delay"`` waits (0 to 600); ``None``: the backoff.
        ack_deadline: Seconds each lease extension grants (10 to 600); default: the
            subscription's ack deadline.
        max_messages: Most messages one pull asks for (1 to 1000).
        pull_timeout: Seconds one pull may wait for messages.
        connect_timeout: Seconds allowed to reach the service and find the subscription
            at start, and for each acknowledgement request.
        retry_interval: Seconds before the first retry after a failed pull; it doubles
            with each failure, up to ``max_retry_interval``.
        max_retry_interval: The longest wait between retries.

    Raises:
        ConfigError: An option is invalid.
    """

    def __init__(
        self,
        subscription: str,
        *,
        project: str | None = None,
        emulator_host: str | None = None,
        client_options: Mapping[str, Any] | None = None,
        credentials: Credentials | None = None,
        decoder: Callable[[bytes], Any] | None = None,
        on_failure: OnFailure = "nack",
        delay: float | None = None,
        ack_deadline: int | None = None,
        max_messages: int = MAX_PULL,
        pull_timeout: float = 30.0,
        connect_timeout: float = 10.0,
        retry_interval: float = 0.5,
        max_retry_interval: float = 30.0,
    ) -> None:
        self.subscription = subscription_path(subscription, project)
        if emulator_host is not None and (not isinstance(emulator_host, str) or not emulator_host):
            raise ConfigError(f"emulator_host must be 'host:port' or None, got {emulator_host!r}")
        if client_options is not None and not isinstance(client_options, Mapping):
            raise ConfigError(f"client_options must be a mapping, got {client_options!r}")
        if decoder is not None and not callable(decoder):
            raise ConfigError(f"decoder must be callable, got {decoder!r}")
        if ack_deadline is not None and (
            isinstance(ack_deadline, bool)
            or not isinstance(ack_deadline, int)
            or not MIN_DEADLINE <= ack_deadline <= MAX_DEADLINE
        ):
            raise ConfigError(
                f"ack_deadline must be an int from {MIN_DEADLINE} to {MAX_DEADLINE} or None, "
                f"got {ack_deadline!r}"
            )
        if (
            isinstance(max_messages, bool)
            or not isinstance(max_messages, int)
            or not 1 <= max_messages <= MAX_PULL
        ):
            raise ConfigError(
                f"max_messages must be an int from 1 to {MAX_PULL}, got {max_messages!r}"
            )
        self.policy = FailurePolicy(on_failure, check_delay(delay))
        self.emulator_host = emulator_host
        self.client_options = dict(client_options) if client_options is not None else None
        self.credentials = credentials
        self.decoder = decoder
        self.ack_deadline = ack_deadline
        self.max_messages = max_messages
        self.pull_timeout = _positive("pull_timeout", pull_timeout)
        self.connect_timeout = _positive("connect_timeout", connect_timeout)
        self.retry_interval = _positive("retry_interval", retry_interval)
        self.max_retry_interval = max(
            self.retry_interval, _positive("max_retry_interval", max_retry_interval)
        )
        self.where = endpoint(emulator_host, self.client_options)
        self._outage = Outage(self.where, self.subscription)
        self._keeper: LeaseKeeper[str] = LeaseKeeper(
            self._extend, interval=MIN_DEADLINE / 2, name=f"pubsub {self.subscription}"
        )
        self._acks = PubSubAcknowledger(
            self.subscription,
            self.policy,
            self._keeper,
            self._outage,
            retry_interval=self.retry_interval,
            timeout=self.connect_timeout,
        )
        self._client: SubscriberAsyncClient | None = None
        self._lease = ack_deadline or MIN_DEADLINE  # seconds each extension grants
        self._deadline = self._lease  # what the keeper's extension sets (0 at close)
        self._pulls = Pulls(self._acks, self.pull_timeout)
        self._draining = False
        # One pull at a time on an ordered subscription (set at start).
        self._pull_turn: contextlib.AbstractAsyncContextManager[Any] = contextlib.nullcontext()

    def __repr__(self) -> str:
        return f"PubSubProducer({self.subscription!r})"

    @property
    def held(self) -> int:
        """Messages handed to the pipeline whose settlement is not yet done (sent, or given
        up on)."""
        return len(self._keeper) + self._acks.settling

    @property
    def draining(self) -> bool:
        """Whether the producer stopped pulling (draining, or closed)."""
        return self._draining

    # -- pipeline hooks ----------------------------------------------------------------

    async def prepare_for_start(self, capacity: int) -> None:
        """Connect, check the subscription and start keeping leases.

        ``capacity`` is not needed: each pull asks for no more messages than the demand.

        Raises:
            ConfigError: The subscription does not exist, or the service refused it (wrong
                credentials, no permission), or no credentials were found.
            ConnectionError: The service cannot be reached within ``connect_timeout``.
        """
        if self._client is not None:
            raise RuntimeError(f"{self!r} is already started")
        self._draining = False
        try:
            client = open_client(self.emulator_host, self.client_options, self.credentials)
        except GoogleAuthError as exc:
            raise ConfigError(f"{self.where}: no usable credentials: {exc}") from exc
        try:
            async with asyncio.timeout(self.connect_timeout):
                found = await client.get_subscription(
                    subscription=self.subscription, retry=None, timeout=self.connect_timeout
                )
        except BaseException as exc:
            await asyncio.shield(close_client(client))
            raise self._start_error(exc) from exc
        self._lease = self.ack_deadline or found.ack_deadline_seconds or MIN_DEADLINE
        self._deadline = self._lease
        self._keeper.interval = self._lease / 2
        self._pull_turn = (
            asyncio.Lock() if found.enable_message_ordering else contextlib.nullcontext()
        )
        self._client = self._acks.client = client
        self._keeper.clear()
        self._keeper.start()

    def _start_error(self, exc: BaseException) -> BaseException:
        if isinstance(exc, gexc.NotFound):
            return ConfigError(
                f"Pub/Sub subscription {self.subscription!r} does not exist at {self.where}"
            )
        if isinstance(exc, REFUSED_ERRORS):
            return ConfigError(f"{self.where} refused subscription {self.subscription!r}: {exc}")
        if isinstance(exc, GoogleAuthError):
            return ConfigError(f"{self.where}: credentials for {self.subscription!r}: {exc}")
        if isinstance(exc, OUTAGE_ERRORS):
            return ConnectionError(
                f"cannot reach {self.where} within {self.connect_timeout:g}s to open "
                f"subscription {self.subscription!r}: {type(exc).__name__}: {exc}"
            )
        return exc

    async def fetch(self, demand: int) -> list[Message]:
        """Pull until there are messages; return between 1 and ``demand`` of them.

        Waits while the subscription is empty and while the service cannot be reached
        (retrying with backoff); once draining, waits until cancelled.
        """
        demand = max(1, demand)
        failures = 0
        while True:
            client = self._client
            if self._draining or client is None:
                await asyncio.get_running_loop().create_future()
                continue
            try:
                # On an ordered subscription the turn is held until the messages are
                # returned: the pipeline takes them in before another pull starts.
                async with self._pull_turn:
                    received = await self._pulls.pull(client, min(demand, self.max_messages))
                    messages = self._received(received)
            except gexc.DeadlineExceeded:
                continue  # a long poll that found nothing
            except (*REFUSED_ERRORS, *OUTAGE_ERRORS) as exc:
                pause = min(self.max_retry_interval, self.retry_interval * 2**failures)
                failures += 1
                self._outage.failed("pulling", exc, pause)
                await asyncio.sleep(pause)
                continue
            failures = 0
            if messages:
                return messages

    def _received(self, received: list[ReceivedMessage]) -> list[Message]:
        """The messages to hand out of a pull's answer (none when draining began)."""
        self._outage.recovered()
        if not received:
            return []
        if self.draining:  # began during the pull
            self._pulls.release([r.ack_id for r in received])
            return []
        self._keeper.add(r.ack_id for r in received)
        return [to_message(r, self.decoder, self._acks) for r in received]

    async def prepare_for_draining(self) -> None:
        """Stop pulling: messages of pulls still under way are released (nacked)."""
        self._draining = True

    async def close(self) -> None:
        """Stop keeping leases, release unsettled messages (nack) and disconnect.

        Pulls under way get a moment to end (their messages are released), then are
        cancelled; messages a cancelled pull had taken come again after their ack deadline.
        """
        self._draining = True
        await self._keeper.stop()
        await self._pulls.end_pulls(_CLOSE_PULLS)
        if len(self._keeper) and self._client is not None:
            self._deadline = 0  # the keeper's extension now releases what it holds
            try:
                async with asyncio.timeout(_CLOSE_RELEASE):
                    await self._keeper.extend_now()
            except TimeoutError:
                _log.warning("releasing the messages still held by %r timed out", self)
        self._keeper.clear()
        await self._pulls.end_releases(_CLOSE_RELEASE)
        client, self._client = self._client, None
        self._acks.client = None
        if client is not None:
            await close_client(client)

    async def _extend(self, ack_ids: list[str]) -> None:
        if self._deadline == 0:  # closing: release what is still held
            await self._acks.extend(ack_ids, 0)
            return
        try:
            await self._acks.extend(ack_ids, self._deadline)
        except OUTAGE_ERRORS as exc:  # the outage's one log line, shared with the pulls
            self._outage.failed("extending ack deadlines", exc, self._keeper.interval)
            return
        self._outage.recovered()
