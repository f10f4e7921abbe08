"""Pure supervision policy: option checks, restart decisions, restart intensity, strategies.

Nothing here touches an event loop; the supervisor feeds it times and positions.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from typing import Any, Literal, TypeVar

from underway.errors import ConfigError

Strategy = Literal["one_for_one", "one_for_all", "rest_for_one"]
Restart = Literal["permanent", "transient", "temporary"]
OnTimeout = Literal["raise", "kill_task"]

STRATEGIES: tuple[Strategy, ...] = ("one_for_one", "one_for_all", "rest_for_one")
RESTARTS: tuple[Restart, ...] = ("permanent", "transient", "temporary")
ON_TIMEOUT: tuple[OnTimeout, ...] = ("raise", "kill_task")

T = TypeVar("T")


def check_choice(where: str, key: str, value: Any, choices: Sequence[str]) -> Any:
    """Return ``value`` if it is one of ``choices``, else raise :class:`ConfigError`."""
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(f"{where}: {key} must be one of {', '.join(choices)}; got {value!r}")
    return value


def check_int(where: str, key: str, value: Any, minimum: int) -> int:
    """Return ``value`` if it is an int (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {key} must be an int >= {minimum}, got {value!r}")
    return value


def check_seconds(where: str, key: str, value: Any) -> float:
    """Return ``value`` as seconds: a finite number >= 0."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"{where}: {key} must be a number of seconds >= 0, got {value!r}")
    return float(value)


def check_timeout(where: str, key: str, value: Any) -> float | None:
    """Return ``value`` as seconds (a finite number >= 0), or ``None`` for no limit."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigError(f"{where}: {key} must be a number of seconds >= 0 or None, got {value!r}")
    return float(value)


def should_restart(restart: Restart, *, normal: bool) -> bool:
    """Whether a child that exited is started again.

    ``permanent`` always is, ``transient`` only after an abnormal exit (an exception or a
    cancellation the supervisor did not cause), ``temporary`` never.
    """
    if restart == "permanent":
        return True
    if restart == "transient":
        return not normal
    return False


class RestartIntensity:
    """At most ``max_restarts`` restarts within any ``max_seconds`` window.

    Args:
        max_restarts: Restarts allowed in the window (``0``: the first one is refused).
        max_seconds: Length of the sliding window, in seconds.
    """

    __slots__ = ("_times", "max_restarts", "max_seconds")

    def __init__(self, max_restarts: int = 3, max_seconds: float = 5.0) -> None:
        self.max_restarts = check_int("supervisor", "max_restarts", max_restarts, 0)
        seconds = check_seconds("supervisor", "max_seconds", max_seconds)
        if not seconds:
            raise ConfigError(f"supervisor: max_seconds must be > 0, got {max_seconds!r}")
        self.max_seconds = seconds
        self._times: deque[float] = deque()

    def add(self, now: float) -> bool:
        """Record a restart at ``now``; ``False`` when it exceeds the intensity (give up)."""
        times = self._times
        times.append(now)
        while times and now - times[0] >= self.max_seconds:
            times.popleft()
        return len(times) <= self.max_restarts

    @property
    def recent(self) -> int:
        """Restarts recorded in the current window (as of the last :meth:`add`)."""
        return len(self._times)


def restart_plan(strategy: Strategy, children: Sequence[T], failed: T) -> tuple[list[T], list[T]]:
    """Which children to stop (in that order) and start again (in that order).

    ``one_for_one`` restarts the failed child alone; ``one_for_all`` stops every other child
    in reverse start order and starts all of them again; ``rest_for_one`` does the same for
    the children started after the failed one.

    Returns:
        ``(to_stop, to_start)``; ``to_stop`` never contains ``failed`` (it already exited).
    """
    if strategy == "one_for_one":
        return [], [failed]
    index = children.index(failed)
    first = 0 if strategy == "one_for_all" else index
    affected = list(children[first:])
    to_stop = [children[i] for i in range(len(children) - 1, first - 1, -1) if i != index]
    return to_stop, affected
