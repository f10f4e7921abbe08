"""``/healthz`` (is the database answering?) and ``/metrics`` (Prometheus), behind the
dashboard's read access like every page."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from underway.dashboard._pages import NotFound, dashboard

__all__ = ["routes"]

HEALTH_TIMEOUT = 10.0  # seconds /healthz waits for the database before it reports it down


def routes() -> list[BaseRoute]:
    """The routes of ``/healthz`` and ``/metrics``."""
    return [
        Route("/healthz", healthz, name="healthz"),
        Route("/metrics", metrics, name="metrics"),
    ]


async def healthz(request: Request) -> Response:
    """200 and ``{"ok": true, ...}`` when the database answers; 503 and the error if not."""
    jobs = dashboard(request).jobs
    body: dict[str, Any] = {"ok": True, "database": "ok"}
    try:
        # A look-up by primary key: the cheapest statement that reaches the database.
        await asyncio.wait_for(jobs.get_job(1), HEALTH_TIMEOUT)
    except TimeoutError:
        body = {"ok": False, "database": f"no answer within {HEALTH_TIMEOUT:g}s"}
    except Exception as exc:  # any failure to reach the database is what this reports
        body = {"ok": False, "database": f"{type(exc).__name__}: {exc}"}
    return JSONResponse(body, status_code=200 if body["ok"] else 503)


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
