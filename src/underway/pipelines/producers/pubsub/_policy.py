"""Pure policy of the Pub/Sub producer: names, failure settlement, chunks (no I/O).

A failed message is settled with ``modify_ack_deadline``: ``0`` seconds redelivers it now
(``"nack"``), more seconds redeliver it later (``"delay"``); or it is acknowledged, so
dropped (``"ack"``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from underway.errors import ConfigError

__all__ = [
    "ACK_CHUNK",
    "MAX_DEADLINE",
    "ON_FAILURE",
    "FailurePolicy",
    "OnFailure",
    "backoff_delay",
    "check_delay",
    "chunks",
    "subscription_path",
]

OnFailure = Literal["nack", "delay", "ack"]
ON_FAILURE: tuple[OnFailure, ...] = ("nack", "delay", "ack")
#: The longest ack deadline Pub/Sub accepts, in seconds.
MAX_DEADLINE = 600
#: The shortest ack deadline Pub/Sub accepts for a subscription, in seconds.
MIN_DEADLINE = 10
#: Ack ids per ``acknowledge`` / ``modify_ack_deadline`` request (a request is at most 512 KiB).
ACK_CHUNK = 1000
#: First delay of the backoff, in seconds; it doubles with each delivery attempt.
BACKOFF_BASE = 10

_ACK_OPTIONS = frozenset({"on_failure", "delay"})
_PATH = re.compile(r"projects/(?P<project>[^/]+)/subscriptions/(?P<name>[^/]+)")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9\-_.~+%]{2,254}")

T = TypeVar("T")


def subscription_path(subscription: Any, project: Any) -> str:
    """The full path ``projects/P/subscriptions/S`` of a subscription.

    ``subscription`` is that full path (``project`` must then be ``None`` or the same), or a
    bare name with ``project`` given.

    Raises:
        ConfigError: The names are missing or malformed.
    """
    if not isinstance(subscription, str) or not subscription:
        raise ConfigError(f"subscription must be a non-empty str, got {subscription!r}")
    if project is not None and (not isinstance(project, str) or not project):
        raise ConfigError(f"project must be a non-empty str or None, got {project!r}")
    full = _PATH.fullmatch(subscription)
    if full is not None:
        if project is not None and project != full["project"]:
            raise ConfigError(
                f"subscription {subscription!r} is in project {full['project']!r}, "
                f"not in project={project!r}"
            )
        name = full["name"]
        project = full["project"]
    elif "/" in subscription:
        raise ConfigError(
            f"subscription must be a name or projects/PROJECT/subscriptions/NAME, "
            f"got {subscription!r}"
        )
    elif project is None:
        raise ConfigError(
            f"subscription {subscription!r} is a bare name: pass project=, or the full "
            f"path projects/PROJECT/subscriptions/{subscription}"
        )
    else:
        name = subscription
    if not _NAME.fullmatch(name) or name.lower().startswith("goog"):
        raise ConfigError(
            f"invalid subscription name {name!r}: 3 to 255 letters, digits or -_.~+%, "
            f"starting with a letter, not with 'goog'"
        )
    return f"projects/{project}/subscriptions/{name}"


def check_delay(value: Any, what: str = "delay") -> float | None:
    """Validate a failure delay: ``None`` (backoff) or seconds from 0 to 600."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ConfigError(f"{what} must be a number of seconds or None, got {value!r}")
    if not 0 <= value <= MAX_DEADLINE:
        raise ConfigError(f"{what} must be from 0 to {MAX_DEADLINE} seconds, got {value!r}")
    return float(value)


def backoff_delay(delivery_attempt: int | None) -> int:
    """Seconds before a message failed on ``delivery_attempt`` comes again.

    10 s after the first attempt, doubling with each attempt, at most 600 s. Pub/Sub counts
    attempts only on a subscription with a dead-letter policy; without one
    (``delivery_attempt`` is ``None``) every failure waits 10 s.
    """
    attempt = max(1, delivery_attempt or 1)
    if attempt > 10:
        return MAX_DEADLINE
    return min(MAX_DEADLINE, BACKOFF_BASE << (attempt - 1))


@dataclass(frozen=True)
class FailurePolicy:
    """How failures are settled unless a message says otherwise (``configure_ack``).

    Attributes:
        on_failure: ``"nack"``, ``"delay"`` or ``"ack"``.
        delay: Seconds a ``"delay"`` waits; ``None``: :func:`backoff_delay`.
    """

    on_failure: OnFailure = "nack"
    delay: float | None = None

    def __post_init__(self) -> None:
        if self.on_failure not in ON_FAILURE:
            raise ConfigError(f"on_failure must be one of {ON_FAILURE}, got {self.on_failure!r}")
        check_delay(self.delay)

    def check(self, options: Mapping[str, Any]) -> None:
        """Raise :class:`ConfigError` unless a message can be settled with ``options``."""
        unknown = sorted(options.keys() - _ACK_OPTIONS)
        if unknown:
            raise ConfigError(f"unknown Pub/Sub ack option(s) {unknown}; known: delay, on_failure")
        action = options.get("on_failure", self.on_failure)
        if action not in ON_FAILURE:
            raise ConfigError(f"on_failure={action!r} is not one of {ON_FAILURE}")
        check_delay(options.get("delay"))

    def deadline(self, options: Mapping[str, Any], delivery_attempt: int | None) -> int | None:
        """The ack deadline a failed message gets: ``None`` to acknowledge (drop) it.

        ``options`` must have passed :meth:`check` (an invalid one falls back to the
        producer's settings).
        """
        try:
            self.check(options)
        except ConfigError:
            options = {}
        action = options.get("on_failure", self.on_failure)
        if action == "ack":
            return None
        if action == "nack":
            return 0
        delay = options.get("delay", self.delay)
        if delay is None:
            return backoff_delay(delivery_attempt)
        return min(MAX_DEADLINE, math.ceil(float(delay)))


def chunks(items: Sequence[T], size: int = ACK_CHUNK) -> Iterator[Sequence[T]]:
    """``items`` cut into slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
