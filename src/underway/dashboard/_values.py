"""How values look on the pages: JSON, shortened text, times and durations (pure)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import Any

__all__ = ["FILTERS", "ago", "clip", "compact", "duration", "is_clipped", "pretty", "when"]

CLIP = 160  # characters of a value shown in a list


def _default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    dump = getattr(value, "model_dump", None)  # a pydantic args schema
    if callable(dump):
        return dump(mode="json")
    return repr(value)


def compact(value: Any) -> str:
    """``value`` as one line of JSON (anything not JSON by its ``repr``)."""
    return json.dumps(value, default=_default, ensure_ascii=False, separators=(", ", ": "))


def pretty(value: Any) -> str:
    """``value`` as indented JSON."""
    return json.dumps(value, default=_default, ensure_ascii=False, indent=2, sort_keys=True)


def clip(text: str, limit: int = CLIP) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when cut."""
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_clipped(text: str, limit: int = CLIP) -> bool:
    """Whether :func:`clip` would cut ``text``."""
    return len(str(text)) > limit


def when(moment: datetime | None) -> str:
    """An aware datetime as ``YYYY-MM-DD HH:MM:SS`` UTC (empty for ``None``)."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def ago(moment: datetime | None, now: float | None = None) -> str:
    """How long ago (or from now) ``moment`` is, in its largest unit: ``3m ago``, ``in 2h``."""
    if moment is None:
        return ""
    seconds = (time.time() if now is None else now) - moment.timestamp()
    text = duration(abs(seconds))
    if abs(seconds) < 1:
        return "now"
    return f"{text} ago" if seconds > 0 else f"in {text}"


def duration(seconds: float | None) -> str:
    """Seconds in their largest unit: ``850ms``, ``12s``, ``4m 05s``, ``3h 12m``, ``2d 4h``."""
    if seconds is None:
        return ""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{whole}s"
    minutes, secs = divmod(whole, 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


FILTERS = {
    "compact": compact,
    "pretty": pretty,
    "clip": clip,
    "is_clipped": is_clipped,
    "when": when,
    "ago": ago,
    "duration": duration,
}
