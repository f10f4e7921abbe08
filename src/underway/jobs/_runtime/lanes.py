"""Threads for sync job bodies, cheaper per job than one pool task and one future each.

A :class:`Lanes` runs callables in threads borrowed from a ``concurrent.futures`` pool and
hands each result to the event loop as an ``asyncio`` future. Handing a body to a thread
and its result back costs more than a short body itself, mostly in thread switches (each
switch also hands over the GIL), so:

- A borrowed thread (a *lane*) runs queued bodies one after another and waits up to
  ``linger`` seconds for more before it returns to the pool: a steady stream of jobs pays
  for no pool task, no ``concurrent.futures.Future`` and no condition variable per job.
- Bodies queued together wake one lane, which runs them in turn. A body that waits in the
  queue longer than ``handoff`` seconds (because the bodies before it are slow) gets a lane
  of its own: the event loop checks the queue every ``handoff`` seconds while it is not
  empty, and wakes or borrows a lane per overdue body. So a short body never pays for a
  thread switch of its own, and a body queued behind a slow one starts at most about
  ``handoff`` later (while the event loop runs) than with one thread per body.
- Results go back to the loop in batches: the first body to finish schedules one callback,
  and every result that arrives before the callback runs is delivered by it.

A lane that found nothing to do within ``linger`` gives its thread back, so an idle node
holds no thread and a pool that is shut down is not kept waiting long."""

from __future__ import annotations

import asyncio
import collections
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor as ThreadPool
from typing import Any

__all__ = ["Lanes"]

# What a lane runs: the body, then a callback run in the thread once the body returned (or
# raised), before the outcome goes to the loop.
_Work = tuple[Callable[[], Any], Callable[[], None], "asyncio.Future[Any]", "_Mailbox"]
_Outcome = tuple["asyncio.Future[Any]", Any, BaseException | None]


class _Mailbox:
    """Outcomes finished in threads, delivered on their loop in batches."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._outcomes: collections.deque[_Outcome] = collections.deque()
        self._scheduled = False

    def post(self, outcome: _Outcome) -> None:
        """Queue ``outcome`` (from any thread); wake the loop unless a delivery is due."""
        self._outcomes.append(outcome)
        if self._scheduled:
            return
        self._scheduled = True
        try:
            self.loop.call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody waits for the outcome any more
            self._scheduled = False

    def _deliver(self) -> None:
        # Cleared before draining: an outcome posted after the last pop schedules another
        # delivery, one posted before it is delivered now.
        self._scheduled = False
        outcomes = self._outcomes
        while outcomes:
            future, value, error = outcomes.popleft()
            if future.done():  # its waiter was cancelled
                continue
            if error is None:
                future.set_result(value)
            else:
                future.set_result(_Raised(error))


class _Raised:
    """A body's exception, carried as a result (``set_exception`` rejects some types)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Lane:
    """One borrowed thread's wake-up lock (released by whoever wakes the lane)."""

    __slots__ = ("wake",)

    def __init__(self) -> None:
        self.wake = threading.Lock()
        self.wake.acquire()


class Lanes:
    """Runs sync callables in threads of ``pool`` and awaits them from the event loop."""

    def __init__(self, pool: ThreadPool, *, linger: float = 0.005, handoff: float = 0.001) -> None:
        self.pool = pool
        self.linger = linger
        self.handoff = handoff
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[float, _Work]] = collections.deque()
        self._idle: list[_Lane] = []  # asleep, the most recently active last
        self._looking = 0  # lanes awake and about to take from the queue (or go idle)
        self._running = 0  # lanes running a body
        self._check: asyncio.TimerHandle | None = None
        self._check_loop: asyncio.AbstractEventLoop | None = None
        self._mailboxes: dict[asyncio.AbstractEventLoop, _Mailbox] = {}

    @property
    def counts(self) -> dict[str, int]:
        """Lanes by state (``idle``, ``looking``, ``running``) and bodies ``queued``."""
        with self._lock:
            return {
                "idle": len(self._idle),
                "looking": self._looking,
                "running": self._running,
                "queued": len(self._queue),
            }

    async def run(self, body: Callable[[], Any], after: Callable[[], None]) -> Any:
        """Run ``body()`` in a thread and return its result (or raise its exception).

        ``after()`` runs in that thread as soon as ``body`` has returned or raised, whether
        or not the caller still waits (and here, before raising, if no thread could be
        borrowed). Cancelling the caller does not stop the thread.

        Raises:
            RuntimeError: No thread could be borrowed (the pool was shut down).
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        work = (body, after, future, self._mailbox(loop))
        with self._lock:
            self._queue.append((time.monotonic(), work))
            wake = self._looking == 0
            if wake:
                self._looking += 1
        if wake:
            try:
                self._wake_one()
            except BaseException:
                if self._unqueue(work):
                    after()
                    raise
                # else a lane that finished meanwhile took it: it runs, nothing is lost
        if self._check is None or self._check_loop is not loop:  # (a closed loop's is dead)
            self._check, self._check_loop = loop.call_later(self.handoff, self._hand_off), loop
        result = await future
        if isinstance(result, _Raised):
            raise result.error
        return result

    def _wake_one(self) -> None:
        """Wake an idle lane, or borrow a thread for a new one (``_looking`` counts it)."""
        with self._lock:
            lane = self._idle.pop() if self._idle else None
        if lane is not None:
            lane.wake.release()
            return
        try:
            self.pool.submit(self._lane)
        except BaseException:
            with self._lock:
                self._looking -= 1
            raise

    def _unqueue(self, work: _Work) -> bool:
        """Take ``work`` back out of the queue; whether it was still there."""
        with self._lock:
            kept = [item for item in self._queue if item[1] is not work]
            found = len(kept) < len(self._queue)
            self._queue = collections.deque(kept)
        return found

    def _fail_queued(self, error: BaseException) -> None:
        """With no lane left to run them, end the queued bodies with ``error``."""
        with self._lock:
            if self._idle or self._looking or self._running:
                return
            queued, self._queue = list(self._queue), collections.deque()
        for _, (_, after, future, box) in queued:
            after()
            box.post((future, None, error))

    def _hand_off(self) -> None:
        """On the loop: a lane for each body queued longer than ``handoff`` seconds."""
        self._check = None
        due = time.monotonic() - self.handoff
        with self._lock:
            overdue = 0
            for queued_at, _ in self._queue:
                if queued_at > due:
                    break
                overdue += 1
            wake = max(0, overdue - self._looking)
            self._looking += wake
            more = bool(self._queue)
        for woken in range(wake):
            try:
                self._wake_one()
            except RuntimeError as exc:  # the pool is shut down: the lanes awake go on
                with self._lock:
                    self._looking -= wake - woken - 1  # (_wake_one took back its own)
                self._fail_queued(exc)
                break
        if more:
            self._check = asyncio.get_running_loop().call_later(self.handoff, self._hand_off)

    def _mailbox(self, loop: asyncio.AbstractEventLoop) -> _Mailbox:
        """``loop``'s mailbox (called on the loop's thread)."""
        box = self._mailboxes.get(loop)
        if box is None:
            for old in [x for x in self._mailboxes if x.is_closed()]:
                del self._mailboxes[old]
            box = self._mailboxes[loop] = _Mailbox(loop)
        return box

    def _next(self, lane: _Lane) -> _Work | None:
        """The next body for a looking ``lane``, or ``None`` to give its thread back."""
        lock = self._lock
        while True:
            with lock:
                if self._queue:
                    self._looking -= 1
                    self._running += 1
                    return self._queue.popleft()[1]
                self._looking -= 1
                self._idle.append(lane)
            if not lane.wake.acquire(timeout=self.linger):
                with lock:
                    if lane in self._idle:  # nobody woke it: give the thread back
                        self._idle.remove(lane)
                        return None
                lane.wake.acquire()  # it was woken just now; the release follows

    def _lane(self) -> None:
        """A borrowed thread: run queued bodies until none came for ``linger`` seconds."""
        lane = _Lane()
        while (work := self._next(lane)) is not None:
            body, after, future, box = work
            value: Any = None
            error: BaseException | None = None
            try:
                value = body()
            except BaseException as exc:  # a body's SystemExit or KeyboardInterrupt included
                error = exc
            finally:
                after()
            with self._lock:
                self._running -= 1
                self._looking += 1
            box.post((future, value, error))
            del work, body, after, future, box, value, error  # hold no job while waiting
