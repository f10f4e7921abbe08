"""Reading control signals back from ``underway_signals`` exactly once per engine.

Signals are rows stamped with the server's clock when published. A reader remembers the
server's clock of its last read and the ids it has seen; each read takes the rows since that
clock minus a margin (a publish that committed late is still found) and skips the ids
already seen. A NOTIFY tells the engine when reading is worth a round trip at all.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from underway.jobs.engines.postgres._pool import Rows

__all__ = ["SignalCursor"]

_log = logging.getLogger("underway.jobs")
_MARGIN = 5.0  # seconds a publish may take to commit and still be read


class SignalCursor:
    """Where this engine is in the stream of signals."""

    def __init__(self) -> None:
        self.clock: float | None = None
        self.dirty = True
        self._seen: dict[int, float] = {}

    def since(self) -> float:
        """The publication time (epoch seconds) the next read starts from."""
        return 0.0 if self.clock is None else self.clock - _MARGIN

    def skip(self, listening: bool) -> bool:
        """Whether a read can be skipped: nothing was notified and notifications work."""
        return self.clock is not None and listening and not self.dirty

    def take(self, rows: Rows) -> list[dict[str, Any]]:
        """The new signals among ``rows`` (none on the first read, which sets the start)."""
        first = self.clock is None
        found: list[dict[str, Any]] = []
        for sid, payload, at, clock in rows:
            self.clock = clock
            if sid is None or sid in self._seen:
                continue
            self._seen[sid] = at
            signal = json.loads(payload)
            if not isinstance(signal, dict):
                _log.warning("control signal %d ignored: not a JSON object: %.200r", sid, payload)
            elif not first:
                found.append(signal)
        if self.clock is not None:
            horizon = self.clock - 2 * _MARGIN
            self._seen = {k: at for k, at in self._seen.items() if at >= horizon}
        return found
