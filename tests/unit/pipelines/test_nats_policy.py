"""The NATS producer's pure policy: retry delays, failure decisions, options, consumers."""

from __future__ import annotations

from typing import Any

import pytest

from underway.errors import ConfigError

pytest.importorskip("nats")  # the package imports its driver

from underway.pipelines.producers.nats import NATSProducer
from underway.pipelines.producers.nats._policy import (
    Decision,
    FailurePolicy,
    check_ack_options,
    check_backoff,
    consumer_mismatches,
    failure_action,
    pull_problems,
    retry_delay,
)


def test_retry_delay_doubles_from_base_up_to_max() -> None:
    assert [retry_delay(n, (1.0, 10.0)) for n in range(1, 7)] == [1, 2, 4, 8, 10, 10]
    assert retry_delay(0, (0.5, 10.0)) == 0.5
    assert retry_delay(10_000, (1.0, 60.0)) == 60.0
    assert retry_delay(3, (0.0, 5.0)) == 0.0


def test_backoff_must_be_an_ordered_pair_of_seconds() -> None:
    assert check_backoff((1, 60)) == (1.0, 60.0)
    for bad in ((2, 1), (-1, 1), (1,), "1,2", (True, 2), None):
        with pytest.raises(ConfigError, match="backoff must be a pair"):
            check_backoff(bad)


def test_a_retry_naks_with_the_backoff_or_the_message_delay() -> None:
    policy = FailurePolicy(backoff=(1.0, 60.0), max_deliveries=5)
    assert failure_action({}, 1, policy) == Decision("nak", 1.0)
    assert failure_action({}, 3, policy) == Decision("nak", 4.0)
    assert failure_action({"delay": 0.25}, 3, policy) == Decision("nak", 0.25)


def test_the_last_delivery_dead_letters_or_terminates() -> None:
    policy = FailurePolicy(max_deliveries=3)
    assert failure_action({}, 3, policy).action == "term"
    assert failure_action({}, 4, policy).action == "term"
    dead = FailurePolicy(max_deliveries=3, dead_letter_subject="dead")
    decision = failure_action({}, 3, dead)
    assert decision.action == "dead_letter"
    assert decision.why == "failed on delivery 3 of 3"
    assert failure_action({}, 1_000, FailurePolicy(max_deliveries=None)).action == "nak"


def test_per_message_actions_override_the_producer() -> None:
    policy = FailurePolicy(on_failure="retry", dead_letter_subject="dead")
    assert failure_action({"on_failure": "term"}, 1, policy).action == "term"
    assert failure_action({"on_failure": "ack"}, 1, policy).action == "ack"
    assert failure_action({"on_failure": "dead_letter"}, 1, policy).action == "dead_letter"
    term = FailurePolicy(on_failure="term")
    assert failure_action({}, 1, term).action == "term"


def test_invalid_per_message_options_fall_back_to_the_producer() -> None:
    decision = failure_action({"on_failure": "reject"}, 1, FailurePolicy(on_failure="term"))
    assert decision.action == "term"
    assert decision.why.startswith("ack options ignored")


def test_check_ack_options_names_what_cannot_be_honoured() -> None:
    policy = FailurePolicy()
    check_ack_options({"on_failure": "term", "delay": 3}, policy)
    with pytest.raises(ConfigError, match=r"unknown NATS ack option\(s\) \['requeue'\]"):
        check_ack_options({"requeue": True}, policy)
    with pytest.raises(ConfigError, match="is not one of"):
        check_ack_options({"on_failure": "reject"}, policy)
    with pytest.raises(ConfigError, match="no dead_letter_subject"):
        check_ack_options({"on_failure": "dead_letter"}, policy)
    with pytest.raises(ConfigError, match="delay must be"):
        check_ack_options({"delay": "soon"}, policy)


def test_consumer_mismatches_name_each_setting() -> None:
    wanted: dict[str, Any] = {
        "ack_policy": "explicit",
        "ack_wait": 30.0,
        "filter_subject": "a.>",
        "deliver_subject": None,
    }
    same = {**wanted, "ack_wait": 30.0000001, "max_deliver": -1}
    assert consumer_mismatches(wanted, same, 5) == []
    assert consumer_mismatches(wanted, {**same, "max_deliver": 6}, 5) == []
    problems = consumer_mismatches(
        wanted,
        {**same, "ack_wait": 5.0, "deliver_subject": "push", "max_deliver": 5},
        5,
    )
    assert problems[0] == "ack_wait is 5.0, the producer needs 30.0"
    assert problems[1] == "deliver_subject is 'push', the producer needs None"
    assert problems[2].startswith("max_deliver is 5")
    assert consumer_mismatches(wanted, {**same, "max_deliver": 9}, None)
    assert consumer_mismatches({"filter_subject": None}, {"filter_subject": ""}, None) == []


def test_pull_problems_name_limits_below_the_producer_and_stripped_payloads() -> None:
    assert pull_problems({}, 100, 5.0) == []
    assert pull_problems({"max_batch": 100, "max_expires": 5_000_000_000}, 100, 5.0) == []
    assert pull_problems({"max_batch": 0, "max_expires": 0, "headers_only": False}, 9, 9) == []
    problems = pull_problems(
        {"max_batch": 10, "max_expires": 1_500_000_000, "headers_only": True}, 100, 5.0
    )
    assert problems == [
        "max_batch is 10: the producer pulls up to batch=100 messages (pass batch <= 10)",
        "max_expires is 1.5s: a pull of the producer waits up to fetch_timeout=5s "
        "(pass fetch_timeout <= 1.5)",
        "headers_only is set: the producer needs the payloads",
    ]


def test_a_consumer_with_several_filters_is_a_mismatch() -> None:
    wanted = {"filter_subject": None, "filter_subjects": None}
    assert consumer_mismatches(wanted, {"filter_subjects": []}, None) == []
    [problem] = consumer_mismatches(wanted, {"filter_subjects": ["a.x", "a.y"]}, None)
    assert problem == "filter_subjects is ['a.x', 'a.y'], the producer needs None"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stream": ""}, "stream must be a non-empty string"),
        ({"stream": "a.b"}, "stream must not contain"),
        ({"durable": "d*"}, "durable must not contain"),
        ({"servers": "http://x"}, "nats://, tls://, ws:// or wss:// URL"),
        ({"servers": []}, "servers must be a URL or a non-empty list"),
        ({"batch": 0}, "batch must be an int >= 1"),
        ({"ack_wait": 0}, "ack_wait must be a number > 0"),
        ({"fetch_timeout": -1}, "fetch_timeout must be a number > 0"),
        ({"max_deliveries": 0}, "max_deliveries must be an int >= 1 or None"),
        ({"on_failure": "requeue"}, "on_failure must be one of"),
        ({"on_failure": "dead_letter"}, "needs a dead_letter_subject"),
        ({"backoff": (5, 1)}, "backoff must be a pair"),
        ({"dead_letter_subject": "d.*"}, "must not contain wildcards"),
        ({"subject": "x", "dead_letter_subject": "x"}, "must differ from subject"),
        ({"decoder": 3}, "decoder must be callable"),
        ({"connect_options": {"allow_reconnect": False}}, "must not set"),
    ],
)
def test_invalid_options_are_config_errors(kwargs: dict[str, Any], message: str) -> None:
    args = {"stream": "s", "durable": "d", **kwargs}
    with pytest.raises(ConfigError, match=message):
        NATSProducer(args.pop("stream"), args.pop("durable"), **args)


def test_valid_options_are_kept() -> None:
    producer = NATSProducer(
        "s", "d", servers=["nats://a:4222", "nats://b:4222"], subject="s.>", backoff=(0, 1)
    )
    assert producer.options.servers == ("nats://a:4222", "nats://b:4222")
    assert producer.options.failure.backoff == (0.0, 1.0)
    assert repr(producer) == "<NATSProducer stream='s' durable='d'>"
