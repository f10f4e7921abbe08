"""The overview pages: queues (counts, nodes, pause / resume / scale), nodes and cron."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from underway.dashboard._forms import is_whole
from underway.dashboard._pages import (
    BadRequest,
    NotFound,
    dashboard,
    emit_action,
    redirect,
    render,
    url,
)
from underway.dashboard._security import form
from underway.errors import ConfigError
from underway.jobs._overview import WAITING_STATES, QueueInfo
from underway.jobs.app import Jobs

__all__ = ["RECENT", "parse_limit", "queue_totals", "routes"]

RECENT = 3600.0  # seconds of finished jobs the queues page sums from the per-minute counters
_OUTCOMES = ("completed", "failed", "discarded", "cancelled")
_DONE = {"pause": "paused", "resume": "resumed", "scale": "scaled"}
_MAX_LIMIT = 100_000  # a limit above this is a typo, not a plan


def routes() -> list[BaseRoute]:
    """The overview pages' routes."""
    return [
        Route("/queues", queues_page, name="queues"),
        Route("/queues/{queue}/{action}", queue_action, methods=["POST"], name="queue_action"),
        Route("/nodes", nodes_page, name="nodes"),
        Route("/cron", cron_page, name="cron"),
    ]


async def queues_page(request: Request) -> Response:
    """Every queue: jobs by state, finished in the last hour, and each node's share."""
    jobs = dashboard(request).jobs
    queues = await jobs.queues()
    context = {
        "section": "queues",
        "queues": queues,
        "states": [s.value for s in WAITING_STATES],
        "totals": queue_totals(queues),
        "outcomes": _OUTCOMES,
        "recent": await _recent(jobs, [q.name for q in queues]),
        "recent_minutes": int(RECENT // 60),
    }
    return render(request, "queues.html", context)


async def _recent(jobs: Jobs, names: Iterable[str]) -> dict[str, dict[str, int]]:
    """Finished attempts of the last :data:`RECENT` seconds by queue and outcome, from the
    per-minute counters (empty when the database keeps none)."""
    totals: dict[str, dict[str, int]] = {name: dict.fromkeys(_OUTCOMES, 0) for name in names}
    # One bucket longer than the range (since is rounded down to its minute): a row a queue.
    try:
        rows = await jobs.job_counters(
            since=time.time() - RECENT, bucket=int(RECENT) + 60, by="queue"
        )
    except ConfigError:  # an engine without counters
        return totals
    for row in rows:
        if row.queue is None:
            continue
        outcome = totals.setdefault(row.queue, dict.fromkeys(_OUTCOMES, 0))
        for name in _OUTCOMES:
            outcome[name] += getattr(row, name)
    return totals


async def queue_action(request: Request) -> Response:
    """Pause, resume or scale a queue on every node (a control signal through the
    database), then back to the queues page."""
    name, action = request.path_params["queue"], request.path_params["action"]
    if action not in _DONE:
        raise NotFound(f"no queue action {action!r} (pause, resume or scale)")
    jobs = dashboard(request).jobs
    known = {q.name for q in await jobs.queues()}
    if name not in known:
        shown = ", ".join(sorted(known)) or "none"
        raise BadRequest(f"no queue {name!r} (the queues are: {shown})")
    limit = parse_limit(form(request).get("limit")) if action == "scale" else None
    try:
        if limit is not None:
            await jobs.scale_queue(name, limit)
        elif action == "pause":
            await jobs.pause_queue(name)
        else:
            await jobs.resume_queue(name)
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    extra: dict[str, Any] = {"queue": name} if limit is None else {"queue": name, "limit": limit}
    emit_action(request, action, "queue", count=1, **extra)
    told = f"queue {name} {_DONE[action]}" + (f" to {limit}" if limit is not None else "")
    return redirect(request, url(request, "queues"), flash=f"{told} on every node")


def parse_limit(value: object) -> int:
    """A queue's new limit from a form field.

    Raises:
        BadRequest: It is missing, not a whole number, or out of 1 to 100,000.
    """
    text = value.strip() if isinstance(value, str) else ""
    if not is_whole(text, len(str(_MAX_LIMIT))) or not 1 <= int(text) <= _MAX_LIMIT:
        raise BadRequest(f"limit must be a whole number from 1 to {_MAX_LIMIT:,}, got {value!r}")
    return int(text)


async def nodes_page(request: Request) -> Response:
    """Every node with a heartbeat: age, leader, queues, version, host and pid."""
    jobs = dashboard(request).jobs
    context = {
        "section": "nodes",
        "nodes": await jobs.nodes(),
        "rescue_after": jobs.config.rescue_after,
    }
    return render(request, "nodes.html", context)


async def cron_page(request: Request) -> Response:
    """The app's cron entries with their last and next slot."""
    jobs = dashboard(request).jobs
    return render(request, "cron.html", {"section": "cron", "entries": await jobs.cron_entries()})


def queue_totals(queues: Iterable[QueueInfo]) -> dict[str, int]:
    """Jobs by waiting state over all ``queues`` (the page's total row)."""
    totals = {s.value: 0 for s in WAITING_STATES}
    for queue in queues:
        for state, n in queue.counts.items():
            totals[state.value] += n
    return totals
