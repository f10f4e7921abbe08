"""Node settings: timings, pruning and queue limits, validated once at construction."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from underway.errors import ConfigError
from underway.jobs._queue_name import validate_queue_name
from underway.jobs.job import JobState

__all__ = ["NodeConfig", "Pruning", "check_queues"]

_DAY = 86_400.0


def _seconds(value: object) -> bool:
    """Whether ``value`` is a positive number of seconds (not a bool, not NaN)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and value > 0


@dataclass(frozen=True, slots=True, kw_only=True)
class Pruning:
    """How long finished jobs are kept (seconds per state) and how the pruner runs.

    The pruner is on by default: completed jobs are kept one day, cancelled and discarded
    jobs seven days, so the table does not grow without bound. Every ``interval`` seconds
    the leader deletes at most ``limit`` jobs that are due, oldest first, in short batches:
    the defaults keep up with about 1,600 finished jobs a second on average; raise ``limit``
    for more. The per-minute counters of finished attempts (``Jobs.job_counters``) are
    kept ``counters`` seconds (seven days), and pruned the same way, up to ``limit`` rows
    a pass.
    """

    completed: float = _DAY
    cancelled: float = 7 * _DAY
    discarded: float = 7 * _DAY
    counters: float = 7 * _DAY
    interval: float = 60.0
    limit: int = 100_000

    def __post_init__(self) -> None:
        for name in ("completed", "cancelled", "discarded", "counters", "interval"):
            value = getattr(self, name)
            if not _seconds(value):
                raise ConfigError(f"Pruning.{name} must be seconds > 0, got {value!r}")
        if not isinstance(self.limit, int) or isinstance(self.limit, bool) or self.limit < 1:
            raise ConfigError(f"Pruning.limit must be an int >= 1, got {self.limit!r}")

    @property
    def max_age(self) -> dict[JobState, float]:
        """Age per finished state."""
        return {
            JobState.COMPLETED: float(self.completed),
            JobState.CANCELLED: float(self.cancelled),
            JobState.DISCARDED: float(self.discarded),
        }


def check_queues(queues: Mapping[str, int]) -> dict[str, int]:
    """Validate queue names and limits (limits are ints >= 1)."""
    if not isinstance(queues, Mapping):
        raise ConfigError(f"queues must be a mapping of name to limit, got {queues!r}")
    out = {}
    for name, limit in queues.items():
        validate_queue_name(name)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ConfigError(f"limit of queue {name!r} must be an int >= 1, got {limit!r}")
        out[name] = limit
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """Everything a node needs besides its engine and workers."""

    queues: dict[str, int]
    name: str
    poll_interval: float = 1.0
    stage_interval: float = 1.0
    heartbeat_interval: float = 5.0
    rescue_after: float = 60.0
    shutdown_grace: float = 15.0
    leader_ttl: float = 30.0
    prune: Pruning | None = field(default_factory=Pruning)

    def __post_init__(self) -> None:
        for name in (
            "poll_interval",
            "stage_interval",
            "heartbeat_interval",
            "rescue_after",
            "leader_ttl",
        ):
            value = getattr(self, name)
            if not _seconds(value):
                raise ConfigError(f"{name} must be seconds > 0, got {value!r}")
        if not isinstance(self.shutdown_grace, int | float) or self.shutdown_grace < 0:
            raise ConfigError(f"shutdown_grace must be seconds >= 0, got {self.shutdown_grace!r}")
        if self.rescue_after < 3 * self.heartbeat_interval:
            raise ConfigError(
                f"rescue_after ({self.rescue_after}s) must be at least three times "
                f"heartbeat_interval ({self.heartbeat_interval}s), or a live node that misses "
                "a heartbeat would lose its jobs"
            )
