"""Pure policy of a pipeline: configuration checks, demand arithmetic, batch cutting."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from underway.errors import ConfigError
from underway.pipelines.message import Message

BatchSize = int | Callable[[Sequence[Message]], bool]


@dataclass(frozen=True)
class ProcessorsConfig:
    """Processors: ``concurrency`` workers asking between ``min_demand`` and ``max_demand``."""

    concurrency: int = 10
    max_demand: int = 10
    min_demand: int = 5

    @property
    def capacity(self) -> int:
        """Most messages in flight at once (processing or waiting in batchers)."""
        return self.concurrency * self.max_demand

    @property
    def refill(self) -> int:
        """Free slots needed before the producer is asked again."""
        return min(self.capacity, max(1, self.max_demand - self.min_demand))


@dataclass(frozen=True)
class BatcherConfig:
    """One named batcher: cut at ``batch_size`` or after ``batch_timeout`` seconds."""

    name: str
    batch_size: BatchSize = 100
    batch_timeout: float = 1.0
    concurrency: int = 1


def _positive_int(where: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {key} must be an int >= {minimum}, got {value!r}")
    return value


def parse_processors(options: Mapping[str, Any] | None) -> ProcessorsConfig:
    """Validate the ``processors`` option."""
    options = dict(options or {})
    unknown = set(options) - {"concurrency", "max_demand", "min_demand"}
    if unknown:
        raise ConfigError(f"processors: unknown option(s) {sorted(unknown)}")
    concurrency = _positive_int("processors", "concurrency", options.get("concurrency", 10))
    max_demand = _positive_int("processors", "max_demand", options.get("max_demand", 10))
    default_min = max_demand // 2
    min_demand = _positive_int(
        "processors", "min_demand", options.get("min_demand", default_min), 0
    )
    if min_demand > max_demand:
        raise ConfigError(
            f"processors: min_demand ({min_demand}) must not exceed max_demand ({max_demand})"
        )
    return ProcessorsConfig(concurrency, max_demand, min_demand)


def parse_batchers(options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, BatcherConfig]:
    """Validate the ``batchers`` option: ``{name: {batch_size, batch_timeout, concurrency}}``."""
    result: dict[str, BatcherConfig] = {}
    for name, raw in (options or {}).items():
        where = f"batcher {name!r}"
        unknown = set(raw) - {"batch_size", "batch_timeout", "concurrency"}
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {sorted(unknown)}")
        size = raw.get("batch_size", 100)
        if not callable(size):
            size = _positive_int(where, "batch_size", size)
        timeout = raw.get("batch_timeout", 1.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"{where}: batch_timeout must be a number > 0, got {timeout!r}")
        concurrency = _positive_int(where, "concurrency", raw.get("concurrency", 1))
        result[name] = BatcherConfig(name, size, float(timeout), concurrency)
    return result


def demand(in_flight: int, config: ProcessorsConfig) -> int:
    """How many messages to ask the producer for, given ``in_flight`` (0: wait)."""
    free = config.capacity - in_flight
    return free if free >= config.refill else 0


def batch_full(size: BatchSize, batch: Sequence[Message]) -> bool:
    """Whether ``batch`` must be emitted now (reached a count, or ``size(batch)`` says so)."""
    if callable(size):
        return bool(size(batch))
    return len(batch) >= size
