"""Writes finished attempts in batches: one transaction per flush."""

from __future__ import annotations

import asyncio
import logging

from underway import _telemetry as telemetry
from underway._aio import cancel_and_wait
from underway.jobs.engines.base import Engine
from underway.jobs.outcomes import Ack

__all__ = ["Acker"]

_log = logging.getLogger("underway.jobs")
STOP_TIMEOUT = 10.0  # seconds a stop goes on trying to write the acks left
LAST_TRIES = 3.0  # seconds of further attempts once a stop's flush was cut short


class Acker:
    """Collects acks and flushes them every ``interval`` seconds or ``max_batch`` acks.

    A failed flush keeps its acks and is retried; :meth:`stop` flushes what is left.
    """

    def __init__(
        self, engine: Engine, *, node: str, interval: float = 0.005, max_batch: int = 1000
    ) -> None:
        self.engine = engine
        self.node = node
        self.interval = interval
        self.max_batch = max_batch
        self._buffer: list[Ack] = []
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._inflight: list[Ack] = []

    @property
    def pending(self) -> int:
        """Acks not yet written."""
        return len(self._buffer)

    def claims(self) -> set[tuple[int, int]]:
        """``(job id, attempt)`` of the attempts whose ack is buffered or being written."""
        return {(a.job_id, a.attempt) for a in (*self._buffer, *self._inflight)}

    def push(self, ack: Ack) -> None:
        """Queue one ack for the next flush."""
        self._buffer.append(ack)
        self._ready.set()

    async def start(self) -> None:
        """Start flushing."""
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._loop(), name="underway.acker")

    async def stop(self, timeout: float | None = None) -> None:
        """Stop, after writing every ack that was pushed.

        The flush in progress, and the retries of one that failed, get ``timeout``
        seconds (default 10). A flush still in progress then is cancelled and its batch
        goes back to the buffer. Whatever is left then gets :data:`LAST_TRIES` more
        seconds of attempts, each cut short at that limit, so that a write that hung is
        tried again once. Acks still unwritten after that are logged and dropped: their
        jobs stay ``executing`` and are rescued.
        """
        timeout = STOP_TIMEOUT if timeout is None else timeout
        task, self._task = self._task, None
        self._stopping = True
        self._ready.set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if task is not None:
            done, _ = await asyncio.wait([task], timeout=timeout)
            if not done:
                await cancel_and_wait(task)  # the flush puts its batch back when cancelled
        deadline = max(deadline, loop.time() + LAST_TRIES)
        while self._buffer and (left := deadline - loop.time()) > 0:
            try:
                async with asyncio.timeout(left):
                    written = await self.flush()
            except TimeoutError:
                break
            if not written:
                await asyncio.sleep(min(0.1, max(0.0, deadline - loop.time())))
        if self._buffer:
            _log.error("could not write %d acks before stopping", len(self._buffer))

    async def flush(self) -> bool:
        """Write up to ``max_batch`` buffered acks; return whether it succeeded."""
        batch = self._buffer[: self.max_batch]
        if not batch:
            return True
        del self._buffer[: len(batch)]
        self._inflight = batch
        try:
            with telemetry.span("ack", {"node": self.node}) as extra:
                extra["count"] = len(batch)
                await self.engine.ack(batch, self.node)
        except Exception as exc:
            self._buffer[:0] = batch
            _log.warning("writing %d acks failed (%s); will retry", len(batch), exc)
            return False
        except BaseException:
            self._buffer[:0] = batch  # writing them twice is harmless; losing them is not
            raise
        finally:
            self._inflight = []
        return True

    async def _loop(self) -> None:
        failures = 0
        while True:
            await self._ready.wait()
            self._ready.clear()
            if not self._stopping and len(self._buffer) < self.max_batch:
                await asyncio.sleep(self.interval)
            if await self.flush():
                failures = 0
                if self._buffer:
                    self._ready.set()
                elif self._stopping:
                    return
            else:
                failures += 1
                if self._stopping:
                    return  # stop() goes on retrying until its deadline
                await asyncio.sleep(min(0.05 * 2**failures, 5.0))
                self._ready.set()
