"""Pure policy of the Pub/Sub producer: subscription paths, failure deadlines, chunks."""

from __future__ import annotations

import pytest

pytest.importorskip("google.pubsub_v1")

from underway.errors import ConfigError
from underway.pipelines.producers.pubsub._policy import (
    ACK_CHUNK,
    FailurePolicy,
    backoff_delay,
    chunks,
    subscription_path,
)


def test_subscription_path_from_a_full_path_or_a_name_and_project() -> None:
    full = "projects/p-1/subscriptions/orders"
    assert subscription_path(full, None) == full
    assert subscription_path(full, "p-1") == full
    assert subscription_path("orders", "p-1") == full


@pytest.mark.parametrize(
    ("subscription", "project", "match"),
    [
        ("", None, "non-empty str"),
        ("orders", None, "bare name: pass project="),
        ("orders", "", "project must be a non-empty str"),
        ("projects/a/subscriptions/orders", "b", "not in project='b'"),
        ("projects/a/topics/orders", None, "a name or projects/PROJECT/subscriptions/NAME"),
        ("or", "p", "invalid subscription name 'or'"),
        ("1orders", "p", "starting with a letter"),
        ("google-orders", "p", "not with 'goog'"),
    ],
)
def test_malformed_subscriptions_are_config_errors(
    subscription: str, project: str | None, match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        subscription_path(subscription, project)


def test_backoff_doubles_from_ten_seconds_up_to_the_longest_deadline() -> None:
    assert [backoff_delay(n) for n in (None, 0, 1, 2, 3, 6, 7, 50)] == [
        10,
        10,
        10,
        20,
        40,
        320,
        600,
        600,
    ]


def test_failure_deadlines_per_producer_and_per_message() -> None:
    nack = FailurePolicy()
    assert nack.deadline({}, 3) == 0
    assert nack.deadline({"on_failure": "ack"}, 3) is None
    assert nack.deadline({"on_failure": "delay"}, 3) == 40  # the backoff
    assert nack.deadline({"on_failure": "delay", "delay": 2.2}, 3) == 3  # whole seconds
    fixed = FailurePolicy("delay", 30)
    assert fixed.deadline({}, None) == 30
    assert fixed.deadline({"delay": 0}, None) == 0
    assert fixed.deadline({"on_failure": "nack"}, None) == 0
    # An option that slipped past check_ack_options falls back to the producer's settings.
    assert fixed.deadline({"on_failure": "requeue"}, None) == 30


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"on_failure": "reject"}, "on_failure='reject' is not one of"),
        ({"delay": 601}, "delay must be from 0 to 600"),
        ({"delay": -1}, "delay must be from 0 to 600"),
        ({"delay": "5"}, "delay must be a number of seconds or None"),
        ({"delay": True}, "delay must be a number of seconds or None"),
        ({"requeue": True}, r"unknown Pub/Sub ack option\(s\) \['requeue'\]"),
    ],
)
def test_unsupported_ack_options_are_config_errors(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FailurePolicy().check(options)


def test_invalid_producer_policies_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="on_failure must be one of"):
        FailurePolicy("requeue")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="delay must be from 0 to 600"):
        FailurePolicy("delay", 900)


def test_chunks_cut_ack_ids_into_requests() -> None:
    ids = [str(i) for i in range(2 * ACK_CHUNK + 1)]
    sizes = [len(chunk) for chunk in chunks(ids)]
    assert sizes == [ACK_CHUNK, ACK_CHUNK, 1]
    assert [list(c) for c in chunks(["a", "b", "c"], 2)] == [["a", "b"], ["c"]]
    assert list(chunks([])) == []
