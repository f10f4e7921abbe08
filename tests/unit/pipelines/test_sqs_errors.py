"""Which error starting an SQS producer raises for what the client reported."""

from __future__ import annotations

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from underway.errors import ConfigError
from underway.pipelines.producers.sqs._queue import start_error

URL = "https://sqs.us-east-1.amazonaws.com/123456789012/orders"
ENDPOINT = "https://sqs.us-east-1.amazonaws.com"


def client_error(code: str, query_code: str | None = None) -> ClientError:
    error = {"Code": code, "Message": f"{code} happened"}
    if query_code is not None:
        error["QueryErrorCode"] = query_code
    return ClientError({"Error": error}, "GetQueueAttributes")


@pytest.mark.parametrize(
    "exc",
    [
        client_error("AWS.SimpleQueueService.NonExistentQueue"),
        client_error("AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"),
    ],
)
def test_a_missing_queue_is_a_config_error_naming_it(exc: ClientError) -> None:
    error = start_error(exc, URL, ENDPOINT)
    assert isinstance(error, ConfigError)
    assert f"SQS queue {URL} does not exist" in str(error)


@pytest.mark.parametrize(
    "code", ["InvalidClientTokenId", "SignatureDoesNotMatch", "AccessDenied", "ExpiredToken"]
)
def test_refused_credentials_are_a_config_error(code: str) -> None:
    error = start_error(client_error(code), URL, ENDPOINT)
    assert isinstance(error, ConfigError)
    assert "refused the credentials" in str(error)
    assert URL in str(error)


def test_no_credentials_is_a_config_error() -> None:
    error = start_error(NoCredentialsError(), URL, ENDPOINT)
    assert isinstance(error, ConfigError)
    assert "no usable AWS credentials" in str(error)


def test_an_unreachable_endpoint_is_a_connection_error() -> None:
    error = start_error(EndpointConnectionError(endpoint_url=ENDPOINT), URL, ENDPOINT)
    assert isinstance(error, ConnectionError)
    assert ENDPOINT in str(error)


def test_other_errors_are_not_translated() -> None:
    assert start_error(ValueError("bug"), URL, ENDPOINT) is None
