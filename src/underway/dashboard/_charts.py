"""Line charts as SVG geometry, drawn by the templates (pure: no I/O, no markup).

The functions compute coordinates and tick labels; the templates write the ``<svg>``
elements with them, so every label goes through the templates' escaping.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["COLORS", "Chart", "Series", "bucket_starts", "line_chart", "nice_top", "spark"]

COLORS = {"ok": "#137333", "failed": "#b42318", "other": "#3656d6"}
_LEFT, _RIGHT, _TOP, _BOTTOM = 44, 8, 8, 22  # margins around the plot, in SVG units
_X_TICKS = 6


@dataclass(frozen=True, slots=True)
class Series:
    """One line of a chart.

    Attributes:
        label: What it counts (shown in the legend).
        color: Its stroke colour (one of :data:`COLORS`).
        values: One value per bucket, oldest first.
        points: The polyline's ``x,y`` pairs.
    """

    label: str
    color: str
    values: tuple[int, ...]
    points: str

    @property
    def total(self) -> int:
        """The sum of its values."""
        return sum(self.values)


@dataclass(frozen=True, slots=True)
class Chart:
    """A line chart over time buckets, in a ``width`` by ``height`` SVG view box.

    Attributes:
        title: Its title (for ``<title>`` and ``aria-label``).
        width: The view box's width.
        height: The view box's height.
        series: Its lines.
        top: The value at the top of the scale.
        y_ticks: ``(y, label)`` of the horizontal grid lines, bottom first.
        x_ticks: ``(x, label)`` of the time labels, oldest first.
        left: The plot's left edge (labels of the scale end there).
        right: The plot's right edge.
        bottom: The plot's bottom edge (time labels go below).
    """

    title: str
    width: int
    height: int
    series: tuple[Series, ...]
    top: int
    y_ticks: tuple[tuple[float, str], ...]
    x_ticks: tuple[tuple[float, str], ...]
    left: int
    right: int
    bottom: int


def bucket_starts(end: float, count: int, step: float) -> list[float]:
    """The starts of ``count`` buckets of ``step`` seconds ending at ``end`` (epoch)."""
    return [end - (count - i) * step for i in range(count)]


def nice_top(value: int) -> int:
    """The smallest of 1, 2, 5, 10, 20, 50... at least ``value`` (at least 1)."""
    if value <= 1:
        return 1
    power = int(10 ** math.floor(math.log10(value)))
    for factor in (1, 2, 5, 10):
        if factor * power >= value:
            return factor * power
    raise AssertionError("unreachable")


def line_chart(
    title: str,
    starts: Sequence[float],
    lines: Mapping[str, tuple[str, Sequence[int]]],
    *,
    width: int = 600,
    height: int = 170,
) -> Chart:
    """A chart of ``lines`` (label -> (colour key, one value per bucket)) over the buckets
    starting at ``starts`` (epoch seconds, oldest first).

    Raises:
        ValueError: A line does not have one value per bucket, or there is no bucket.
    """
    if not starts:
        raise ValueError("a chart needs at least one bucket")
    for label, (_, values) in lines.items():
        if len(values) != len(starts):
            raise ValueError(f"{label}: {len(values)} values for {len(starts)} buckets")
    top = nice_top(max((max(v) for _, v in lines.values() if v), default=0))
    right, bottom = width - _RIGHT, height - _BOTTOM
    x_of = _scale(len(starts), _LEFT, right)
    series = tuple(
        Series(
            label=label,
            color=COLORS.get(kind, COLORS["other"]),
            values=tuple(values),
            points=" ".join(
                f"{x_of(i):.1f},{_y(v, top, bottom):.1f}" for i, v in enumerate(values)
            ),
        )
        for label, (kind, values) in lines.items()
    )
    y_ticks = tuple((_y(v, top, bottom), _count(v)) for v in (0, top / 2, top))
    every = max(1, math.ceil(len(starts) / _X_TICKS))
    x_ticks = tuple((x_of(i), _clock(starts[i], starts)) for i in range(0, len(starts), every))
    return Chart(title, width, height, series, top, y_ticks, x_ticks, _LEFT, right, bottom)


def spark(values: Sequence[int], *, width: int = 120, height: int = 24) -> str:
    """The ``x,y`` pairs of a small line of ``values`` in a ``width`` by ``height`` box."""
    if not values:
        return ""
    top = max(1, max(values))
    x_of = _scale(len(values), 1, width - 1)
    return " ".join(f"{x_of(i):.1f},{_y(v, top, height - 1, 1):.1f}" for i, v in enumerate(values))


def _scale(count: int, low: float, high: float) -> Callable[[int], float]:
    step = (high - low) / (count - 1) if count > 1 else 0.0
    return lambda i: low + i * step if count > 1 else (low + high) / 2


def _y(value: float, top: float, bottom: float, upper: float = _TOP) -> float:
    return bottom - (bottom - upper) * (value / top)


def _count(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 1000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def _clock(start: float, starts: Sequence[float]) -> str:
    moment = datetime.fromtimestamp(start, UTC)
    if starts[-1] - starts[0] >= 86_400:
        return moment.strftime("%d %b %H:%M")
    return moment.strftime("%H:%M")
