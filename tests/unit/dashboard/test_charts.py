"""The charts' geometry: scales, points and tick labels (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from underway.dashboard._charts import COLORS, bucket_starts, line_chart, nice_top, spark

T0 = datetime(2025, 1, 31, 17, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "top"),
    [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (480, 500), (501, 1000)],
)
def test_the_scale_ends_at_a_round_number(value: int, top: int) -> None:
    assert nice_top(value) == top


def test_buckets_end_where_asked() -> None:
    assert bucket_starts(T0, 3, 60) == [T0 - 180, T0 - 120, T0 - 60]


def test_a_chart_places_each_value_in_the_plot() -> None:
    starts = bucket_starts(T0, 3, 60)
    chart = line_chart("q", starts, {"ok": ("ok", [0, 5, 10]), "bad": ("failed", [1, 0, 0])})
    assert chart.top == 10
    ok, bad = chart.series
    assert (ok.color, bad.color) == (COLORS["ok"], COLORS["failed"])
    assert ok.total == 15
    points = [tuple(map(float, p.split(","))) for p in ok.points.split()]
    assert [x for x, _ in points] == [chart.left, (chart.left + chart.right) / 2, chart.right]
    assert points[0][1] == chart.bottom  # 0 at the bottom
    assert points[2][1] == 8.0  # the top of the scale at the top margin
    assert [label for _, label in chart.y_ticks] == ["0", "5", "10"]
    assert [label for _, label in chart.x_ticks] == ["16:57", "16:58", "16:59"]


def test_labels_of_a_long_range_carry_the_day_and_big_counts_shorten() -> None:
    starts = bucket_starts(T0, 168, 3600)
    chart = line_chart("week", starts, {"ok": ("ok", [0] * 167 + [12_000])})
    assert chart.top == 20_000
    assert [label for _, label in chart.y_ticks] == ["0", "10k", "20k"]
    assert len(chart.x_ticks) == 6
    assert chart.x_ticks[0][1] == "24 Jan 17:00"


def test_an_empty_chart_is_flat_and_lines_must_fit_the_buckets() -> None:
    chart = line_chart("idle", [T0], {"ok": ("ok", [0])})
    assert chart.top == 1
    assert chart.series[0].points == f"{(chart.left + chart.right) / 2:.1f},{chart.bottom:.1f}"
    with pytest.raises(ValueError, match="2 values for 3 buckets"):
        line_chart("q", [1.0, 2.0, 3.0], {"ok": ("ok", [1, 2])})
    with pytest.raises(ValueError, match="at least one bucket"):
        line_chart("q", [], {})


def test_a_spark_fills_its_box() -> None:
    assert spark([]) == ""
    assert spark([0, 4], width=10, height=5) == "1.0,4.0 9.0,1.0"
    assert spark([0, 0], width=10, height=5) == "1.0,4.0 9.0,4.0"
