"""``Server``: state owned by one task, changed only by the messages it handles in order."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from underway import _telemetry as telemetry
from underway._aio import Service
from underway.errors import CallTimeout, ConfigError, MailboxFull, ServerExited
from underway.tasks._mailbox import Mailbox
from underway.tasks._policy import Restart, check_int, check_seconds
from underway.tasks._shutdown import Phase, shutdown
from underway.tasks.child import ChildSpec, Ready
from underway.tasks.registry import Via

__all__ = ["Caller", "Server"]

_log = logging.getLogger("underway.tasks")

_CALL, _CAST, _INFO, _STOP = 0, 1, 2, 3
_QUIET = frozenset({"normal", "shutdown"})


class Caller:
    """The waiting side of a :meth:`Server.call`, given to ``handle_call``.

    ``handle_call`` usually just returns the reply. To answer later (after other
    messages, from another task), call :meth:`defer` and keep the caller; then
    :meth:`reply` once. A reply to a caller that stopped waiting is dropped.
    """

    __slots__ = ("_future", "_server", "deferred")

    def __init__(self, future: asyncio.Future[Any], server: Server) -> None:
        self._future = future
        self._server = server
        self.deferred = False

    def defer(self) -> None:
        """Do not reply with ``handle_call``'s return value; :meth:`reply` comes later."""
        self.deferred = True

    def reply(self, value: Any) -> None:
        """Send the reply (once; later replies, and replies nobody waits for, are dropped)."""
        if not self._future.done():
            self._future.set_result(value)
        self._server._callers.discard(self)

    @property
    def waiting(self) -> bool:
        """Whether the caller still waits for a reply."""
        return not self._future.done()


class Server(Service):
    """A stateful actor, as Elixir's GenServer: subclass it and override the callbacks.

    One task runs the server; it handles one message at a time, in arrival order, so the
    state (attributes set in :meth:`init` and changed by the callbacks) needs no locks as
    long as only the callbacks touch it. Messages are calls (:meth:`call`, which waits for
    a reply), casts (:meth:`cast`) and info messages (:meth:`send`, :meth:`send_after`).
    The mailbox is bounded: writers wait for room (:meth:`send` raises instead).

    A callback that raises crashes the server: :meth:`terminate` runs with the exception,
    every caller still waiting gets :class:`~underway.errors.ServerExited`, and under a
    supervisor a new incarnation starts with a fresh mailbox and a new :meth:`init`.
    State lives in memory only: a crash or a restart loses it.

    Stopped by its supervisor, the server is asked to stop and runs :meth:`terminate`
    within its ``shutdown`` seconds. A hurried stop (:meth:`Supervisor.hurry`, a second
    SIGTERM or SIGINT) is a kill: the server registers no ``on_hurry``, so its task is
    cancelled at once and :meth:`terminate` does not run, or is cut short if it was
    running. What must survive a hurried stop belongs outside the server (a durable job,
    a database).

    Args:
        name: A label for logs, or ``registry.via(key)`` to register each incarnation
            under ``key`` while it runs.
        mailbox_size: Most messages waiting at once.
        cancel_timeout: Seconds :meth:`stop` waits after cancelling a server that did not
            stop in time before reporting it.

    Raises:
        ConfigError: An option is invalid.
    """

    def __init__(
        self,
        *,
        name: str | Via | None = None,
        mailbox_size: int = 1000,
        cancel_timeout: float = 1.0,
    ) -> None:
        label = type(self).__name__ if name is None else str(name)
        where = f"server {label}"
        if name is not None and not isinstance(name, str | Via):
            raise ConfigError(f"{where}: name must be a string or registry.via(key)")
        self.label = label
        self.via = name if isinstance(name, Via) else None
        self.mailbox_size = check_int(where, "mailbox_size", mailbox_size, 1)
        self.cancel_timeout = check_seconds(where, "cancel_timeout", cancel_timeout)
        self._task: asyncio.Task[Any] | None = None
        self._mailbox = Mailbox(self.mailbox_size)
        self._mailbox.close(ServerExited(f"server {label} is not running", "noproc"))
        self._callers: set[Caller] = set()
        self._stopping: object = None
        self._started = 0.0

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.label!r} {'running' if self.running else 'stopped'}>"

    @property
    def running(self) -> bool:
        """Whether an incarnation is running (from the start of :meth:`init` to its end)."""
        return self._task is not None

    # -- callbacks ------------------------------------------------------------------------

    async def init(self) -> None:
        """Set up the state; runs in the server's task before any message. Raising here
        fails the start."""

    async def handle_call(self, request: Any, caller: Caller) -> Any:
        """Handle a :meth:`call` and return the reply (see :class:`Caller` to defer it)."""
        raise RuntimeError(f"{type(self).__name__} got a call but does not define handle_call")

    async def handle_cast(self, message: Any) -> None:
        """Handle a :meth:`cast`."""
        raise RuntimeError(f"{type(self).__name__} got a cast but does not define handle_cast")

    async def handle_info(self, message: Any) -> None:
        """Handle a message from :meth:`send` or :meth:`send_after` (default: log it)."""
        _log.warning("server %r got an unexpected message: %r", self.label, message)

    async def terminate(self, reason: Any) -> None:
        """Clean up when the server stops: ``reason`` is ``"normal"``, ``"shutdown"``,
        another reason given to :meth:`stop`, or the exception that crashed it. Not called
        when the server's task is cancelled (as a killed process runs no ``terminate``),
        which is what a hurried supervisor does to it."""

    # -- messages -------------------------------------------------------------------------

    async def call(self, request: Any, *, timeout: float | None = 5.0) -> Any:
        """Send ``request`` to ``handle_call`` and wait for the reply.

        A timeout (or the caller being cancelled) does not interrupt the server: it goes
        on with the request, and its reply is dropped.

        Raises:
            CallTimeout: No reply within ``timeout`` seconds (waiting for room included).
            ServerExited: The server is not running, or stopped before replying.
            RuntimeError: Called from the server's own task (it would wait for itself).
        """
        task = self._task
        if task is None or self._stopping is not None:
            raise self._not_running()
        if asyncio.current_task() is task:
            raise RuntimeError(f"server {self.label!r} cannot call itself")
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        caller = Caller(future, self)
        message = (_CALL, request, caller)
        try:
            async with asyncio.timeout(timeout):
                mailbox = self._mailbox
                if len(mailbox.items) < mailbox.size:
                    mailbox.put_nowait(message)
                else:
                    await mailbox.put(message)
                return await future
        except TimeoutError:
            if telemetry.enabled():
                meta = {"server": self.label, "request": request}
                telemetry.emit("tasks.server.timeout", {"timeout": timeout}, meta)
            raise CallTimeout(
                f"server {self.label!r} did not reply to {request!r} within {timeout}s"
            ) from None
        finally:
            if not future.done():
                future.cancel()
            self._callers.discard(caller)

    async def cast(self, message: Any) -> None:
        """Send ``message`` to ``handle_cast``, waiting for room; dropped if not running.

        Raises:
            MailboxFull: No room, and the caller is the server's own task (only it could
                make room: waiting would never end).
        """
        task = self._task
        if task is None or self._stopping is not None:
            return
        if asyncio.current_task() is task:
            self._mailbox.put_nowait((_CAST, message, None))
            return
        try:
            await self._mailbox.put((_CAST, message, None))
        except ServerExited:
            return

    def send(self, message: Any) -> None:
        """Send ``message`` to ``handle_info`` without waiting; dropped if not running.

        Raises:
            MailboxFull: No room in the mailbox.
        """
        if self._task is None or self._stopping is not None:
            return
        self._mailbox.put_nowait((_INFO, message, None))

    def send_after(self, delay: float, message: Any) -> asyncio.TimerHandle:
        """:meth:`send` ``message`` in ``delay`` seconds (cancel the returned handle to
        stop it). If the mailbox is full then, the message is dropped and logged."""
        return asyncio.get_running_loop().call_later(delay, self._send_later, message)

    def _send_later(self, message: Any) -> None:
        try:
            self.send(message)
        except MailboxFull:
            _log.error("server %r: mailbox full, dropped a timed message %r", self.label, message)

    # -- lifecycle ------------------------------------------------------------------------

    def request_stop(self, reason: Any = "normal") -> None:
        """Ask the server to stop with ``reason``; :meth:`terminate` runs, then it ends.

        From one of its own callbacks it stops once that callback returns, and messages
        still queued are dropped (their callers get
        :class:`~underway.errors.ServerExited`). From elsewhere it first handles the
        messages already queued, and refuses new ones. A reason other than ``"normal"``
        or ``"shutdown"`` counts as a crash for a supervisor.
        """
        task = self._task
        if task is None or self._stopping is not None:
            return
        self._stopping = reason
        if asyncio.current_task() is task:
            self._mailbox.items.appendleft((_STOP, reason, None))
        else:
            self._mailbox.force((_STOP, reason, None))

    async def stop(self, reason: Any = "normal", *, timeout: float | None = 5.0) -> None:
        """Ask the server to stop (:meth:`request_stop`) and wait up to ``timeout`` seconds;
        then cancel it, wait ``cancel_timeout``, and report it if it still runs."""
        task = self._task
        if task is None:
            return
        if asyncio.current_task() is task:
            raise RuntimeError(f"server {self.label!r}: use request_stop() from a callback")
        await shutdown(
            [task],
            timeout=timeout,
            cancel_timeout=self.cancel_timeout,
            ask=lambda _: self.request_stop(reason),
            report=self._report_stuck,
        )

    async def start(self) -> None:
        """Run the server in a task of its own; return once :meth:`init` has returned.

        Raises:
            Exception: Whatever ``init`` raised (nothing is left running).
            RuntimeError: Already running.
        """
        if self._task is not None:
            raise RuntimeError(f"server {self.label!r} is already running")
        ready = Ready()
        task = asyncio.get_running_loop().create_task(
            self.run(ready=ready), name=f"underway.tasks.server:{self.label}"
        )
        task.add_done_callback(_retrieve)
        task.add_done_callback(lambda _: ready._ended())
        try:
            started = await ready._wait()
        except asyncio.CancelledError:
            task.cancel()
            await asyncio.wait([task])
            raise
        if not started:
            await asyncio.wait([task])
            if task.cancelled():
                raise ServerExited(
                    f"server {self.label!r} was cancelled while starting", "cancelled"
                )
            error = task.exception()
            raise error or ServerExited(f"server {self.label!r} ended while starting", "normal")

    def child_spec(
        self, *, id: str | None = None, restart: Restart = "permanent", shutdown: float | None = 5.0
    ) -> ChildSpec:
        """A spec to run this server under a :class:`~underway.tasks.Supervisor` (ready once
        :meth:`init` returned; asked to stop with :meth:`request_stop` ``("shutdown")``;
        cancelled at once, without :meth:`terminate`, when the supervisor is hurried)."""
        return ChildSpec(id or self.label, self.run, ready=True, restart=restart, shutdown=shutdown)

    async def run(self, *, ready: Ready | None = None) -> None:
        """Run one incarnation in the calling task: :meth:`init`, messages, :meth:`terminate`.

        Raises:
            Exception: What a callback raised (the server crashed).
            ServerExited: It stopped with a reason other than ``"normal"``/``"shutdown"``.
            RuntimeError: Already running.
        """
        if self._task is not None:
            raise RuntimeError(f"server {self.label!r} is already running")
        self._task = asyncio.current_task()
        self._mailbox, self._stopping, self._started = (
            Mailbox(self.mailbox_size),
            None,
            time.monotonic(),
        )
        reason: Any = "cancelled"
        try:
            if self.via is not None:
                self.via.registry.register(self.via.key, self)
            await self.init()
            if ready is not None:
                ready.on_shutdown(lambda: self.request_stop("shutdown"))
                ready()
            _emit("tasks.server.start", {"system_time": time.time()}, {"server": self.label})
            try:
                reason = await self._serve()
            except Exception as exc:
                reason = exc
            await self.terminate(reason)
        except asyncio.CancelledError:
            reason = "cancelled"
            raise
        except Exception as exc:
            reason = exc
            raise
        finally:
            self._finish(reason)
        if isinstance(reason, BaseException):
            raise reason
        if reason not in _QUIET:
            raise ServerExited(f"server {self.label!r} stopped: {reason!r}", reason)

    async def _serve(self) -> Any:
        mailbox = self._mailbox
        items = mailbox.items
        while True:
            if not items:
                await mailbox.wait()
                continue
            kind, payload, caller = mailbox.take()
            if kind == _CALL:
                self._callers.add(caller)
                reply = await self.handle_call(payload, caller)
                if not caller.deferred:
                    caller.reply(reply)
            elif kind == _CAST:
                await self.handle_cast(payload)
            elif kind == _INFO:
                await self.handle_info(payload)
            else:
                return payload

    def _finish(self, reason: Any) -> None:
        crashed = isinstance(reason, BaseException)
        for _, _, caller in self._mailbox.close(self._exited(reason)):
            if caller is not None:
                self._callers.add(caller)
        callers, self._callers = self._callers, set()
        for caller in callers:
            if not caller._future.done():
                caller._future.set_exception(self._exited(reason))
        self._task, self._stopping = None, None
        duration = {"duration": time.monotonic() - self._started}
        if crashed:
            _log.error("server %r crashed", self.label, exc_info=reason)
            _emit("tasks.server.crash", duration, {"server": self.label, "error": reason})
        else:
            _emit("tasks.server.stop", duration, {"server": self.label, "reason": reason})

    def _exited(self, reason: Any) -> ServerExited:
        error = ServerExited(f"server {self.label!r} exited: {reason!r}", reason)
        if isinstance(reason, BaseException):
            error.__cause__ = reason
        return error

    def _not_running(self) -> ServerExited:
        if self._task is None:
            return ServerExited(f"server {self.label!r} is not running", "noproc")
        return ServerExited(f"server {self.label!r} is stopping", self._stopping)

    def _report_stuck(self, task: asyncio.Task[Any], phase: Phase) -> None:
        _emit("tasks.server.timeout", {}, {"server": self.label, "phase": phase})
        if phase == "cancel":
            _log.error(
                "server %r would not stop even when cancelled; it is left running "
                "(a coroutine cannot be killed)",
                self.label,
            )


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()


def _emit(event: str, measurements: dict[str, Any], metadata: dict[str, Any]) -> None:
    if telemetry.enabled():
        telemetry.emit(event, measurements, metadata)
