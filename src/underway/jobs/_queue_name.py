"""Queue names: what a valid one looks like. A leaf module: it imports nothing of jobs."""

from __future__ import annotations

import re

from underway.errors import ConfigError

__all__ = ["validate_queue_name"]

_QUEUE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")


def validate_queue_name(queue: object) -> str:
    """Return ``queue`` if it is a valid queue name, else raise :class:`ConfigError`.

    A name is 1 to 128 letters, digits, ``_``, ``.``, ``:`` or ``-``, starting with a
    letter or digit.
    """
    if not isinstance(queue, str) or not _QUEUE_RE.match(queue):
        raise ConfigError(
            f"queue name must be 1-128 letters, digits, '_', '.', ':' or '-', got {queue!r}"
        )
    return queue
