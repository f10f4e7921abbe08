"""The SQS producer's pure policy: failure settings, backoff, batches, remembered ids."""

from __future__ import annotations

from typing import Any

import pytest

from underway.errors import ConfigError
from underway.pipelines.producers.sqs._policy import (
    MAX_VISIBILITY,
    FailureSetting,
    RecentIds,
    backoff_delay,
    check_ack_options,
    check_backoff,
    chunks,
    failure_setting,
    retry_delay,
)


def setting(options: dict[str, Any], receive_count: int = 1) -> tuple[FailureSetting, list[str]]:
    reports: list[str] = []
    result = failure_setting(options, "leave", (10.0, 900.0), receive_count, reports.append)
    return result, reports


def test_backoff_doubles_per_receive_up_to_its_max_and_sqs_limit() -> None:
    assert [backoff_delay(n, 10.0, 900.0) for n in range(1, 9)] == [
        10,
        20,
        40,
        80,
        160,
        320,
        640,
        900,
    ]
    assert backoff_delay(0, 1.5, 10.0) == 2  # whole seconds, rounded up
    assert backoff_delay(10_000, 1.0, MAX_VISIBILITY) == MAX_VISIBILITY


def test_retry_delay_doubles_up_to_its_cap() -> None:
    assert [retry_delay(n, 0.5, 3.0) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert retry_delay(10_000, 1.0, 30.0) == 30.0


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (5, "pair of seconds"),
        ((1, 2, 3), "pair of seconds"),
        ((True, 2), "pair of seconds"),
        ((0, 10), "0 < base <= max"),
        ((20, 10), "0 < base <= max"),
        ((1, MAX_VISIBILITY + 1), "0 < base <= max"),
    ],
)
def test_invalid_backoff(value: Any, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_backoff(value)


def test_check_backoff_returns_floats() -> None:
    assert check_backoff((1, 60)) == (1.0, 60.0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"on_failure": "stop"}, "cannot be honoured by SQS"),
        ({"on_failure": "reject"}, "cannot be honoured by SQS"),
        ({"on_success": "ack"}, "unknown SQS ack option"),
        ({"delay": -1}, "delay must be a number of seconds"),
        ({"delay": True}, "delay must be a number of seconds"),
        ({"delay": MAX_VISIBILITY + 1}, "delay must be a number of seconds"),
        ({"on_failure": "leave", "delay": 3}, "delay goes with on_failure='backoff'"),
    ],
)
def test_ack_options_sqs_cannot_honour(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        check_ack_options(options, "leave")


def test_ack_options_sqs_honours() -> None:
    for options in (
        {},
        {"on_failure": "leave"},
        {"on_failure": "retry_now"},
        {"on_failure": "delete"},
        {"on_failure": "backoff"},
        {"on_failure": "backoff", "delay": 0},
        {"delay": 12.5},
    ):
        check_ack_options(options, "delete")


def test_failure_settings() -> None:
    assert setting({}) == (FailureSetting("leave"), [])
    assert setting({"on_failure": "retry_now"}) == (FailureSetting("retry_now", 0), [])
    assert setting({"on_failure": "delete"}) == (FailureSetting("delete"), [])
    assert setting({"on_failure": "backoff"}, 3) == (FailureSetting("backoff", 40), [])
    assert setting({"delay": 2.2}) == (FailureSetting("backoff", 3), [])


def test_failure_setting_refused_options_fall_back_to_the_default() -> None:
    result, reports = setting({"on_failure": "stop"})
    assert result == FailureSetting("leave")
    assert len(reports) == 1
    assert "settled per the producer's on_failure='leave'" in reports[0]


def test_chunks_of_ten() -> None:
    assert [list(c) for c in chunks(list(range(23)))] == [
        list(range(10)),
        list(range(10, 20)),
        [20, 21, 22],
    ]
    assert list(chunks([])) == []


def test_recent_ids_forget_the_oldest() -> None:
    recent = RecentIds(3)
    for item in "abcd":
        recent.add(item)
    assert len(recent) == 3
    assert "a" not in recent
    recent.add("b")  # refreshed: now the newest
    recent.add("e")
    assert "c" not in recent
    assert all(item in recent for item in "bde")
