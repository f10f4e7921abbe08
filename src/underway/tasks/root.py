"""The root of a program: run a supervisor until SIGTERM or SIGINT, then stop it in order.

``run(supervisor)`` is the ``asyncio.run`` of a supervised program. The first signal
starts an ordered shutdown: children stop in reverse start order, each within its own
``shutdown`` seconds, and the whole within ``shutdown_timeout``; past that bound whatever
still runs is cancelled at once. A second signal hurries the shutdown
(:meth:`Supervisor.hurry`): each child, in the same order, is cancelled at once or, if it
registered :meth:`Ready.on_hurry`, told to cut its own stop short. Tasks that would not
stop are reported, and the process exits anyway (``asyncio.run`` would wait for them
forever).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import threading
from collections.abc import Sequence

from underway.tasks._policy import check_timeout
from underway.tasks.child import ChildSpec
from underway.tasks.supervisor import Supervisor

__all__ = ["run", "serve"]

_log = logging.getLogger("underway.tasks")

EXIT_TIMEOUT = 1.0
"""Seconds :func:`run` gives leftover tasks to end after cancelling them at exit."""


async def serve(
    root: Supervisor | Sequence[ChildSpec],
    *,
    shutdown_timeout: float | None = 30.0,
    stop: asyncio.Event | None = None,
) -> None:
    """Start ``root``, run it until SIGTERM/SIGINT or ``stop`` is set, then stop it.

    Signal handlers are installed only in the main thread. A second signal hurries the
    shutdown (:meth:`Supervisor.hurry`). If the caller is cancelled, the same ordered,
    bounded shutdown happens before the cancellation propagates.

    Args:
        root: A supervisor, or child specs for a ``one_for_one`` supervisor named ``root``.
        shutdown_timeout: Bound on the whole shutdown, in seconds (``None``: only the
            children's own ``shutdown`` bounds).
        stop: Set it to stop without a signal.

    Raises:
        ChildStartError: A child failed to start (nothing is left running).
        TooManyRestarts: The supervisor gave up (its children are stopped).
    """
    bound = check_timeout("serve", "shutdown_timeout", shutdown_timeout)
    sup = root if isinstance(root, Supervisor) else Supervisor(root, name="root")
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []

    def on_signal(sig: signal.Signals) -> None:
        if stop.is_set():
            _log.warning("received %s again; hurrying the stop of %r", sig.name, sup.name)
            sup.hurry()
            return
        _log.info(
            "received %s; stopping supervisor %r (a second signal hurries it)", sig.name, sup.name
        )
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
            installed.append(sig)
    try:
        await sup.start()
        try:
            await _until_stopped(sup, stop)
        finally:
            await sup.stop(timeout=bound)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


async def _until_stopped(sup: Supervisor, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    stopped = loop.create_task(stop.wait(), name="underway.tasks.root:stop")
    ended = loop.create_task(sup.wait(), name="underway.tasks.root:wait")
    try:
        await asyncio.wait([stopped, ended], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
        ended.cancel()
        await asyncio.wait([stopped, ended])
    if not ended.cancelled():
        ended.result()  # raises if the supervisor gave up


def run(root: Supervisor | Sequence[ChildSpec], *, shutdown_timeout: float | None = 30.0) -> None:
    """Run ``root`` in a new event loop until SIGTERM/SIGINT, then stop it (see :func:`serve`).

    At exit, tasks left over are cancelled and given :data:`EXIT_TIMEOUT` seconds; those
    that would not stop are logged and the function returns anyway.

    Raises:
        ChildStartError: A child failed to start.
        TooManyRestarts: The supervisor gave up.
    """
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(serve(root, shutdown_timeout=shutdown_timeout))
    finally:
        try:
            _leave(loop)
        finally:
            loop.close()


def _leave(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left, wait a bounded time, and close async generators and executor."""
    left = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in left:
        task.cancel()
    if left:
        loop.run_until_complete(asyncio.wait(left, timeout=EXIT_TIMEOUT))
        stuck = [t.get_name() for t in left if not t.done()]
        if stuck:
            _log.error("exiting with %d task(s) that would not stop: %s", len(stuck), stuck)
        for task in left:
            if task.done() and not task.cancelled() and task.exception() is not None:
                _log.error(
                    "task %s failed while exiting", task.get_name(), exc_info=task.exception()
                )
    for cleanup in (loop.shutdown_asyncgens, loop.shutdown_default_executor):
        try:
            loop.run_until_complete(asyncio.wait_for(cleanup(), EXIT_TIMEOUT))
        except TimeoutError:
            _log.error("exiting before the event loop's cleanup finished")
