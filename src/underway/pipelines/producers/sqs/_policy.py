"""How an :class:`SQSProducer` settles a failure, and its limits (pure: no I/O)."""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, Literal, NamedTuple, TypeVar

from underway.errors import ConfigError

__all__ = [
    "BATCH_SIZE",
    "MAX_VISIBILITY",
    "ON_FAILURE",
    "FailureSetting",
    "OnFailure",
    "RecentIds",
    "backoff_delay",
    "check_ack_options",
    "check_backoff",
    "chunks",
    "failure_setting",
    "retry_delay",
]

T = TypeVar("T")

OnFailure = Literal["leave", "retry_now", "backoff", "delete"]
ON_FAILURE: tuple[OnFailure, ...] = ("leave", "retry_now", "backoff", "delete")
#: Most seconds a message may stay invisible (SQS's limit: 12 hours).
MAX_VISIBILITY = 43_200
#: Most entries in one SQS batch call (ReceiveMessage, DeleteMessageBatch...).
BATCH_SIZE = 10
_ACK_OPTIONS = frozenset({"on_failure", "delay"})


class FailureSetting(NamedTuple):
    """What to do with one failed message: ``visibility`` is set for retries (seconds)."""

    action: OnFailure
    visibility: int | None = None


class RecentIds:
    """The last ``limit`` ids added, for membership tests (oldest forgotten first)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._ids: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, item: object) -> bool:
        return item in self._ids

    def add(self, item: str) -> None:
        """Remember ``item``, forgetting the oldest beyond ``limit``."""
        self._ids[item] = None
        self._ids.move_to_end(item)
        while len(self._ids) > self.limit:
            self._ids.popitem(last=False)


def chunks(items: Sequence[T], size: int = BATCH_SIZE) -> Iterator[Sequence[T]]:
    """``items`` cut into consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def check_backoff(value: Any) -> tuple[float, float]:
    """Validate ``backoff=(base, max)`` seconds; raise :class:`ConfigError` otherwise."""
    if (
        not isinstance(value, tuple | list)
        or len(value) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in value)
    ):
        raise ConfigError(f"backoff must be a (base, max) pair of seconds, got {value!r}")
    base, cap = float(value[0]), float(value[1])
    if not 0 < base <= cap <= MAX_VISIBILITY:
        raise ConfigError(
            f"backoff must satisfy 0 < base <= max <= {MAX_VISIBILITY} (SQS's limit), got {value!r}"
        )
    return base, cap


def backoff_delay(receive_count: int, base: float, cap: float) -> int:
    """Seconds a message failed on its ``receive_count``-th receive stays invisible.

    ``base * 2 ** (receive_count - 1)``, at most ``cap`` and SQS's 12 hours, rounded up to
    whole seconds (SQS's unit).
    """
    exponent = min(max(receive_count, 1) - 1, 64)
    seconds = min(base * 2.0**exponent, cap, MAX_VISIBILITY)
    return min(MAX_VISIBILITY, math.ceil(seconds))


def retry_delay(attempt: int, base: float, cap: float) -> float:
    """Seconds before retrying a call that failed ``attempt`` times in a row (from 1)."""
    return min(cap, base * 2.0 ** min(max(attempt, 1) - 1, 32))


def _check_delay(delay: Any) -> None:
    if (
        isinstance(delay, bool)
        or not isinstance(delay, int | float)
        or not 0 <= delay <= MAX_VISIBILITY
    ):
        raise ConfigError(
            f"delay must be a number of seconds from 0 to {MAX_VISIBILITY} (SQS's limit), "
            f"got {delay!r}"
        )


def check_ack_options(options: Mapping[str, Any], default: OnFailure) -> None:
    """Raise :class:`ConfigError` unless SQS can settle a failure with ``options``.

    ``on_failure`` is one of :data:`ON_FAILURE`; ``delay`` (seconds) makes the failure
    come again after that delay, so it goes only with ``on_failure="backoff"`` (the
    default when ``delay`` is given without ``on_failure``).
    """
    unknown = sorted(options.keys() - _ACK_OPTIONS)
    if unknown:
        raise ConfigError(f"unknown SQS ack option(s) {unknown}; known: delay, on_failure")
    if "on_failure" in options and options["on_failure"] not in ON_FAILURE:
        raise ConfigError(
            f"on_failure={options['on_failure']!r} cannot be honoured by SQS; one of {ON_FAILURE}"
        )
    if "delay" in options:
        _check_delay(options["delay"])
        action = options.get("on_failure", "backoff")
        if action != "backoff":
            raise ConfigError(f"delay goes with on_failure='backoff', not {action!r}")
    if default not in ON_FAILURE:
        raise ConfigError(f"on_failure={default!r} is not one of {ON_FAILURE}")


def failure_setting(
    options: Mapping[str, Any],
    default: OnFailure,
    backoff: tuple[float, float],
    receive_count: int,
    report: Callable[[str], None],
) -> FailureSetting:
    """How to settle one failed message with ack options ``options``.

    Options that :func:`check_ack_options` would refuse (set on the message directly) are
    passed to ``report`` and the producer's ``default`` applies.
    """
    try:
        check_ack_options(options, default)
    except ConfigError as exc:
        report(f"{exc}; settled per the producer's on_failure={default!r}")
        options = {}
    action: OnFailure = options.get("on_failure", "backoff" if "delay" in options else default)
    if action == "retry_now":
        return FailureSetting("retry_now", 0)
    if action == "backoff":
        if "delay" in options:
            return FailureSetting("backoff", min(MAX_VISIBILITY, math.ceil(options["delay"])))
        return FailureSetting("backoff", backoff_delay(receive_count, *backoff))
    return FailureSetting(action)
