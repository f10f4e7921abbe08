"""underway: background work for Python.

- :mod:`underway.jobs`: durable, database-backed jobs (Oban for Python).
- :mod:`underway.pipelines`: consuming message brokers with back-pressure (Broadway).
- :mod:`underway.tasks`: ephemeral in-process work: supervisors, tasks, servers.

Telemetry: :func:`attach` a handler to the events every part emits, or
:func:`attach_logging` to log them.
"""

from underway._telemetry import attach, attach_logging, detach
from underway.errors import (
    AlreadyRegistered,
    CallTimeout,
    ChildStartError,
    ConfigError,
    DatabaseError,
    DatabaseLocked,
    DecodeError,
    EnqueueError,
    JobsError,
    JobTimeout,
    MailboxFull,
    PipelinesError,
    ServerExited,
    TaskExited,
    TasksError,
    TaskTimeout,
    TooManyChildren,
    TooManyRestarts,
    UnderwayError,
    UnknownWorker,
)

__version__ = "0.1.0"

__all__ = [
    "AlreadyRegistered",
    "CallTimeout",
    "ChildStartError",
    "ConfigError",
    "DatabaseError",
    "DatabaseLocked",
    "DecodeError",
    "EnqueueError",
    "JobTimeout",
    "JobsError",
    "MailboxFull",
    "PipelinesError",
    "ServerExited",
    "TaskExited",
    "TaskTimeout",
    "TasksError",
    "TooManyChildren",
    "TooManyRestarts",
    "UnderwayError",
    "UnknownWorker",
    "__version__",
    "attach",
    "attach_logging",
    "detach",
]
