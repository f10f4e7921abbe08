"""The activity pages: charts of finished jobs per queue over time (from the per-minute
counters), and the pipelines of this process (from a :class:`PipelineStats` collector)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from underway.dashboard._charts import Chart, bucket_starts, line_chart, spark
from underway.dashboard._pages import BadRequest, Dashboard, dashboard, render
from underway.errors import ConfigError
from underway.jobs._queue_name import validate_queue_name
from underway.pipelines.stats import PipelineStats

__all__ = ["MINUTES", "RANGES", "Range", "pipeline_stats", "routes", "start_pipeline_stats"]

_STATS = "pipeline_stats"  # the collector's key in Dashboard.extra
MINUTES = 30  # recent minutes of pipeline statistics kept and shown


@dataclass(frozen=True, slots=True)
class Range:
    """A span of time a chart shows: ``buckets`` buckets of ``step`` seconds."""

    label: str
    buckets: int
    step: int


RANGES = {
    "1h": Range("last hour, per minute", 60, 60),
    "6h": Range("last 6 hours, per 5 minutes", 72, 300),
    "24h": Range("last 24 hours, per 15 minutes", 96, 900),
    "7d": Range("last 7 days, per hour", 168, 3600),
}


def routes() -> list[BaseRoute]:
    """The activity pages' routes."""
    return [
        Route("/charts", charts_page, name="charts"),
        Route("/pipelines", pipelines_page, name="pipelines"),
    ]


async def charts_page(request: Request) -> Response:
    """Completed and failed jobs per bucket, all queues together and each queue."""
    name = request.query_params.get("range", "1h")
    span = RANGES.get(name)
    if span is None:
        raise BadRequest(f"range must be one of {', '.join(RANGES)}, got {name!r}")
    queue = request.query_params.get("queue") or None
    if queue is not None:
        try:
            validate_queue_name(queue)
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None
    end = (time.time() // span.step + 1) * span.step  # the current bucket included
    starts = bucket_starts(end, span.buckets, span.step)
    try:  # summed by the database: one row per bucket and queue
        rows = await dashboard(request).jobs.job_counters(
            since=starts[0], until=end, queue=queue, bucket=span.step, by="queue"
        )
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    ok: dict[str, list[int]] = {}
    failed: dict[str, list[int]] = {}
    for row in rows:
        i = int((row.minute.timestamp() - starts[0]) // span.step)
        if row.queue is not None and 0 <= i < span.buckets:
            ok.setdefault(row.queue, [0] * span.buckets)[i] += row.completed
            failed.setdefault(row.queue, [0] * span.buckets)[i] += row.failed + row.discarded
    charts = [_chart(q, starts, ok[q], failed[q]) for q in sorted(ok)]
    if len(charts) > 1:
        total_ok = [sum(v) for v in zip(*ok.values(), strict=True)]
        total_failed = [sum(v) for v in zip(*failed.values(), strict=True)]
        charts.insert(0, _chart("all queues", starts, total_ok, total_failed))
    context = {
        "section": "charts",
        "charts": charts,
        "ranges": RANGES,
        "range": name,
        "span": span,
        "queue": queue,
    }
    return render(request, "charts.html", context)


def _chart(title: str, starts: Sequence[float], ok: list[int], failed: list[int]) -> Chart:
    lines = {"completed": ("ok", ok), "failed or discarded": ("failed", failed)}
    return line_chart(title, starts, lines)


def start_pipeline_stats(board: Dashboard) -> None:
    """Make the collector of ``board``'s pipelines and attach it to the telemetry bus, so
    that they are counted from when the dashboard is made (none without pipelines).

    Raises:
        ConfigError: Two pipelines share a name (their counts would mix).
    """
    if board.pipelines:
        board.extra[_STATS] = PipelineStats(board.pipelines, minutes=MINUTES).attach()


def pipeline_stats(request: Request) -> PipelineStats | None:
    """The dashboard's collector of its pipelines' statistics (``None``: no pipeline)."""
    stats = dashboard(request).extra.get(_STATS)
    return stats if isinstance(stats, PipelineStats) else None


async def pipelines_page(request: Request) -> Response:
    """Each pipeline given to the dashboard: state, rate limit, and per stage in flight,
    messages per minute, failures and batch sizes."""
    stats = pipeline_stats(request)
    snapshots = [] if stats is None else [s for s in stats.snapshot() if s.name in stats.pipelines]
    sparks: dict[tuple[str, str, str], Any] = {
        (p.name, s.kind, s.name): spark([m.ok + m.failed for m in s.minutes])
        for p in snapshots
        for s in p.stages
    }
    context = {
        "section": "pipelines",
        "pipelines": snapshots,
        "sparks": sparks,
        "minutes": MINUTES,
    }
    return render(request, "pipelines.html", context)
