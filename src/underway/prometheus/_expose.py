"""The exposition: the text a scrape reads, and a plain HTTP server that answers with it."""

from __future__ import annotations

import os
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from underway.errors import ConfigError

__all__ = [
    "CONTENT_TYPE",
    "MetricsServer",
    "exposition",
    "forget_process",
    "scrape_registry",
    "serve",
]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of :func:`exposition`'s text (what Prometheus reads by default)."""


def scrape_registry() -> CollectorRegistry:
    """The registry a scrape reads.

    In multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` set), a new registry that merges
    the files of every process (the live and the dead: counters keep counting across a
    restart); else prometheus-client's ``REGISTRY``.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not path:
        return REGISTRY
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    return registry


def exposition(registry: CollectorRegistry | None = None) -> bytes:
    """The metrics in Prometheus' text format, to serve with :data:`CONTENT_TYPE`.

    Args:
        registry: The registry to read (default: :func:`scrape_registry`).
    """
    return generate_latest(scrape_registry() if registry is None else registry)


def forget_process(pid: int) -> None:
    """In multiprocess mode, drop the gauges of process ``pid``, which has exited.

    Its counters and histograms stay (they keep what it counted). Outside multiprocess mode
    it does nothing.
    """
    path = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if path:
        mark_process_dead(pid, path)  # type: ignore[no-untyped-call]


class MetricsServer:
    """An HTTP server answering every ``GET`` (``/metrics`` included) in its own thread."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread

    @property
    def address(self) -> tuple[str, int]:
        """The host and port it listens on (the port picked when 0 was asked)."""
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def close(self) -> None:
        """Stop answering and close the socket. Calling it again does nothing."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def serve(
    port: int,
    *,
    addr: str = "0.0.0.0",  # noqa: S104 - Prometheus scrapes from another host
    registry: CollectorRegistry | None = None,
) -> MetricsServer:
    """Answer scrapes at ``http://addr:port/metrics`` until :meth:`MetricsServer.close`.

    Args:
        port: The TCP port; 0 picks a free one (see :attr:`MetricsServer.address`).
        addr: The address to listen on.
        registry: What to expose (default: :func:`scrape_registry`).

    Raises:
        ConfigError: The address cannot be listened on (the port is taken, say).
    """
    try:
        server, thread = start_http_server(
            port, addr, scrape_registry() if registry is None else registry
        )
    except OSError as exc:
        raise ConfigError(f"cannot serve metrics on {addr}:{port}: {exc}") from exc
    return MetricsServer(server, thread)
