"""A fixed-window rate limiter shared by every producer of a pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

from underway.errors import ConfigError

__all__ = ["RateLimiter"]


class RateLimiter:
    """Allow at most ``allowed`` messages per ``interval`` seconds.

    The policy (``take``, ``wait_time``) is pure given the clock; ``acquire`` waits on it.
    The limits can be changed while running with :meth:`update`.
    """

    def __init__(
        self, allowed: int, interval: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        _check(allowed, interval)
        self.allowed = allowed
        self.interval = interval
        self._clock = clock
        self._window_start = clock()
        self._used = 0
        self._changed = asyncio.Event()

    def update(self, allowed: int | None = None, interval: float | None = None) -> None:
        """Change the limits; they apply from the current window on (waiters recheck now)."""
        new_allowed = self.allowed if allowed is None else allowed
        new_interval = self.interval if interval is None else interval
        _check(new_allowed, new_interval)
        self.allowed, self.interval = new_allowed, new_interval
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    def _roll(self) -> float:
        now = self._clock()
        if now - self._window_start >= self.interval:
            self._window_start = now
            self._used = 0
        return now

    def take(self, wanted: int) -> int:
        """Take up to ``wanted`` permits from the current window; returns how many granted."""
        self._roll()
        granted = max(0, min(wanted, self.allowed - self._used))
        self._used += granted
        return granted

    def wait_time(self) -> float:
        """Seconds until the current window ends."""
        now = self._roll()
        return max(0.0, self._window_start + self.interval - now)

    async def acquire(self, wanted: int) -> int:
        """Wait until at least one permit is free; returns how many were granted (>= 1)."""
        if wanted <= 0:
            return 0
        while True:
            granted = self.take(wanted)
            if granted:
                return granted
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(self.wait_time(), 0.001)):
                    await changed.wait()


def _check(allowed: int, interval: float) -> None:
    if isinstance(allowed, bool) or not isinstance(allowed, int):
        raise ConfigError(f"rate_limit allowed must be an int, got {allowed!r}")
    if isinstance(interval, bool) or not isinstance(interval, int | float):
        raise ConfigError(f"rate_limit interval must be a number, got {interval!r}")
    if allowed < 1:
        raise ConfigError(f"rate_limit allowed must be >= 1, got {allowed!r}")
    if interval <= 0:
        raise ConfigError(f"rate_limit interval must be > 0, got {interval!r}")
