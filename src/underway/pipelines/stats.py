"""Live statistics of the pipelines of this process, from the telemetry bus.

:class:`PipelineStats` attaches to the ``pipeline.settled`` events (messages settled, ok
and failed, per stage) and the ends of ``pipeline.batch`` spans (each batch's size, and
whether ``handle_batch`` raised), and keeps per pipeline and stage a ring of recent
minutes. What a pipeline holds right now (in flight, its state, its rate limit) is read
from the :class:`~underway.pipelines.Pipeline` objects it was given.

Attached, it costs a few additions per chunk of messages and per batch (never per
message: it does not ask for the per-message spans); detached, nothing.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from underway import _telemetry as telemetry
from underway.errors import ConfigError
from underway.pipelines.pipeline import Pipeline, PipelineState

__all__ = ["BatchSizes", "MinuteStats", "PipelineSnapshot", "PipelineStats", "StageStats"]

StageKind = Literal["processors", "batcher", "batch_processors"]
_MINUTE = 60.0
_SETTLED_STAGES: Mapping[Any, StageKind] = {
    "processor": "processors",
    "batch_processor": "batch_processors",
}


@dataclass(frozen=True, slots=True)
class MinuteStats:
    """What one stage settled in one minute.

    Attributes:
        minute: The minute's start (aware, UTC).
        ok: Messages that succeeded (for a batcher: in batches ``handle_batch`` took).
        failed: Messages that failed (for a batcher: in batches ``handle_batch`` raised on).
    """

    minute: datetime
    ok: int
    failed: int


@dataclass(frozen=True, slots=True)
class BatchSizes:
    """The batches of one batcher over the recent minutes.

    Attributes:
        batches: Batches handled.
        failed: Of those, the batches ``handle_batch`` raised on.
        smallest: The fewest messages in one of them (``None``: no batch).
        largest: The most messages in one of them (``None``: no batch).
        messages: Messages in all of them.
    """

    batches: int
    failed: int
    smallest: int | None
    largest: int | None
    messages: int

    @property
    def mean(self) -> float | None:
        """Messages per batch on average (``None``: no batch)."""
        return self.messages / self.batches if self.batches else None


@dataclass(frozen=True, slots=True)
class StageStats:
    """One stage of a pipeline: the processors, a batcher, or the batch processors.

    Attributes:
        kind: ``"processors"``, ``"batcher"`` or ``"batch_processors"``.
        name: The batcher's name, or the kind for the other stages.
        in_flight: Messages the stage holds now (the batch processors' count includes the
            messages waiting in batchers); ``None`` for a batcher alone, or a pipeline that
            was not given (only its events are known).
        minutes: The recent minutes, oldest first, the current one last (zeros included).
        per_minute: Messages settled per minute: those of the recent minutes over the
            time they cover (from when the collector was first attached, if later), the
            current minute included.
        ok: Messages that succeeded since the collector was attached.
        failed: Messages that failed since then.
        batches: For a batcher, its batches over the recent minutes.
    """

    kind: StageKind
    name: str
    in_flight: int | None
    minutes: tuple[MinuteStats, ...]
    per_minute: float
    ok: int
    failed: int
    batches: BatchSizes | None = None


@dataclass(frozen=True, slots=True)
class PipelineSnapshot:
    """One pipeline as :meth:`PipelineStats.snapshot` saw it.

    Attributes:
        name: The pipeline's name.
        state: ``"running"``, ``"draining"`` or ``"stopped"`` (``None``: a pipeline only
            known from its events).
        in_flight: Messages taken from its producers and not yet acknowledged.
        capacity: The most messages it holds at once.
        rate_limit: ``(allowed, interval seconds)``, or ``None`` without a rate limit.
        stages: The processors, each batcher, and the batch processors (when it batches).
    """

    name: str
    state: PipelineState | None
    in_flight: int | None
    capacity: int | None
    rate_limit: tuple[int, float] | None
    stages: tuple[StageStats, ...]


class _Ring:
    """A stage's counts: totals, and per minute the last ``size`` minutes."""

    __slots__ = ("buckets", "failed", "ok")

    def __init__(self, size: int) -> None:
        self.ok = 0
        self.failed = 0
        # [minute index, ok, failed, batches, failed batches, smallest, largest]
        self.buckets: collections.deque[list[int]] = collections.deque(maxlen=size)

    def bucket(self, minute: int) -> list[int]:
        buckets = self.buckets
        if not buckets or buckets[-1][0] != minute:
            buckets.append([minute, 0, 0, 0, 0, 0, 0])
        return buckets[-1]

    def add(self, minute: int, ok: int, failed: int) -> None:
        bucket = self.bucket(minute)
        bucket[1] += ok
        bucket[2] += failed
        self.ok += ok
        self.failed += failed

    def add_batch(self, minute: int, size: int, failed: bool) -> None:
        self.add(minute, 0 if failed else size, size if failed else 0)
        bucket = self.bucket(minute)
        bucket[5] = size if not bucket[3] else min(bucket[5], size)
        bucket[6] = max(bucket[6], size)
        bucket[3] += 1
        bucket[4] += failed

    def recent(self, now: int, size: int) -> list[list[int]]:
        """The buckets of the last ``size`` minutes up to ``now`` (missing ones absent)."""
        return [b for b in self.buckets if now - size < b[0] <= now]


class PipelineStats:
    """Per pipeline and stage: in flight, messages per minute, failures, batch sizes, rate
    limit and state, for the pipelines of this process.

    Args:
        pipelines: The pipelines whose state and in-flight counts to read; events of
            others with a name of their own are counted too.
        minutes: How many recent minutes to keep per stage (1 to 1440).
        clock: Epoch seconds (for tests).

    Example::

        stats = PipelineStats([orders]).attach()
        ...
        for pipeline in stats.snapshot():
            print(pipeline.name, pipeline.state, [s.per_minute for s in pipeline.stages])

    Raises:
        ConfigError: ``minutes`` is not an int in range, or a pipeline is not a
            :class:`Pipeline` or shares its name with another.
    """

    def __init__(
        self,
        pipelines: Iterable[Pipeline] = (),
        *,
        minutes: int = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440:
            raise ConfigError(f"minutes must be an int from 1 to 1440, got {minutes!r}")
        self.minutes = minutes
        self.pipelines: dict[str, Pipeline] = {}
        self._clock = clock
        self._rings: dict[tuple[str, StageKind, str], _Ring] = {}
        self._tokens: list[object] = []
        self._since: float | None = None  # when first attached
        for pipeline in pipelines:
            self.add(pipeline)

    def add(self, pipeline: Pipeline) -> None:
        """Read ``pipeline``'s state and in-flight counts too.

        Raises:
            ConfigError: It is not a :class:`Pipeline`, or another one has its name.
        """
        if not isinstance(pipeline, Pipeline):
            raise ConfigError(f"PipelineStats takes Pipeline objects, got {pipeline!r}")
        known = self.pipelines.get(pipeline.name)
        if known is not None and known is not pipeline:
            raise ConfigError(
                f"two pipelines are named {pipeline.name!r}: give each its own name= so "
                "their statistics stay apart"
            )
        self.pipelines[pipeline.name] = pipeline

    @property
    def attached(self) -> bool:
        """Whether the collector listens to the telemetry bus."""
        return bool(self._tokens)

    def attach(self) -> PipelineStats:
        """Start counting (idempotent); returns the collector."""
        if not self._tokens:
            if self._since is None:
                self._since = self._clock()
            self._tokens = [
                telemetry.attach(self._settled, prefix="pipeline.settled"),
                telemetry.attach(self._batch, prefix="pipeline.batch.stop"),
                telemetry.attach(self._batch, prefix="pipeline.batch.exception"),
            ]
        return self

    def detach(self) -> None:
        """Stop counting (idempotent); what was counted stays."""
        tokens, self._tokens = self._tokens, []
        for token in tokens:
            telemetry.detach(token)

    def __enter__(self) -> PipelineStats:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def _ring(self, pipeline: str, kind: StageKind, name: str) -> _Ring:
        key = (pipeline, kind, name)
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = _Ring(self.minutes)
        return ring

    def _settled(self, event: str, counts: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        kind = _SETTLED_STAGES.get(meta.get("stage"))
        pipeline = meta.get("pipeline")
        if kind is None or not isinstance(pipeline, str):
            return
        minute = int(self._clock() // _MINUTE)
        ok, failed = counts.get("ok", 0), counts.get("failed", 0)
        self._ring(pipeline, kind, kind).add(minute, int(ok), int(failed))

    def _batch(self, event: str, measurements: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
        pipeline, batcher, size = (
            meta.get("pipeline"),
            meta.get("batcher"),
            measurements.get("size"),
        )
        if not isinstance(pipeline, str) or not isinstance(batcher, str):
            return
        if not isinstance(size, int):
            return
        minute = int(self._clock() // _MINUTE)
        failed = event.endswith(".exception")
        self._ring(pipeline, "batcher", batcher).add_batch(minute, size, failed)

    def snapshot(self) -> list[PipelineSnapshot]:
        """Every pipeline given, then every other one seen in events, by name."""
        now = self._clock()
        seen = {p for p, _, _ in self._rings}
        return [self._snapshot(name, now) for name in sorted({*self.pipelines, *seen})]

    def _snapshot(self, name: str, now: float) -> PipelineSnapshot:
        pipeline = self.pipelines.get(name)
        batchers = sorted(
            {b for p, k, b in self._rings if p == name and k == "batcher"}
            | set(pipeline.batchers if pipeline is not None else ())
        )
        in_batchers = pipeline.in_batchers if pipeline is not None else None
        stages = [self._stage(name, "processors", "processors", now, pipeline)]
        stages += [self._stage(name, "batcher", b, now, None) for b in batchers]
        if batchers or (name, "batch_processors", "batch_processors") in self._rings:
            stages.append(
                self._stage(name, "batch_processors", "batch_processors", now, in_batchers)
            )
        limiter = pipeline.rate_limiter if pipeline is not None else None
        return PipelineSnapshot(
            name=name,
            state=pipeline.state if pipeline is not None else None,
            in_flight=pipeline.in_flight if pipeline is not None else None,
            capacity=pipeline.capacity if pipeline is not None else None,
            rate_limit=(limiter.allowed, limiter.interval) if limiter is not None else None,
            stages=tuple(stages),
        )

    def _stage(
        self, pipeline: str, kind: StageKind, name: str, now: float, holds: Pipeline | int | None
    ) -> StageStats:
        ring = self._rings.get((pipeline, kind, name)) or _Ring(self.minutes)
        last = int(now // _MINUTE)
        first = last - self.minutes + 1
        recent = {b[0]: b for b in ring.recent(last, self.minutes)}
        minutes = tuple(
            MinuteStats(_minute(m), recent[m][1], recent[m][2])
            if m in recent
            else MinuteStats(_minute(m), 0, 0)
            for m in range(first, last + 1)
        )
        since = max(first * _MINUTE, self._since if self._since is not None else now)
        settled = sum(m.ok + m.failed for m in minutes)
        if isinstance(holds, Pipeline):
            in_flight: int | None = holds.in_flight - holds.in_batchers
        else:
            in_flight = holds
        return StageStats(
            kind=kind,
            name=name,
            in_flight=in_flight,
            minutes=minutes,
            per_minute=settled * _MINUTE / max(now - since, 1.0),
            ok=ring.ok,
            failed=ring.failed,
            batches=_sizes(recent.values()) if kind == "batcher" else None,
        )


def _minute(index: int) -> datetime:
    return datetime.fromtimestamp(index * _MINUTE, UTC)


def _sizes(buckets: Iterable[list[int]]) -> BatchSizes:
    with_batches = [b for b in buckets if b[3]]
    return BatchSizes(
        batches=sum(b[3] for b in with_batches),
        failed=sum(b[4] for b in with_batches),
        smallest=min((b[5] for b in with_batches), default=None),
        largest=max((b[6] for b in with_batches), default=None),
        messages=sum(b[1] + b[2] for b in with_batches),
    )
