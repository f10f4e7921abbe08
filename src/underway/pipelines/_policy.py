"""Pure policy of a pipeline: configuration checks, demand arithmetic, batch cutting."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from underway.errors import ConfigError
from underway.pipelines.message import Message

BatchSize = int | Callable[[Sequence[Message]], bool]
PartitionBy = Callable[[Message], Any]


@dataclass(frozen=True)
class ProcessorsConfig:
    """Processors: ``concurrency`` workers asking between ``min_demand`` and ``max_demand``.

    With ``partition_by``, messages whose keys are equal always go to the same processor,
    so they are handled one at a time, in the order the producer gave them.
    """

    concurrency: int = 10
    max_demand: int = 10
    min_demand: int = 5
    partition_by: PartitionBy | None = None

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
    """One named batcher: cut at ``batch_size`` or after ``batch_timeout`` seconds.

    With ``partition_by``, a batch holds messages of one partition only, and every batch of
    a partition goes to the same one of the ``concurrency`` batch processors, in order.
    """

    name: str
    batch_size: BatchSize = 100
    batch_timeout: float = 1.0
    concurrency: int = 1
    partition_by: PartitionBy | None = None


def _positive_int(where: str, key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{where}: {key} must be an int >= {minimum}, got {value!r}")
    return value


def _partition_by(where: str, value: Any) -> PartitionBy | None:
    if value is not None and not callable(value):
        raise ConfigError(f"{where}: partition_by must be a function of the message, got {value!r}")
    return value  # type: ignore[no-any-return]


def parse_processors(options: Mapping[str, Any] | None) -> ProcessorsConfig:
    """Validate the ``processors`` option."""
    options = dict(options or {})
    unknown = set(options) - {"concurrency", "max_demand", "min_demand", "partition_by"}
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
    partition_by = _partition_by("processors", options.get("partition_by"))
    return ProcessorsConfig(concurrency, max_demand, min_demand, partition_by)


def parse_batchers(options: Mapping[str, Mapping[str, Any]] | None) -> dict[str, BatcherConfig]:
    """Validate ``batchers``: ``{name: {batch_size, batch_timeout, concurrency, partition_by}}``."""
    result: dict[str, BatcherConfig] = {}
    for name, raw in (options or {}).items():
        where = f"batcher {name!r}"
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{where}: a batcher's name must be a non-empty string")
        unknown = set(raw) - {"batch_size", "batch_timeout", "concurrency", "partition_by"}
        if unknown:
            raise ConfigError(f"{where}: unknown option(s) {sorted(unknown)}")
        size = raw.get("batch_size", 100)
        if not callable(size):
            size = _positive_int(where, "batch_size", size)
        timeout = raw.get("batch_timeout", 1.0)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ConfigError(f"{where}: batch_timeout must be a number > 0, got {timeout!r}")
        concurrency = _positive_int(where, "concurrency", raw.get("concurrency", 1))
        partition_by = _partition_by(where, raw.get("partition_by"))
        result[name] = BatcherConfig(name, size, float(timeout), concurrency, partition_by)
    return result


def demand(in_flight: int, config: ProcessorsConfig, share: int | None = None) -> int:
    """How many messages to ask the producer for, given ``in_flight`` (0: wait).

    ``share`` caps what one fetch loop asks for (see :func:`shares`); the refill threshold
    is then at most the share, so a loop whose share is small still gets to fetch.
    """
    limit = config.capacity if share is None else share
    wanted = min(config.capacity - in_flight, limit)
    return wanted if wanted >= min(config.refill, limit) and wanted > 0 else 0


def total_capacity(processors: ProcessorsConfig, batchers: Mapping[str, BatcherConfig]) -> int:
    """The most messages a pipeline holds at once, in processors and batchers together.

    The processors' ``concurrency * max_demand``, plus for each batcher room for one batch
    being filled and one being handled by each of its batch processors (``batch_size``;
    for a ``batch_size`` function, the processors' capacity stands in for it). So a full
    batch is always reachable: messages waiting in a batcher do not keep the processors
    from asking for more.
    """
    room = processors.capacity
    for config in batchers.values():
        size = config.batch_size if isinstance(config.batch_size, int) else processors.capacity
        room += size * (config.concurrency + 1)
    return room


def shares(capacity: int, loops: int) -> list[int]:
    """Split ``capacity`` among ``loops`` fetch loops: parts that differ by at most one.

    The parts add up to ``capacity`` (each is at least 1, so with more loops than capacity
    they add up to ``loops``), so loops blocked on an idle broker never hold so much of the
    capacity that the others cannot fetch.
    """
    base, extra = divmod(capacity, loops)
    return [max(1, base + (1 if i < extra else 0)) for i in range(loops)]


def batch_full(size: BatchSize, batch: Sequence[Message]) -> bool:
    """Whether ``batch`` must be emitted now (reached a count, or ``size(batch)`` says so)."""
    if callable(size):
        return bool(size(batch))
    return len(batch) >= size


def partition(key: Any, count: int) -> int:
    """The index, below ``count``, of the worker that owns partition ``key``.

    Integers map by value (so keys ``0..count-1`` land on distinct workers); other keys
    by their hash, which is stable within one process.
    """
    if count == 1:
        return 0
    if isinstance(key, int) and not isinstance(key, bool):
        return key % count
    return hash(key) % count
