"""How a :class:`NATSProducer` settles a failed message, and checks its options (pure).

No I/O here: the acknowledger asks :func:`failure_action` what to do with each failed
message, :func:`retry_delay` how long its redelivery waits, and :func:`check_ack_options`
whether per-message options can be honoured. :func:`consumer_mismatches` compares an
existing durable consumer with the one the producer would create, :func:`pull_problems`
finds the settings of a consumer that would refuse the producer's pulls or strip payloads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from underway.errors import ConfigError

__all__ = [
    "ACK_OPTIONS",
    "ON_FAILURE",
    "Decision",
    "FailurePolicy",
    "OnFailure",
    "check_ack_options",
    "check_backoff",
    "consumer_mismatches",
    "failure_action",
    "pending_limit",
    "pull_problems",
    "retry_delay",
]

OnFailure = Literal["retry", "term", "dead_letter", "ack"]
ON_FAILURE: tuple[OnFailure, ...] = ("retry", "term", "dead_letter", "ack")
ACK_OPTIONS = frozenset({"on_failure", "delay"})
Action = Literal["nak", "term", "dead_letter", "ack"]


@dataclass(frozen=True)
class FailurePolicy:
    """A producer's settings for failed messages (see :class:`NATSProducer`)."""

    on_failure: OnFailure = "retry"
    backoff: tuple[float, float] = (1.0, 60.0)
    max_deliveries: int | None = 5
    dead_letter_subject: str | None = None


@dataclass(frozen=True)
class Decision:
    """What to do with one failed message: ``delay`` is set for a ``"nak"`` only."""

    action: Action
    delay: float | None = None
    why: str = ""


def check_backoff(backoff: Any) -> tuple[float, float]:
    """Validate ``backoff=(base, max)`` in seconds; returns it as floats.

    Raises:
        ConfigError: Not a pair of numbers with ``0 <= base <= max``.
    """
    if (
        not isinstance(backoff, tuple | list)
        or len(backoff) != 2
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in backoff)
        or not 0 <= backoff[0] <= backoff[1]
    ):
        raise ConfigError(
            f"backoff must be a pair (base, max) of seconds with 0 <= base <= max, got {backoff!r}"
        )
    return float(backoff[0]), float(backoff[1])


def retry_delay(num_delivered: int, backoff: tuple[float, float]) -> float:
    """Seconds before a message that failed on delivery ``num_delivered`` comes again.

    ``base * 2 ** (num_delivered - 1)``, capped at ``max``: the first failure waits
    ``base``, each later one twice as long.
    """
    base, cap = backoff
    exponent = min(max(0, num_delivered - 1), 62)
    return float(min(cap, base * 2**exponent))


def _check_delay(delay: Any) -> None:
    if delay is not None and (
        isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0
    ):
        raise ConfigError(f"delay must be a number of seconds >= 0 or None, got {delay!r}")


def check_ack_options(options: Mapping[str, Any], policy: FailurePolicy) -> None:
    """Raise :class:`ConfigError` for per-message options the producer cannot honour.

    Known options: ``on_failure`` (one of :data:`ON_FAILURE`; ``"dead_letter"`` needs a
    ``dead_letter_subject``) and ``delay`` (seconds before a retried message comes again,
    instead of the backoff).
    """
    unknown = sorted(set(options) - ACK_OPTIONS)
    if unknown:
        raise ConfigError(
            f"unknown NATS ack option(s) {unknown}; known: {', '.join(sorted(ACK_OPTIONS))}"
        )
    action = options.get("on_failure", policy.on_failure)
    if action not in ON_FAILURE:
        raise ConfigError(f"on_failure={action!r} is not one of {ON_FAILURE}")
    if action == "dead_letter" and policy.dead_letter_subject is None:
        raise ConfigError("on_failure='dead_letter' but the producer has no dead_letter_subject")
    _check_delay(options.get("delay"))


def failure_action(
    options: Mapping[str, Any], num_delivered: int, policy: FailurePolicy
) -> Decision:
    """Decide how a failed message is settled.

    ``options`` are the message's ack options (already checked by
    :func:`check_ack_options` when set with ``configure_ack``; invalid ones fall back to
    the producer's policy). A retry on the ``max_deliveries``-th delivery (or later) is
    dead-lettered instead when there is a dead-letter subject, else terminated.
    """
    try:
        check_ack_options(options, policy)
    except ConfigError as exc:
        options = {}
        why = f"ack options ignored ({exc})"
    else:
        why = ""
    action = options.get("on_failure", policy.on_failure)
    limit = policy.max_deliveries
    if action == "retry" and limit is not None and num_delivered >= limit:
        last: Action = "dead_letter" if policy.dead_letter_subject is not None else "term"
        return Decision(last, why=f"failed on delivery {num_delivered} of {limit}")
    if action == "retry":
        delay = options.get("delay")
        seconds = retry_delay(num_delivered, policy.backoff) if delay is None else float(delay)
        return Decision("nak", seconds, why)
    if action == "term":
        return Decision("term", why=why)
    if action == "dead_letter":
        return Decision("dead_letter", why=why)
    return Decision("ack", why=why)


def consumer_mismatches(
    wanted: Mapping[str, Any], actual: Mapping[str, Any], max_deliveries: int | None
) -> list[str]:
    """Describe each setting of an existing consumer that the producer cannot work with.

    ``wanted`` and ``actual`` map a setting's name (``ack_policy``, ``ack_wait``,
    ``filter_subject``, ``filter_subjects``, ``deliver_subject``) to its value; durations
    are seconds and are equal within a millisecond; an empty subject (or list) is none.
    ``actual["max_deliver"]`` must leave the producer a delivery past ``max_deliveries``
    (the one on which it dead-letters a message whose last handling was cut short):
    unlimited (``None``, ``0`` or ``-1``), or above ``max_deliveries``.
    """
    problems: list[str] = []
    for name, want in wanted.items():
        have = actual.get(name)
        if name == "ack_wait" and want is not None and have is not None:
            if abs(float(want) - float(have)) < 0.001:
                continue
        elif name in ("filter_subject", "filter_subjects", "deliver_subject"):
            want, have = want or None, have or None
        if want != have:
            problems.append(f"{name} is {have!r}, the producer needs {want!r}")
    limit = actual.get("max_deliver")
    if limit not in (None, 0, -1) and (max_deliveries is None or limit <= max_deliveries):
        needed = "unlimited (-1)" if max_deliveries is None else f"-1 or > {max_deliveries}"
        problems.append(
            f"max_deliver is {limit!r}: the server would stop delivering a message the "
            f"producer has not settled (with max_deliveries={max_deliveries!r} it needs {needed})"
        )
    return problems


def pull_problems(config: Mapping[str, Any], batch: int, fetch_timeout: float) -> list[str]:
    """Describe each setting of a consumer that its pulls or its messages cannot work with.

    ``config`` is the consumer's configuration as the JetStream API gives it (durations in
    nanoseconds). The server answers a pull asking for more than ``max_batch`` messages,
    or waiting longer than ``max_expires``, with an error and no message (the producer would
    get nothing, ever); ``headers_only`` delivers messages without their payload.
    """
    problems: list[str] = []
    max_batch = int(config.get("max_batch") or 0)
    if 0 < max_batch < batch:
        problems.append(
            f"max_batch is {max_batch}: the producer pulls up to batch={batch} messages "
            f"(pass batch <= {max_batch})"
        )
    max_expires = int(config.get("max_expires") or 0) / 1e9
    if 0 < max_expires < fetch_timeout:
        problems.append(
            f"max_expires is {max_expires:g}s: a pull of the producer waits up to "
            f"fetch_timeout={fetch_timeout:g}s (pass fetch_timeout <= {max_expires:g})"
        )
    if config.get("headers_only"):
        problems.append("headers_only is set: the producer needs the payloads")
    return problems


def pending_limit(config: Mapping[str, Any], capacity: int) -> str | None:
    """What to warn of when the consumer's ``max_ack_pending`` is below ``capacity``.

    The server then hands out no more than ``max_ack_pending`` messages not yet
    acknowledged, so the pipeline never holds more: it works, with fewer messages in
    flight than it was built for. ``None`` when the limit is not in the way.
    """
    limit = int(config.get("max_ack_pending") or 0)
    if 0 < limit < capacity:
        return (
            f"max_ack_pending is {limit}, below the pipeline's capacity of {capacity}: "
            f"at most {limit} messages are in flight (raise it on the consumer, or lower "
            f"the processors' concurrency or max_demand)"
        )
    return None
