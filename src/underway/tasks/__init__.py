"""Ephemeral in-process work for asyncio, with Elixir's Supervisor, Task and GenServer semantics.

Use it for work that is fast and may be lost on a crash or a deploy; work that must
survive belongs in :mod:`underway.jobs`, work that comes from a broker in
:mod:`underway.pipelines`.

- :class:`Supervisor` starts :class:`ChildSpec` children in order (each :class:`Ready`
  before the next), restarts them by strategy (``one_for_one``, ``one_for_all``,
  ``rest_for_one``) and restart type (``permanent``, ``transient``, ``temporary``), gives
  up past its restart intensity (3 in 5 s by default) by stopping its children in reverse
  order and raising to its parent, and stops children honestly: ask, wait, cancel, wait,
  report the one that would not stop. A coroutine cannot be killed, only cancelled.
- :class:`TaskSupervisor` owns fire-and-forget tasks (strong references, crash reports)
  and :class:`TaskHandle` tasks to await, poll (``yield_``), shut down or ignore;
  :func:`yield_many` polls several.
- :func:`async_stream` maps an ``async`` function over a (possibly endless) iterable with
  bounded concurrency, in order or not, with per-item timeouts.
- :class:`Server` is a stateful actor with a bounded mailbox: ``call`` (with a timeout
  that never interrupts the server), ``cast``, info messages, deferred replies
  (:class:`Caller`) and ``terminate``. A :class:`Registry` names running servers and
  children; a name disappears when its task ends.
- :func:`run` / :func:`serve` turn SIGTERM and SIGINT into an ordered, bounded shutdown;
  a second signal hurries it (:meth:`Supervisor.hurry`, :meth:`Ready.on_hurry`).

Telemetry events (see :func:`underway.attach`): ``tasks.supervisor.start``/``stop``/
``give_up``, ``tasks.child.start``/``stop``/``crash``/``restart``/``timeout``,
``tasks.task.start``/``stop``/``crash``/``timeout``, ``tasks.stream.timeout``,
``tasks.server.start``/``stop``/``crash``/``timeout``.
"""

from underway.tasks.child import ChildInfo, ChildSpec, Ready
from underway.tasks.outcome import Exit, Ok
from underway.tasks.registry import Registry, Via
from underway.tasks.root import run, serve
from underway.tasks.server import Caller, Server
from underway.tasks.stream import async_stream
from underway.tasks.supervisor import Supervisor
from underway.tasks.task_supervisor import TaskHandle, TaskSupervisor, yield_many

__all__ = [
    "Caller",
    "ChildInfo",
    "ChildSpec",
    "Exit",
    "Ok",
    "Ready",
    "Registry",
    "Server",
    "Supervisor",
    "TaskHandle",
    "TaskSupervisor",
    "Via",
    "async_stream",
    "run",
    "serve",
    "yield_many",
]
