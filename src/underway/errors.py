"""The exceptions underway raises.

One hierarchy for the whole library, with one base per part (``except JobsError``
catches what :mod:`underway.jobs` raises, and so on)::

    UnderwayError
    ├── ConfigError                invalid options, raised where they are given (every part)
    ├── JobsError                  raised by underway.jobs
    │   ├── EnqueueError           args or options rejected at enqueue; nothing is written
    │   ├── DatabaseError          the database cannot be opened, read or written
    │   │   └── DatabaseLocked     another process held the write lock past the busy timeout
    │   ├── UnknownWorker          a job names a worker no node has registered
    │   └── JobTimeout             a job ran past its worker's timeout (recorded on the job)
    ├── PipelinesError             raised by underway.pipelines
    │   └── DecodeError            a broker message's payload could not be decoded
    └── TasksError                 raised by underway.tasks
        ├── TooManyRestarts        a supervisor passed its restart intensity and stopped
        ├── ChildStartError        a supervised child failed before it signalled readiness
        ├── TooManyChildren        a task supervisor is at max_children
        ├── TaskTimeout            a task gave no result in time (also a TimeoutError)
        ├── TaskExited             an awaited task was cancelled before it gave a result
        ├── ServerExited           a server stopped, or was not running, before it replied
        ├── CallTimeout            a server did not reply in time (also a TimeoutError)
        ├── MailboxFull            a server's bounded mailbox has no room
        └── AlreadyRegistered      a name is already taken in a registry

``ConfigError``, ``EnqueueError`` and ``DecodeError`` are also ``ValueError``, so code that
already guards against bad values keeps working; ``TaskTimeout`` and ``CallTimeout`` are
also ``TimeoutError``.
"""

from __future__ import annotations

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
]


class UnderwayError(Exception):
    """Base class of every exception raised by underway."""


class ConfigError(UnderwayError, ValueError):
    """An option is invalid; raised where the option is given."""


class JobsError(UnderwayError):
    """Base class of the exceptions :mod:`underway.jobs` raises (besides ``ConfigError``)."""


class PipelinesError(UnderwayError):
    """Base class of the exceptions :mod:`underway.pipelines` raises (besides ``ConfigError``)."""


class TasksError(UnderwayError):
    """Base class of the exceptions :mod:`underway.tasks` raises (besides ``ConfigError``)."""


class EnqueueError(JobsError, ValueError):
    """A job could not be enqueued (bad args, schema failure); nothing was written."""


class DatabaseError(JobsError):
    """The database cannot be opened, read or written."""


class DatabaseLocked(DatabaseError):
    """Another connection held the database's write lock for longer than the busy timeout."""


class UnknownWorker(JobsError):
    """A job names a worker that is not registered on this node."""


class JobTimeout(JobsError):
    """A job ran for longer than its worker's ``timeout``."""


class DecodeError(PipelinesError, ValueError):
    """A broker message's payload could not be decoded; the message fails with it."""


class TooManyRestarts(TasksError):
    """A supervisor restarted children more than ``max_restarts`` times in ``max_seconds``.

    It stopped its children in reverse order before raising; the last child's exception,
    if any, is the ``__cause__``. A parent supervisor treats this as a crash of the child.
    """


class ChildStartError(TasksError):
    """A supervised child raised before it signalled readiness; its exception is the cause."""


class TooManyChildren(TasksError):
    """A task supervisor already runs ``max_children`` tasks; nothing was started."""


class TaskTimeout(TasksError, TimeoutError):
    """A task gave no result within the timeout (it keeps running unless said otherwise)."""


class TaskExited(TasksError):
    """An awaited task was cancelled before it gave a result; ``reason`` says why."""

    def __init__(self, message: str, reason: object = "cancelled") -> None:
        super().__init__(message)
        self.reason = reason


class ServerExited(TasksError):
    """A server stopped or crashed before it replied, or was not running.

    ``reason`` is ``"noproc"`` (not running), ``"normal"``, ``"shutdown"``, ``"cancelled"``,
    another reason given to ``stop``, or the exception that crashed the server (also the
    ``__cause__``).
    """

    def __init__(self, message: str, reason: object = "noproc") -> None:
        super().__init__(message)
        self.reason = reason


class CallTimeout(TasksError, TimeoutError):
    """A server did not reply to a call in time; the server keeps working, the reply is dropped."""


class MailboxFull(TasksError):
    """A server's bounded mailbox has no room for a message sent without waiting."""


class AlreadyRegistered(TasksError):
    """The name is already registered, by a task that is still running."""
