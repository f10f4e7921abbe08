"""Retry delays: pure functions of the attempt number."""

from __future__ import annotations

import random

from underway.errors import ConfigError

__all__ = ["constant", "exponential"]

_MAX_EXPONENT = 20


def exponential(
    attempt: int,
    *,
    base: float = 15.0,
    jitter: float = 0.1,
    rand: float | None = None,
) -> float:
    """Oban's default delay before retrying after ``attempt`` failed: ``base + 2**attempt``.

    A random jitter of up to ``jitter`` (10%) is added so that jobs that failed together do
    not retry together. The exponent is capped at 20 (about 12 days).

    Args:
        attempt: The attempt that failed, from 1.
        base: Seconds added to every delay.
        jitter: The largest fraction added at random.
        rand: A number in [0, 1) to use instead of a random one (for tests).
    """
    delay = base + 2 ** min(max(attempt, 0), _MAX_EXPONENT)
    r = random.random() if rand is None else rand
    return float(delay) * (1.0 + jitter * r)


def constant(seconds: float) -> float:
    """The same delay for every attempt (validated to be >= 0).

    Raises:
        ConfigError: ``seconds`` is negative or not a number.
    """
    if not seconds >= 0:
        raise ConfigError(f"backoff must be >= 0 seconds, got {seconds!r}")
    return float(seconds)
