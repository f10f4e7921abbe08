"""underway: background work for Python.

- :mod:`underway.jobs`: durable, database-backed jobs (Oban for Python).
- :mod:`underway.pipelines`: consuming message brokers with back-pressure (Broadway).

Telemetry: :func:`attach` a handler to the events every part emits, or
:func:`attach_logging` to log them.
"""

from underway._telemetry import attach, attach_logging, detach
from underway.errors import (
    ConfigError,
    DatabaseError,
    DatabaseLocked,
    DecodeError,
    EnqueueError,
    JobTimeout,
    UnderwayError,
    UnknownWorker,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DatabaseError",
    "DatabaseLocked",
    "DecodeError",
    "EnqueueError",
    "JobTimeout",
    "UnderwayError",
    "UnknownWorker",
    "__version__",
    "attach",
    "attach_logging",
    "detach",
]
