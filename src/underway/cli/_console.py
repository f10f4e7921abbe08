"""Terminal output for the command line: aligned tables, job counts and a live region.

A :class:`LiveRegion` redraws a block of lines in place when its stream is a terminal, and
lets other lines scroll above it. When the stream is a pipe or a file it draws nothing in
place; callers print plain lines at their own pace instead.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping, Sequence
from typing import TextIO

from underway.jobs.job import JobState

__all__ = ["STATES", "LiveRegion", "counts_line", "counts_table", "is_tty", "table"]

STATES: tuple[JobState, ...] = tuple(JobState)
Counts = Mapping[tuple[str, JobState], int]


def is_tty(stream: TextIO) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


def table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, align: str = ""
) -> list[str]:
    """Lay out ``rows`` under ``headers`` in aligned columns.

    Args:
        headers: Column titles.
        rows: One sequence of cells per row (cells are turned into text with ``str``).
        align: One character per column, ``<`` (left, the default) or ``>`` (right, for
            numbers); columns beyond its length are left-aligned.

    Returns:
        The lines, header first, without trailing spaces.
    """
    text = [[str(c) for c in headers], *([str(c) for c in row] for row in rows)]
    widths = [max(len(r[i]) for r in text) for i in range(len(headers))]
    sides = align.ljust(len(headers), "<")
    lines = []
    for row in text:
        cells = [
            cell.rjust(w) if side == ">" else cell.ljust(w)
            for cell, w, side in zip(row, widths, sides, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return lines


def counts_table(counts: Counts, queues: Mapping[str, int]) -> list[str]:
    """Jobs per queue (rows, with their limit) and state (columns), plus a total row.

    Queues found in ``counts`` but missing from ``queues`` are shown with limit ``-``.
    """
    names = list(queues) + sorted({q for q, _ in counts} - set(queues))
    rows: list[list[object]] = []
    for name in names:
        cells = [counts.get((name, s), 0) for s in STATES]
        rows.append([name, queues.get(name, "-"), *cells])
    totals = [sum(counts.get((q, s), 0) for q in names) for s in STATES]
    rows.append(["total", "", *totals])
    headers = ["queue", "limit", *(s.value for s in STATES)]
    return table(headers, rows, align="<" + ">" * (len(headers) - 1))


def counts_line(counts: Counts, queues: Iterable[str]) -> str:
    """One line of non-zero counts per queue, e.g. ``mail: 2 executing, 9 completed``."""
    parts = []
    for queue in queues:
        cells = [f"{counts[(queue, s)]} {s.value}" for s in STATES if counts.get((queue, s))]
        parts.append(f"{queue}: {', '.join(cells) if cells else 'empty'}")
    return " | ".join(parts)


class LiveRegion:
    """A block of lines redrawn in place on a terminal, with log lines scrolling above it.

    Args:
        stream: Where to write (usually ``sys.stdout``).
        tty: Force terminal behaviour on or off; by default it follows ``stream.isatty()``.
    """

    def __init__(self, stream: TextIO, *, tty: bool | None = None) -> None:
        self.stream = stream
        self.tty = is_tty(stream) if tty is None else tty
        self._block: list[str] = []
        self._drawn = 0

    def draw(self, lines: Sequence[str]) -> None:
        """Replace the live block with ``lines`` (on a terminal; otherwise nothing)."""
        if not self.tty:
            return
        self._block = [self._fit(line) for line in lines]
        self._erase()
        self._write_block()

    def print(self, line: str = "") -> None:
        """Print ``line`` above the live block (or simply print it when not a terminal)."""
        if not self.tty:
            self.stream.write(line + "\n")
            self.stream.flush()
            return
        self._erase()
        self.stream.write(line + "\n")
        self._write_block()

    def close(self) -> None:
        """Erase the live block; later :meth:`print` calls simply print."""
        self._erase()
        self._block = []
        self.stream.flush()

    def _erase(self) -> None:
        if self._drawn:
            self.stream.write(f"\x1b[{self._drawn}A\r\x1b[J")
            self._drawn = 0

    def _write_block(self) -> None:
        for line in self._block:
            self.stream.write(line + "\n")
        self._drawn = len(self._block)
        self.stream.flush()

    @staticmethod
    def _fit(line: str) -> str:
        width = shutil.get_terminal_size((100, 24)).columns
        return line if len(line) < width else line[: max(1, width - 2)] + "…"
