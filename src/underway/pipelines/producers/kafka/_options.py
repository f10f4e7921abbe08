"""Validating a :class:`KafkaProducer`'s options (``ConfigError`` with a precise message)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from underway.errors import ConfigError

__all__ = [
    "OWNED",
    "callable_or_none",
    "consumer_options",
    "name",
    "names",
    "positive",
    "positive_int",
    "servers",
]

#: aiokafka consumer options the producer sets itself.
OWNED = frozenset(
    {
        "bootstrap_servers",
        "group_id",
        "enable_auto_commit",
        "auto_offset_reset",
        "session_timeout_ms",
        "heartbeat_interval_ms",
        "max_poll_interval_ms",
        "rebalance_timeout_ms",
        "key_deserializer",
        "value_deserializer",
        "max_partition_fetch_bytes",
        "fetch_max_bytes",
        "loop",
    }
)


def _fail(what: str) -> ConfigError:
    return ConfigError(f"KafkaProducer: {what}")


def positive(option: str, value: Any) -> float:
    """``value`` as a float > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise _fail(f"{option} must be a number > 0, got {value!r}")
    return float(value)


def positive_int(option: str, value: Any) -> int:
    """``value`` as an int > 0."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise _fail(f"{option} must be an int > 0, got {value!r}")
    return value


def name(option: str, value: Any) -> str:
    """``value`` as a non-empty string."""
    if not isinstance(value, str) or not value:
        raise _fail(f"{option} must be a non-empty string, got {value!r}")
    return value


def names(option: str, value: Any) -> tuple[str, ...]:
    """One name or a sequence of names, as a tuple without repeats."""
    if isinstance(value, str):
        return (name(option, value),)
    if not isinstance(value, Sequence) or not value:
        raise _fail(f"{option} must be a name or a non-empty sequence of names, got {value!r}")
    return tuple(dict.fromkeys(name(option, v) for v in value))


def servers(value: Any) -> str | list[str]:
    """``bootstrap_servers``: ``"host:port[,host:port]"`` or a list of ``"host:port"``."""
    if isinstance(value, str):
        return name("bootstrap_servers", value)
    return list(names("bootstrap_servers", value))


def consumer_options(value: Mapping[str, Any] | None) -> dict[str, Any]:
    """Extra aiokafka consumer options, none of those the producer sets itself."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise _fail(f"consumer_options must be a mapping, got {value!r}")
    taken = sorted(set(value) & OWNED)
    if taken:
        raise _fail(f"consumer_options cannot set {taken}: pass them as the producer's own options")
    return dict(value)


def callable_or_none(option: str, value: Any) -> Callable[..., Any] | None:
    """``value`` if callable or ``None``."""
    if value is not None and not callable(value):
        raise _fail(f"{option} must be callable, got {value!r}")
    result: Callable[..., Any] | None = value
    return result
