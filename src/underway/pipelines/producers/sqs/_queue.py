"""The SQS calls behind :class:`SQSProducer`: receive, delete and change visibility in batches.

Batch calls go in chunks of ten (SQS's limit), all chunks at once. A batch call succeeds
as a whole even when some of its entries fail: those come back in its ``Failed`` list, and
are returned here as :class:`EntryFailure`\\ s for the caller to log.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, NamedTuple

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from underway.errors import ConfigError
from underway.pipelines.producers.sqs._policy import chunks

__all__ = [
    "CALL_ERRORS",
    "RECEIVE_ATTRIBUTES",
    "TRANSIENT_ERRORS",
    "EntryFailure",
    "QueueOps",
    "error_code",
    "start_error",
]

#: Errors of a call that may work later (the endpoint is down, slow or unreachable).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    BotoConnectionError,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
)
#: Every error an SQS call raises by itself (a bug in underway is none of these).
CALL_ERRORS: tuple[type[BaseException], ...] = (*TRANSIENT_ERRORS, BotoCoreError, ClientError)
#: The system attributes every received message carries.
RECEIVE_ATTRIBUTES = (
    "ApproximateReceiveCount",
    "SentTimestamp",
    "MessageGroupId",
    "MessageDeduplicationId",
    "SequenceNumber",
)
_MISSING_QUEUE = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_CREDENTIALS = frozenset(
    {
        "AccessDenied",
        "AccessDeniedException",
        "ExpiredToken",
        "ExpiredTokenException",
        "IncompleteSignature",
        "InvalidAccessKeyId",
        "InvalidClientTokenId",
        "InvalidSecurity",
        "MissingAuthenticationToken",
        "SignatureDoesNotMatch",
        "UnrecognizedClientException",
    }
)


class EntryFailure(NamedTuple):
    """One entry of a batch call that SQS refused."""

    receipt_handle: str
    code: str
    message: str


def error_code(exc: BaseException) -> str:
    """The SQS error code of a :class:`ClientError` (its query code when it has one)."""
    if not isinstance(exc, ClientError):
        return ""
    error = exc.response.get("Error", {})
    return str(error.get("QueryErrorCode") or error.get("Code") or "")


def start_error(exc: BaseException, queue_url: str, endpoint: str) -> Exception | None:
    """The error that starting on ``queue_url`` raises for ``exc`` (``None``: not one).

    A missing queue and credentials SQS refuses are a :class:`ConfigError`; an endpoint
    that cannot be reached is a :class:`ConnectionError`.
    """
    code = error_code(exc)
    raw = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, ClientError) else ""
    if code in _MISSING_QUEUE or raw in _MISSING_QUEUE:
        return ConfigError(f"SQS queue {queue_url} does not exist (at {endpoint})")
    if code in _CREDENTIALS or raw in _CREDENTIALS:
        return ConfigError(
            f"SQS at {endpoint} refused the credentials for queue {queue_url}: {exc}"
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return ConfigError(f"no usable AWS credentials for SQS queue {queue_url}: {exc}")
    if isinstance(exc, TRANSIENT_ERRORS):
        return ConnectionError(
            f"cannot reach SQS at {endpoint} for queue {queue_url}: {type(exc).__name__}: {exc}"
        )
    if isinstance(exc, ClientError | BotoCoreError):
        return ConfigError(f"SQS queue {queue_url} at {endpoint}: {exc}")
    return None


class QueueOps:
    """The calls on one queue through one aiobotocore SQS client.

    Args:
        client: An entered aiobotocore SQS client.
        queue_url: The queue's URL.
    """

    def __init__(self, client: Any, queue_url: str) -> None:
        self.client = client
        self.queue_url = queue_url

    async def attributes(self) -> dict[str, str]:
        """All the queue's attributes (``GetQueueAttributes``)."""
        reply = await self.client.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["All"]
        )
        return dict(reply.get("Attributes", {}))

    async def receive(self, count: int, wait: int, visibility: int | None) -> list[dict[str, Any]]:
        """Receive up to ``count`` (1 to 10) messages, long polling for ``wait`` seconds."""
        options: dict[str, Any] = {}
        if visibility is not None:
            options["VisibilityTimeout"] = visibility
        reply = await self.client.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            WaitTimeSeconds=wait,
            MessageSystemAttributeNames=list(RECEIVE_ATTRIBUTES),
            MessageAttributeNames=["All"],
            **options,
        )
        return list(reply.get("Messages", []))

    async def delete(self, handles: Sequence[str]) -> list[EntryFailure]:
        """Delete the messages of ``handles`` (``DeleteMessageBatch``, chunks at once)."""
        return await self._batches(handles, None)

    async def change_visibility(self, handles: Sequence[str], seconds: int) -> list[EntryFailure]:
        """Make ``handles`` invisible for ``seconds`` from now (0: visible at once)."""
        return await self._batches(handles, seconds)

    async def _batches(self, handles: Sequence[str], seconds: int | None) -> list[EntryFailure]:
        unique = list(dict.fromkeys(handles))
        if not unique:
            return []
        results = await asyncio.gather(
            *(self._batch(chunk, seconds) for chunk in chunks(unique)), return_exceptions=True
        )
        failures: list[EntryFailure] = []
        for result in results:
            if isinstance(result, BaseException):
                raise result
            failures += result
        return failures

    async def _batch(self, handles: Sequence[str], seconds: int | None) -> list[EntryFailure]:
        entries: list[dict[str, Any]] = [
            {"Id": str(i), "ReceiptHandle": handle} for i, handle in enumerate(handles)
        ]
        if seconds is None:
            reply = await self.client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
        else:
            for entry in entries:
                entry["VisibilityTimeout"] = seconds
            reply = await self.client.change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=entries
            )
        return [
            EntryFailure(
                handles[int(failed["Id"])],
                str(failed.get("Code", "")),
                str(failed.get("Message", "")),
            )
            for failed in reply.get("Failed", [])
        ]
