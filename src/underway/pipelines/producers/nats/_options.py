"""The options of a :class:`NATSProducer`, validated at construction (pure)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from underway.errors import ConfigError
from underway.pipelines.producers.nats._policy import (
    ON_FAILURE,
    FailurePolicy,
    OnFailure,
    check_backoff,
)

__all__ = ["Options", "validate"]

_SCHEMES = ("nats://", "tls://", "ws://", "wss://")
# Options the producer sets itself: passing them in connect_options would break its bounds.
_RESERVED = frozenset(
    {
        "servers",
        "name",
        "error_cb",
        "disconnected_cb",
        "reconnected_cb",
        "allow_reconnect",
        "max_reconnect_attempts",
        "connect_timeout",
        "reconnect_time_wait",
    }
)


@dataclass(frozen=True)
class Options:
    """A producer's validated settings."""

    stream: str
    durable: str
    subject: str | None
    servers: tuple[str, ...]
    batch: int
    fetch_timeout: float
    ack_wait: float
    failure: FailurePolicy
    decoder: Callable[[bytes], Any] | None
    create_consumer: bool
    connect_timeout: float
    reconnect_time_wait: float
    request_timeout: float
    connect_options: Mapping[str, Any] = field(default_factory=dict)


def _fail(message: str) -> ConfigError:
    return ConfigError(f"NATSProducer: {message}")


def _name(name: str, value: Any, *, dots: bool = False) -> str:
    if not isinstance(value, str) or not value:
        raise _fail(f"{name} must be a non-empty string, got {value!r}")
    bad = " \t\r\n*>" + ("" if dots else ".")
    if any(c in bad for c in value):
        raise _fail(
            f"{name} must not contain whitespace, '*' or '>'"
            + ("" if dots else " or '.'")
            + f", got {value!r}"
        )
    return value


def _subject(name: str, value: Any, *, wildcards: bool) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in " \t\r\n"):
        raise _fail(f"{name} must be a non-empty subject without whitespace, got {value!r}")
    if not wildcards and any(token in ("*", ">") for token in value.split(".")):
        raise _fail(f"{name} must not contain wildcards, got {value!r}")
    return value


def _positive(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _fail(f"{name} must be a number > 0, got {value!r}")
    return float(value)


def _servers(value: Any) -> tuple[str, ...]:
    servers = [value] if isinstance(value, str) else value
    if not isinstance(servers, Sequence) or not servers:
        raise _fail(f"servers must be a URL or a non-empty list of URLs, got {value!r}")
    for url in servers:
        if not isinstance(url, str) or not url.startswith(_SCHEMES):
            raise _fail(f"each server must be a nats://, tls://, ws:// or wss:// URL, got {url!r}")
    return tuple(servers)


def validate(
    *,
    stream: Any,
    durable: Any,
    subject: Any,
    servers: Any,
    batch: Any,
    fetch_timeout: Any,
    ack_wait: Any,
    max_deliveries: Any,
    on_failure: Any,
    backoff: Any,
    dead_letter_subject: Any,
    decoder: Any,
    create_consumer: Any,
    connect_timeout: Any,
    reconnect_time_wait: Any,
    request_timeout: Any,
    connect_options: Any,
) -> Options:
    """Check every option of a producer; returns them normalized.

    Raises:
        ConfigError: The first invalid option, named.
    """
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise _fail(f"batch must be an int >= 1, got {batch!r}")
    if max_deliveries is not None and (
        isinstance(max_deliveries, bool)
        or not isinstance(max_deliveries, int)
        or max_deliveries < 1
    ):
        raise _fail(f"max_deliveries must be an int >= 1 or None, got {max_deliveries!r}")
    if on_failure not in ON_FAILURE:
        raise _fail(f"on_failure must be one of {ON_FAILURE}, got {on_failure!r}")
    dead = None
    if dead_letter_subject is not None:
        dead = _subject("dead_letter_subject", dead_letter_subject, wildcards=False)
        if dead == subject:
            raise _fail("dead_letter_subject must differ from subject (it would be consumed again)")
    if on_failure == "dead_letter" and dead is None:
        raise _fail("on_failure='dead_letter' needs a dead_letter_subject")
    if decoder is not None and not callable(decoder):
        raise _fail(f"decoder must be callable, got {decoder!r}")
    if connect_options is None:
        connect_options = {}
    if not isinstance(connect_options, Mapping):
        raise _fail(f"connect_options must be a mapping, got {connect_options!r}")
    reserved = sorted(set(connect_options) & _RESERVED)
    if reserved:
        raise _fail(f"connect_options must not set {reserved}: the producer sets them")
    ack_wait = _positive("ack_wait", ack_wait)
    try:
        policy = FailurePolicy(
            on_failure=cast(OnFailure, on_failure),
            backoff=check_backoff(backoff),
            max_deliveries=max_deliveries,
            dead_letter_subject=dead,
        )
    except ConfigError as exc:
        raise _fail(str(exc)) from None
    return Options(
        stream=_name("stream", stream),
        durable=_name("durable", durable),
        subject=None if subject is None else _subject("subject", subject, wildcards=True),
        servers=_servers(servers),
        batch=batch,
        fetch_timeout=_positive("fetch_timeout", fetch_timeout),
        ack_wait=ack_wait,
        failure=policy,
        decoder=decoder,
        create_consumer=bool(create_consumer),
        connect_timeout=_positive("connect_timeout", connect_timeout),
        reconnect_time_wait=_positive("reconnect_time_wait", reconnect_time_wait),
        request_timeout=_positive("request_timeout", request_timeout),
        connect_options=dict(connect_options),
    )
