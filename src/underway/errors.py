"""The exceptions underway raises.

One hierarchy for the whole library::

    UnderwayError
    ├── ConfigError            invalid options, raised where they are given
    ├── EnqueueError           args or options rejected at enqueue; nothing is written
    ├── DatabaseError          the database cannot be opened, read or written
    │   └── DatabaseLocked     another process held the write lock past the busy timeout
    ├── UnknownWorker          a job names a worker no node has registered
    └── JobTimeout             a job ran past its worker's timeout (recorded on the job)

``ConfigError`` and ``EnqueueError`` are also ``ValueError``, so code that already guards
against bad values keeps working.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DatabaseError",
    "DatabaseLocked",
    "DecodeError",
    "EnqueueError",
    "JobTimeout",
    "UnderwayError",
    "UnknownWorker",
]


class UnderwayError(Exception):
    """Base class of every exception raised by underway."""


class ConfigError(UnderwayError, ValueError):
    """An option is invalid; raised where the option is given."""


class EnqueueError(UnderwayError, ValueError):
    """A job could not be enqueued (bad args, schema failure); nothing was written."""


class DatabaseError(UnderwayError):
    """The database cannot be opened, read or written."""


class DatabaseLocked(DatabaseError):
    """Another connection held the database's write lock for longer than the busy timeout."""


class UnknownWorker(UnderwayError):
    """A job names a worker that is not registered on this node."""


class JobTimeout(UnderwayError):
    """A job ran for longer than its worker's ``timeout``."""


class DecodeError(UnderwayError, ValueError):
    """A broker message's payload could not be decoded; the message fails with it."""
