"""Defaults of ``underway start`` that cost the database something."""

from __future__ import annotations

from underway.cli._main import start


def test_the_stats_line_is_off_unless_asked_for() -> None:
    """Each stats line counts every job (history included): it must not run by default."""
    option = next(p for p in start.params if p.name == "stats_interval")
    assert option.default == 0.0
