"""Pure pipeline policy: configuration, demand arithmetic, batch cutting, rate limiting."""

from __future__ import annotations

import pytest

from underway.errors import ConfigError
from underway.pipelines import Message, RateLimiter
from underway.pipelines._policy import (
    ProcessorsConfig,
    batch_full,
    demand,
    parse_batchers,
    parse_processors,
)
from underway.pipelines.message import claim_acks
from underway.pipelines.producers.dummy import RecordingAcknowledger


def test_processors_defaults_and_capacity() -> None:
    config = parse_processors({"concurrency": 3, "max_demand": 4, "min_demand": 1})
    assert config.capacity == 12
    assert config.refill == 3
    assert parse_processors(None) == ProcessorsConfig(10, 10, 5)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"min_demand": 11, "max_demand": 10}, r"min_demand \(11\) must not exceed max_demand"),
        ({"concurrency": 0}, "concurrency must be an int >= 1"),
        ({"max_demand": True}, "max_demand must be an int"),
        ({"bogus": 1}, r"unknown option\(s\) \['bogus'\]"),
    ],
)
def test_processors_rejects_bad_options(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_processors(options)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"batch_size": 0}, "batcher 's3': batch_size must be an int >= 1, got 0"),
        ({"batch_timeout": 0}, "batch_timeout must be a number > 0"),
        ({"concurrency": -1}, "concurrency must be an int >= 1"),
        ({"size": 3}, r"unknown option\(s\) \['size'\]"),
    ],
)
def test_batchers_reject_bad_options(options: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_batchers({"s3": options})


def test_batchers_accept_callable_size() -> None:
    def size(batch: object) -> bool:
        return True

    config = parse_batchers({"b": {"batch_size": size, "batch_timeout": 2}})["b"]
    assert config.batch_size is size
    assert config.batch_timeout == 2.0


def test_demand_asks_for_free_capacity_only_past_refill() -> None:
    config = ProcessorsConfig(concurrency=2, max_demand=10, min_demand=6)  # capacity 20, refill 4
    assert demand(0, config) == 20
    assert demand(15, config) == 5
    assert demand(16, config) == 4
    assert demand(17, config) == 0
    assert demand(20, config) == 0


def test_batch_full_by_count_and_by_function() -> None:
    batch = [Message(data=i) for i in range(3)]
    assert batch_full(3, batch)
    assert not batch_full(4, batch)
    weight = lambda b: sum(m.data for m in b) >= 3  # noqa: E731
    assert batch_full(weight, batch)
    assert not batch_full(weight, batch[:2])


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rate_limiter_grants_per_window_and_updates() -> None:
    clock = FakeClock()
    limiter = RateLimiter(5, 1.0, clock=clock)
    assert limiter.take(3) == 3
    assert limiter.take(3) == 2
    assert limiter.take(1) == 0
    clock.now += 0.25
    assert limiter.wait_time() == pytest.approx(0.75)
    clock.now += 0.75
    assert limiter.take(10) == 5
    limiter.update(allowed=8)
    assert limiter.take(10) == 3
    clock.now += 1.0
    assert limiter.take(10) == 8
    with pytest.raises(ConfigError, match="allowed must be >= 1"):
        limiter.update(allowed=0)
    with pytest.raises(ConfigError, match="interval must be > 0"):
        RateLimiter(1, 0)


def test_message_helpers() -> None:
    m = Message(data=1)
    assert m.put_data(2).put_batcher("s3").put_batch_key("k") is m
    assert m.update_data(lambda d: d + 1).data == 3
    assert (m.data, m.batcher, m.batch_key, m.status) == (3, "s3", "k", "ok")
    m.configure_ack(on_success="ack", on_failure="requeue")
    assert m.ack_options == {"on_success": "ack", "on_failure": "requeue"}
    m.failed("bad payload")
    assert m.is_failed
    assert m.reason == "bad payload"


def test_claim_acks_splits_per_acknowledger_and_marks_each_acked() -> None:
    a, b = RecordingAcknowledger(), RecordingAcknowledger()
    ms = [Message(i, acknowledger=(a, b, a, a, b)[i]) for i in range(5)]
    ms[2].failed("x")
    ms[3].acked = True  # acknowledged already (ack_immediately): left out
    groups = list(claim_acks(ms).values())
    assert len(groups) == 2
    assert groups[0] == (a, [ms[0]], [ms[2]])
    assert groups[1] == (b, [ms[1], ms[4]], [])
    assert all(m.acked for m in ms)
    assert claim_acks(ms) == {}  # claimed once only
