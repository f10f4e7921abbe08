"""Which RabbitMQ frames settle a group of deliveries (pure: no I/O).

A channel's delivery tags grow from 1 in delivery order. ``basic.ack`` with ``multiple``
settles every delivery of the channel up to a tag that is still unsettled, so it may be
used only when all of those are being acknowledged now: :class:`Unsettled` knows the
lowest unsettled tag, and :func:`plan` folds the acknowledgements below it into one frame.
"""

from __future__ import annotations

from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

from underway.errors import ConfigError

__all__ = [
    "FAILURE_ACTIONS",
    "FailureAction",
    "Frame",
    "Unsettled",
    "check_options",
    "failure_action",
    "plan",
]

FailureAction = Literal["reject", "requeue", "ack"]
FAILURE_ACTIONS: tuple[FailureAction, ...] = ("reject", "requeue", "ack")
_ACK_OPTIONS = frozenset({"on_success", "on_failure"})


class Frame(NamedTuple):
    """One settlement frame: ``requeue`` is ``None`` for an ack, else a reject's flag."""

    tag: int
    multiple: bool = False
    requeue: bool | None = None


class Unsettled:
    """The delivery tags of one channel that were delivered and not yet settled."""

    def __init__(self) -> None:
        self._order: deque[int] = deque()
        self._tags: set[int] = set()

    def add(self, tag: int) -> None:
        """Track a new delivery (tags arrive in increasing order)."""
        self._order.append(tag)
        self._tags.add(tag)

    def claim(self, tag: Any) -> bool:
        """Mark ``tag`` settled; ``False`` if it was not an unsettled delivery."""
        if isinstance(tag, int) and tag in self._tags:
            self._tags.discard(tag)
            return True
        return False

    def lowest(self) -> int | None:
        """The lowest unsettled tag, or ``None`` when every delivery is settled."""
        order, tags = self._order, self._tags
        while order and order[0] not in tags:
            order.popleft()
        if len(order) > 2 * len(tags) + 1_024:
            # A long-unsettled delivery holds back the settled ones behind it: compact.
            self._order = order = deque(sorted(tags))
        return order[0] if order else None

    @property
    def tracked(self) -> int:
        """Tags held for :meth:`lowest` (stays within about twice the unsettled ones)."""
        return len(self._order)


def plan(acks: list[int], rejects: list[tuple[int, bool]], lowest: int | None) -> list[Frame]:
    """The frames settling claimed ``acks`` and ``(tag, requeue)`` ``rejects``, in order.

    ``lowest`` is the lowest tag still unsettled once these were claimed: every delivery
    below it is settled by this call or an earlier one, so the acks below it go as one
    ``multiple`` ack, sent after the rejects.
    """
    frames = [Frame(tag, requeue=requeue) for tag, requeue in rejects]
    if acks:
        acks = sorted(acks)
        run = len(acks) if lowest is None else bisect_left(acks, lowest)
        if run:
            frames.append(Frame(acks[run - 1], multiple=run > 1))
        frames.extend(Frame(tag) for tag in acks[run:])
    return frames


def check_options(options: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigError` unless RabbitMQ can settle a message with ``options``."""
    unknown = sorted(options.keys() - _ACK_OPTIONS)
    if unknown:
        raise ConfigError(
            f"unknown RabbitMQ ack option(s) {unknown}; known: on_success, on_failure"
        )
    if options.get("on_success", "ack") != "ack":
        raise ConfigError(f"on_success={options['on_success']!r}: RabbitMQ supports only 'ack'")
    if "on_failure" in options and options["on_failure"] not in FAILURE_ACTIONS:
        raise ConfigError(f"on_failure={options['on_failure']!r} is not one of {FAILURE_ACTIONS}")


def failure_action(
    options: Mapping[str, Any], default: FailureAction, report: Callable[[str, str], None]
) -> FailureAction:
    """How to settle a failed message with ``ack_options`` ``options``.

    An unknown option or value is passed to ``report(key, text)`` and ``default`` applies.
    """
    if not options:
        return default
    for key in options.keys() - _ACK_OPTIONS:
        report(key, f"unknown ack option {key!r} ignored")
    on_success = options.get("on_success", "ack")
    if on_success != "ack":
        report(
            f"on_success={on_success!r}",
            f"on_success={on_success!r} is not supported (only 'ack'); ignored",
        )
    value = options.get("on_failure", default)
    for action in FAILURE_ACTIONS:
        if value == action:
            return action
    report(
        f"on_failure={value!r}",
        f"on_failure={value!r} is not one of {FAILURE_ACTIONS}; using {default!r}",
    )
    return default
