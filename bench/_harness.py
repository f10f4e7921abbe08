"""Pieces every side-by-side benchmark's parent process shares."""

from __future__ import annotations

import socket
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["Spread", "best_median", "ratios", "server_reachable", "spread", "spreads"]


@dataclass(frozen=True)
class Spread:
    """The median, lowest and highest of a figure's runs, and how many runs there were."""

    median: float
    low: float
    high: float
    runs: int

    def as_dict(self, digits: int = 2) -> dict[str, float]:
        """``{"median", "min", "max", "runs"}``, rounded to ``digits``."""
        return {
            "median": round(self.median, digits),
            "min": round(self.low, digits),
            "max": round(self.high, digits),
            "runs": self.runs,
        }

    def said(self) -> str:
        """``"1,234 (min 1,100, max 1,300, 3 runs)"`` for a printed line."""
        return f"{self.median:,.0f} (min {self.low:,.0f}, max {self.high:,.0f}, {self.runs} runs)"


def spread(values: Sequence[float]) -> Spread:
    """The :class:`Spread` of one figure's runs (at least one)."""
    if not values:
        raise ValueError("a spread needs at least one run")
    return Spread(statistics.median(values), min(values), max(values), len(values))


def spreads(runs: Mapping[str, Sequence[float]]) -> dict[str, Spread]:
    """:func:`spread` of every figure that has runs."""
    return {name: spread(values) for name, values in runs.items() if values}


def best_median(
    runs: Mapping[str, Sequence[float]], prefix: str, *, lowest: bool = False
) -> tuple[str, Spread] | None:
    """The figure starting with ``prefix`` whose median is best, and its spread.

    Highest median wins (rates), or lowest with ``lowest`` (times). Each configuration is
    judged by its median over its own runs, never by its luckiest run. ``None`` when no
    figure has the prefix.
    """
    found = [(name, spread(v)) for name, v in runs.items() if name.startswith(prefix) and v]
    if not found:
        return None
    sign = -1.0 if lowest else 1.0
    return max(found, key=lambda item: (sign * item[1].median, item[0]))


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
