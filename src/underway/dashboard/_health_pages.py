"""``/healthz`` (is the database answering?) and ``/metrics`` (Prometheus), behind the
dashboard's read access like every page."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from underway.dashboard._pages import NotFound, dashboard
from underway.errors import ConfigError

__all__ = ["routes"]

HEALTH_TIMEOUT = 5.0  # seconds /healthz gives the database before it reports it down


def routes() -> list[BaseRoute]:
    """The routes of ``/healthz`` and ``/metrics``."""
    return [
        Route("/healthz", healthz, name="healthz"),
        Route("/metrics", metrics, name="metrics"),
    ]


async def healthz(request: Request) -> Response:
    """The :meth:`~underway.jobs.Jobs.health` report as JSON: 200 when every check passed,
    503 when one failed (the database unreachable, migrations not current, or the node
    named by ``?node=NAME`` without a recent heartbeat)."""
    params = request.query_params
    unknown = sorted(set(params) - {"node"})
    if unknown:
        reason = f"unknown parameter {', '.join(map(repr, unknown))}; healthz takes node"
        return JSONResponse({"ok": False, "error": reason}, status_code=400)
    try:
        health = await dashboard(request).jobs.health(
            node=params.get("node"), timeout=HEALTH_TIMEOUT
        )
    except ConfigError as exc:
        return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
    return JSONResponse(health.to_dict(), status_code=200 if health.ok else 503)


async def metrics(request: Request) -> Response:
    """The Prometheus exposition of this process's metrics, when recorded."""
    try:
        from underway import prometheus
    except ModuleNotFoundError:
        raise NotFound(
            "metrics need prometheus-client: pip install 'underway[prometheus]'"
        ) from None
    text = await asyncio.to_thread(prometheus.exposition)
    if b"underway_" not in text:
        raise NotFound(
            "this process records no underway metrics: call underway.prometheus.instrument() "
            "in it (underway start --metrics-port does, for a node)"
        )
    return Response(text, media_type=prometheus.CONTENT_TYPE)
