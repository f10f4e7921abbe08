"""Pieces every side-by-side benchmark's parent process shares."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from urllib.parse import urlsplit

__all__ = ["ratios", "server_reachable"]


def ratios(figures: Mapping[str, float], pairs: Mapping[str, tuple[str, str]]) -> dict[str, float]:
    """``{name: ours / theirs}`` for each ``name: (ours, theirs)`` pair both figures exist for."""
    out = {}
    for name, (ours, theirs) in pairs.items():
        a, b = figures.get(ours), figures.get(theirs)
        if a and b:
            out[name] = round(a / b, 2)
    return out


def server_reachable(url: str, default_port: int, what: str) -> str | None:
    """``None`` if something listens at the URL's host and port, else why not."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or default_port
    try:
        with socket.create_connection((host, port), timeout=5):
            return None
    except OSError as exc:
        return f"no {what} at {host}:{port} ({exc})"
