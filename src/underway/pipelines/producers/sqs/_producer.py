"""Consume an Amazon SQS queue with long polling, batched deletes and kept visibility.

Install the extra: ``pip install underway[sqs]`` (aiobotocore).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Callable, Coroutine, Iterable
from typing import Any
from urllib.parse import urlsplit

from aiobotocore.config import AioConfig
from aiobotocore.session import AioSession, get_session

from underway.errors import ConfigError
from underway.pipelines.message import Message, decode_message
from underway.pipelines.producers._leases import LeaseKeeper
from underway.pipelines.producers.sqs._acks import (
    SettlePolicy,
    SQSAcknowledger,
    log_entry_failures,
)
from underway.pipelines.producers.sqs._outage import Outage
from underway.pipelines.producers.sqs._policy import (
    BATCH_SIZE,
    MAX_VISIBILITY,
    ON_FAILURE,
    OnFailure,
    RecentIds,
    check_backoff,
    retry_delay,
)
from underway.pipelines.producers.sqs._queue import (
    CALL_ERRORS,
    TRANSIENT_ERRORS,
    QueueOps,
    start_error,
)

__all__ = ["SQSProducer"]

_log = logging.getLogger("underway.pipelines.sqs")

#: Seconds ``close`` waits for receives a cancelled fetch left running, and give-backs.
_CLOSE_GRACE = 2.0
#: Seconds between empty receives without long polling (``wait_time_seconds=0``).
_SHORT_POLL_PAUSE = 0.05
#: How many ids of deleted messages are remembered, so a late duplicate is not handled.
_DELETED_MEMORY = 10_000
_REGION_IN_HOST = re.compile(r"^(?:sqs\.)?([a-z]{2}(?:-[a-z]+)+-\d+)\.")


class SQSProducer:
    """A pipeline producer that consumes one SQS queue (standard or FIFO).

    Each message's ``data`` is its body (``str``), or ``decoder(body)``; a body the
    decoder rejects fails its message with :class:`~underway.errors.DecodeError`. Its
    ``metadata`` holds ``message_id`` (identifies the message to the acknowledger: do not
    change it), ``receipt_handle``, ``attributes`` (the system attributes:
    ``ApproximateReceiveCount``, ``SentTimestamp``, ``MessageGroupId``...),
    ``message_attributes``, ``receive_count`` (an ``int``) and ``group_id`` (FIFO queues,
    else ``None``). On a FIFO queue ``message.ordering_key`` is the message group id, so
    the pipeline handles each group's messages one at a time, in order.

    Each fetch is one ``ReceiveMessage`` of up to ``min(demand, 10)`` messages that long
    polls for ``wait_time_seconds``; ``producer_concurrency`` runs several at once. While
    the pipeline holds a message its visibility timeout is extended every half of it (so
    a slow handler does not see its message delivered again). Successful messages are
    deleted with ``DeleteMessageBatch``; failed ones are settled per ``on_failure``, or
    per message with ``message.configure_ack(on_failure=..., delay=...)``:

    - ``"leave"``: nothing is sent; the message comes again once its visibility timeout
      runs out, and the queue's redrive policy moves it to its dead-letter queue after
      ``maxReceiveCount`` receives;
    - ``"retry_now"``: made visible again at once (visibility timeout 0);
    - ``"backoff"``: made visible again after ``delay`` seconds, or by default after
      ``base * 2 ** (receive_count - 1)`` seconds at most ``max`` (``backoff``), capped
      at SQS's 12 hours;
    - ``"delete"``: deleted, so dropped.

    A delete that SQS refuses for a message (an expired receipt handle: the message was
    held past its visibility timeout) is logged, and that message comes again. A message
    received again while the pipeline still holds it (SQS delivers at least once) is not
    handed to the pipeline twice: its newest receipt handle is kept and used. When the
    pipeline drains, no receive is started any more; messages that a receive still under
    way returns are made visible again at once. A receive cut short by ``close`` may have
    taken messages at the server that never arrive: those come again after their
    visibility timeout.

    Args:
        queue_url: The queue's URL (``https://sqs.REGION.amazonaws.com/ACCOUNT/NAME``).
        region_name: AWS region; by default the one in ``queue_url``, else the session's.
        endpoint_url: SQS endpoint (a local server such as moto or ElasticMQ).
        aws_access_key_id: Credentials; by default the session's (environment, profile,
            instance role...).
        aws_secret_access_key: See ``aws_access_key_id``.
        aws_session_token: See ``aws_access_key_id``.
        session: An ``aiobotocore`` session to create the client with.
        client_config: An ``AioConfig`` merged over the producer's own (timeouts, pool).
        wait_time_seconds: Long polling of each receive, 0 to 20 seconds.
        visibility_timeout: Seconds a received message stays invisible, and to which it is
            extended; by default the queue's ``VisibilityTimeout``.
        decoder: Turns a body into ``data``; ``None`` keeps the ``str``.
        on_failure: ``"leave"``, ``"retry_now"``, ``"backoff"`` or ``"delete"``.
        backoff: ``(base, max)`` seconds of ``"backoff"``.
        connect_timeout: Seconds allowed to reach the queue at start.
        reconnect_interval: Seconds before retrying a call that failed; doubled after each
            failure in a row, up to ``max_reconnect_interval``.
        max_reconnect_interval: See ``reconnect_interval``.

    Raises:
        ConfigError: An option is invalid (``on_failure`` SQS cannot honour, such as
            ``"stop"``, included).
    """

    def __init__(
        self,
        queue_url: str,
        *,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        session: AioSession | None = None,
        client_config: AioConfig | None = None,
        wait_time_seconds: int = 20,
        visibility_timeout: int | None = None,
        decoder: Callable[[str], Any] | None = None,
        on_failure: OnFailure = "leave",
        backoff: tuple[float, float] = (10.0, 900.0),
        connect_timeout: float = 10.0,
        reconnect_interval: float = 1.0,
        max_reconnect_interval: float = 30.0,
    ) -> None:
        self.queue_url = _check_url("queue_url", queue_url)
        self.endpoint_url = (
            None if endpoint_url is None else _check_url("endpoint_url", endpoint_url)
        )
        self.region_name = region_name if region_name is not None else _region_of(queue_url)
        if (aws_access_key_id is None) != (aws_secret_access_key is None):
            raise ConfigError("aws_access_key_id and aws_secret_access_key go together")
        if session is not None and not isinstance(session, AioSession):
            raise ConfigError(f"session must be an aiobotocore AioSession, got {session!r}")
        if client_config is not None and not isinstance(client_config, AioConfig):
            raise ConfigError(f"client_config must be an AioConfig, got {client_config!r}")
        self.wait_time_seconds = _int_in("wait_time_seconds", wait_time_seconds, 0, 20)
        self.visibility_timeout = (
            None
            if visibility_timeout is None
            else _int_in("visibility_timeout", visibility_timeout, 1, MAX_VISIBILITY)
        )
        if decoder is not None and not callable(decoder):
            raise ConfigError(f"decoder must be callable, got {decoder!r}")
        if on_failure not in ON_FAILURE:
            raise ConfigError(
                f"on_failure={on_failure!r} cannot be honoured by SQS; one of {ON_FAILURE}"
            )
        for name, value in (
            ("connect_timeout", connect_timeout),
            ("reconnect_interval", reconnect_interval),
            ("max_reconnect_interval", max_reconnect_interval),
        ):
            if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
                raise ConfigError(f"{name} must be a number > 0, got {value!r}")
        self.decoder = decoder
        self.fifo = self.queue_url.rstrip("/").endswith(".fifo")
        self.connect_timeout = float(connect_timeout)
        self._credentials = {
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
        }
        self._session = session
        self._client_config = client_config
        self._policy = SettlePolicy(
            queue_url=self.queue_url,
            on_failure=on_failure,
            backoff=check_backoff(backoff),
            reconnect_interval=float(reconnect_interval),
            max_reconnect_interval=max(float(max_reconnect_interval), reconnect_interval),
        )
        self._held: dict[str, str] = {}
        self._keeper: LeaseKeeper[str] = LeaseKeeper(
            self._extend, interval=1.0, name=f"sqs {self.queue_url}"
        )
        self._outage = Outage(self.queue_url)
        self._deleted = RecentIds(_DELETED_MEMORY)
        self._extending: dict[str, asyncio.Future[None]] = {}
        self._acks = SQSAcknowledger(
            self._policy,
            self._held,
            self._keeper,
            self._outage,
            lambda: self._ops,
            self._deleted,
            self._extension_over,
        )
        self._ops: QueueOps | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self._receives: set[asyncio.Task[list[dict[str, Any]]]] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._visibility = self.visibility_timeout or 30
        self._draining = False

    def __repr__(self) -> str:
        return f"SQSProducer({self.queue_url!r})"

    @property
    def on_failure(self) -> OnFailure:
        """How failed messages are settled unless ``configure_ack`` says otherwise."""
        return self._policy.on_failure

    @property
    def held(self) -> int:
        """Messages handed to the pipeline and not yet settled."""
        return len(self._held)

    @property
    def draining(self) -> bool:
        """Whether the producer stopped receiving (draining or closed)."""
        return self._draining

    @property
    def visibility(self) -> int:
        """The visibility timeout in use (known once started)."""
        return self._visibility

    # -- pipeline hooks ----------------------------------------------------------------

    async def prepare_for_start(self, capacity: int) -> None:
        """Create the client and check the queue (``GetQueueAttributes``).

        ``capacity`` is not needed: each receive asks for no more than the demand.

        Raises:
            ConfigError: The queue does not exist, or SQS refused the credentials.
            ConnectionError: SQS did not answer within ``connect_timeout``.
        """
        if self._ops is not None:
            raise RuntimeError(f"{self!r} is already started")
        self._draining = False
        stack = contextlib.AsyncExitStack()
        try:
            async with asyncio.timeout(self.connect_timeout):
                client = await stack.enter_async_context(self._create_client())
                ops = QueueOps(client, self.queue_url)
                attributes = await ops.attributes()
        except BaseException as exc:
            await asyncio.shield(stack.aclose())
            error = start_error(exc, self.queue_url, self._endpoint())
            if isinstance(exc, TimeoutError):
                error = ConnectionError(
                    f"SQS at {self._endpoint()} did not answer within "
                    f"{self.connect_timeout:g}s for queue {self.queue_url}"
                )
            if error is None:
                raise
            raise error from exc
        self._visibility = self.visibility_timeout or int(attributes.get("VisibilityTimeout", 30))
        if self._visibility < 1:
            await stack.aclose()
            raise ConfigError(
                f"SQS queue {self.queue_url} has a visibility timeout of 0: set "
                "visibility_timeout (seconds) on the producer"
            )
        self.fifo = self.fifo or attributes.get("FifoQueue") == "true"
        self._stack, self._ops = stack, ops
        self._keeper.interval = self._visibility / 2
        self._keeper.start()

    async def fetch(self, demand: int) -> list[Message]:
        """Receive between 1 and ``min(demand, 10)`` messages, waiting for them if needed.

        While SQS cannot be reached, receives are retried with backoff. Once draining, no
        receive is started: waits until cancelled.
        """
        count = max(1, min(demand, BATCH_SIZE))
        failures = 0
        while True:
            ops = self._ops
            if self._draining or ops is None:
                await asyncio.get_running_loop().create_future()
                continue
            task = asyncio.get_running_loop().create_task(
                ops.receive(count, self.wait_time_seconds, self.visibility_timeout),
                name=f"underway-sqs-receive {self.queue_url}",
            )
            self._receives.add(task)
            task.add_done_callback(self._receives.discard)
            try:
                records = await asyncio.shield(task)
            except asyncio.CancelledError:
                task.add_done_callback(self._orphaned)
                raise
            except CALL_ERRORS as exc:
                failures += 1
                self._outage.failed("receiving messages", exc)
                policy = self._policy
                await asyncio.sleep(
                    retry_delay(failures, policy.reconnect_interval, policy.max_reconnect_interval)
                )
                continue
            failures = 0
            self._outage.recovered()
            if self.draining:
                self._give_back(records)
            elif messages := self._take(records):
                return messages
            elif self.wait_time_seconds == 0:
                await asyncio.sleep(_SHORT_POLL_PAUSE)  # no long polling: do not spin

    async def prepare_for_draining(self) -> None:
        """Start no more receives; what one under way returns is made visible again."""
        self._draining = True

    async def close(self) -> None:
        """Stop extending visibility and close the client.

        Receives left running by a cancelled fetch get a short grace (their messages are
        made visible again), then are cancelled. Messages still held were never settled:
        they come again once their visibility timeout runs out.
        """
        self._draining = True
        await _wait_for(self._receives | self._background, _CLOSE_GRACE)
        await _wait_for(self._background, _CLOSE_GRACE)  # give-backs of the last receives
        for task in self._receives | self._background:
            task.cancel()
        await _wait_for(self._receives | self._background, _CLOSE_GRACE)
        await self._keeper.stop()
        if self._held:
            _log.info(
                "SQS queue %s: %d unsettled message(s) left to the queue; they come again "
                "once their visibility timeout (%d s) runs out",
                self.queue_url,
                len(self._held),
                self._visibility,
            )
        self._held.clear()
        self._keeper.clear()
        stack, self._stack, self._ops = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    # -- internals ---------------------------------------------------------------------

    def _endpoint(self) -> str:
        return self.endpoint_url or f"the AWS endpoint of region {self.region_name or '?'}"

    def _create_client(self) -> Any:
        session = self._session or get_session()
        config = AioConfig(
            connect_timeout=self.connect_timeout,
            read_timeout=self.wait_time_seconds + self.connect_timeout,
            retries={"mode": "standard", "total_max_attempts": 2},
            max_pool_connections=50,
        )
        if self._client_config is not None:
            config = config.merge(self._client_config)
        options = {k: v for k, v in self._credentials.items() if v is not None}
        return session.create_client(
            "sqs",
            region_name=self.region_name,
            endpoint_url=self.endpoint_url,
            config=config,
            **options,
        )

    def _take(self, records: list[dict[str, Any]]) -> list[Message]:
        """The messages of ``records`` not held yet, now held (see :meth:`_sort`)."""
        messages: list[Message] = []
        for record in self._sort(records):
            self._held[str(record["MessageId"])] = str(record["ReceiptHandle"])
            self._keeper.add([str(record["MessageId"])])
            messages.append(self._message(record))
        return messages

    def _sort(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of messages neither held nor deleted lately; the others dealt with.

        SQS delivers at least once: a message can come again while the pipeline still
        holds it (two receives at once, or its visibility ran out). It is not handed to the
        pipeline twice; its newest receipt handle is the one extended and settled. One
        that comes again after this producer deleted it is deleted again, not handled.
        """
        new: list[dict[str, Any]] = []
        again: list[str] = []
        for record in records:
            message_id = str(record["MessageId"])
            handle = str(record["ReceiptHandle"])
            if message_id in self._deleted:
                _log.debug("SQS message %s received again after its deletion", message_id)
                again.append(handle)
            elif message_id in self._held:
                _log.debug("SQS message %s received again while held", message_id)
                self._held[message_id] = handle
                self._keeper.add([message_id])
            else:
                new.append(record)
        if again:
            self._in_background(self._delete_again(again), "delete-again")
        return new

    def _message(self, record: dict[str, Any]) -> Message:
        attributes: dict[str, str] = dict(record.get("Attributes", {}))
        handle = str(record["ReceiptHandle"])
        group_id = attributes.get("MessageGroupId")
        try:
            receive_count = int(attributes.get("ApproximateReceiveCount", "1"))
        except ValueError:
            receive_count = 1
        metadata = {
            "message_id": record.get("MessageId"),
            "receipt_handle": handle,
            "attributes": attributes,
            "message_attributes": dict(record.get("MessageAttributes", {})),
            "receive_count": receive_count,
            "group_id": group_id,
        }
        message = decode_message(record.get("Body", ""), self.decoder, self._acks, metadata)
        if self.fifo and group_id:
            message.ordering_key = group_id
        return message

    async def _extend(self, message_ids: list[str]) -> None:
        """Extend the visibility of held messages (the keeper's call); log refused entries.

        A settlement that changes the visibility of one of them waits for the answer
        (:meth:`_extension_over`): an extension that reached SQS after it would undo it.
        An endpoint that cannot be reached is an outage, logged with the receives' own; an
        answer slower than the keeper's interval is the keeper's to log (once per run).
        """
        ops = self._ops
        ids = {self._held[i]: i for i in message_ids if i in self._held}
        if ops is None or not ids:
            return
        answered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        for message_id in ids.values():
            self._extending[message_id] = answered
        what = f"extending the visibility of {len(ids)} message(s)"
        try:
            async with asyncio.timeout(max(1.0, self._keeper.interval)):
                failures = await ops.change_visibility(list(ids), self._visibility)
        except TimeoutError as exc:
            if self._outage.since is None:
                raise  # a slow answer, not an outage: the keeper logs it once per run
            self._outage.failed(what, exc)
            return
        except TRANSIENT_ERRORS as exc:
            self._outage.failed(what, exc)
            return
        finally:
            for message_id in ids.values():
                if self._extending.get(message_id) is answered:
                    del self._extending[message_id]
            answered.set_result(None)
        self._outage.recovered()
        # A message settled meanwhile is no longer held: its refusal is expected.
        lost = [f for f in failures if self._held.get(ids[f.receipt_handle]) == f.receipt_handle]
        if lost:
            self._keeper.discard(ids[f.receipt_handle] for f in lost)
            log_entry_failures(self.queue_url, "extending the visibility of", lost)

    async def _extension_over(self, message_ids: Iterable[str]) -> None:
        """Wait for the answer to the extensions under way that name ``message_ids``.

        Bounded: an extension gives up after the keeper's interval (at least a second).
        """
        waits = {self._extending[i] for i in message_ids if i in self._extending}
        if waits:
            await asyncio.wait(waits)

    def _orphaned(self, task: asyncio.Task[list[dict[str, Any]]]) -> None:
        if task.cancelled() or task.exception() is not None:
            return
        self._give_back(task.result())

    def _give_back(self, records: list[dict[str, Any]]) -> None:
        """Make visible again at once the messages of ``records`` that are not held.

        A message received again while held keeps being handled (with its newest receipt
        handle): making it visible would let it be handled twice at once.
        """
        ops = self._ops
        if ops is None:
            return
        handles = [str(record["ReceiptHandle"]) for record in self._sort(records)]
        if handles:
            self._in_background(self._make_visible(ops, handles), "give-back")

    def _in_background(self, coro: Coroutine[Any, Any, None], what: str) -> None:
        task = asyncio.get_running_loop().create_task(
            coro, name=f"underway-sqs-{what} {self.queue_url}"
        )
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _delete_again(self, handles: list[str]) -> None:
        ops = self._ops
        if ops is None:
            return
        try:
            failures = await ops.delete(handles)
        except CALL_ERRORS as exc:
            _log.warning(
                "SQS queue %s: could not delete %d message(s) received again after their "
                "deletion (%s); they come again after their visibility timeout",
                self.queue_url,
                len(handles),
                exc,
            )
            return
        log_entry_failures(self.queue_url, "deleting again", failures)

    async def _make_visible(self, ops: QueueOps, handles: list[str]) -> None:
        try:
            failures = await ops.change_visibility(handles, 0)
        except CALL_ERRORS as exc:
            _log.warning(
                "SQS queue %s: could not make %d unhandled message(s) visible again (%s); "
                "they come again after their visibility timeout",
                self.queue_url,
                len(handles),
                exc,
            )
            return
        log_entry_failures(self.queue_url, "making visible again", failures)


async def _wait_for(tasks: set[asyncio.Task[Any]], timeout: float) -> None:
    if tasks:
        await asyncio.wait(set(tasks), timeout=timeout)


def _check_url(name: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{name} must be a str, got {value!r}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name} must be an http:// or https:// URL, got {value!r}")
    if name == "queue_url" and not parts.path.strip("/"):
        raise ConfigError(f"queue_url must name a queue (…/ACCOUNT/NAME), got {value!r}")
    return value


def _region_of(queue_url: str) -> str | None:
    match = _REGION_IN_HOST.match(urlsplit(queue_url).hostname or "")
    return match.group(1) if match else None


def _int_in(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ConfigError(f"{name} must be an int from {low} to {high}, got {value!r}")
    return value
