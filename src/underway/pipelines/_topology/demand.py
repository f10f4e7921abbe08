"""The demand accounting of a running pipeline: what its stages hold, and what to ask for."""

from __future__ import annotations

import asyncio

from underway.pipelines._policy import ProcessorsConfig, demand

__all__ = ["Demand"]


class Demand:
    """Counts the messages a pipeline holds and tells its fetch loops how many to ask for.

    One object is shared by every stage: the producer stage reserves demand before it
    fetches and admits what it got, the processor stage hands messages on to batchers,
    and the acker settles them. Whatever frees room wakes the fetch loops waiting for it.

    Attributes:
        in_flight: Messages taken in and not yet settled (processors and batchers).
        in_processors: Of those, the ones not yet handed to a batcher.
        reserved: Demand asked of producers whose fetch has not returned yet.
    """

    def __init__(self, processors: ProcessorsConfig, capacity: int) -> None:
        self.processors = processors
        self.capacity = capacity
        self.in_flight = 0
        self.in_processors = 0
        self.reserved = 0
        self._freed = asyncio.Event()

    def wanted(self, share: int) -> int:
        """How many messages a fetch loop whose part is ``share`` asks for now (0: wait).

        The processors' demand policy decides from what they hold and what is reserved;
        the pipeline's capacity bounds it, batchers' messages included.
        """
        held = self.in_processors + self.reserved
        return min(
            demand(held, self.processors, share),
            self.capacity - self.in_flight - self.reserved,
        )

    def reserve(self, count: int) -> None:
        """Count ``count`` messages asked of a producer, before the fetch waits."""
        self.reserved += count

    def release(self, count: int) -> None:
        """Forget ``count`` reserved messages (the fetch returned, or asked for fewer)."""
        self.reserved -= count
        self._freed.set()

    def admit(self, count: int) -> None:
        """Count ``count`` messages taken in by the processors."""
        self.in_flight += count
        self.in_processors += count

    def hand_to_batcher(self, count: int = 1) -> None:
        """``count`` messages left the processors for a batcher: their slots are free."""
        self.in_processors -= count
        self._freed.set()

    def settle(self, count: int, *, batched: bool) -> None:
        """``count`` messages were settled, from a batch or straight from the processors."""
        self.in_flight -= count
        if not batched:
            self.in_processors -= count
        self._freed.set()

    @property
    def room_freed(self) -> bool:
        """Whether room was freed since the last :meth:`wait_for_room` began."""
        return self._freed.is_set()

    async def wait_for_room(self) -> None:
        """Wait until a message is settled, handed on, or a reservation released."""
        self._freed.clear()
        await self._freed.wait()

    def reset(self) -> None:
        """Forget every count: the messages still held were abandoned to the broker."""
        self.in_flight = self.in_processors = self.reserved = 0
