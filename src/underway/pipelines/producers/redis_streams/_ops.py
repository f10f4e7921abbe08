"""Redis Streams commands behind :class:`RedisStreamProducer`, each one round trip or two.

Entries are read, reclaimed, given back and settled here; the producer decides when. A
dead-lettered entry is copied to the dead-letter stream by a Lua script that acknowledges
it first and copies it only if the acknowledgement removed it from the pending list, so a
retried or concurrent dead-lettering never writes the same entry twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.typing import StreamIdT

_log = logging.getLogger("underway.pipelines.redis")

#: Errors after which a command is retried on a new connection.
CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, OSError)

#: Idle time given to entries handed back to the group, so any consumer reclaims them at once.
GIVE_BACK_IDLE_MS = 10 * 365 * 24 * 3600 * 1000

#: Fields added to a dead-lettered entry, after the entry's own fields.
ORIGIN_ID = b"underway.origin_id"
ORIGIN_STREAM = b"underway.origin_stream"
ORIGIN_GROUP = b"underway.group"
DELIVERIES = b"underway.deliveries"
REASON = b"underway.reason"

_MAX_REASON = 1000

# KEYS: stream, dead-letter stream. ARGV: group, k, k plain ids to acknowledge (sent to XACK
# 1,000 at a time), then per dead entry: id, n, n field/value pairs. Returns how many
# entries were dead-lettered.
_SETTLE_LUA = """
local k = tonumber(ARGV[2])
local i = 3
while i < 3 + k do
  local last = math.min(i + 999, 2 + k)
  redis.call('XACK', KEYS[1], ARGV[1], unpack(ARGV, i, last))
  i = last + 1
end
local moved = 0
while i <= #ARGV do
  local n = tonumber(ARGV[i + 1])
  if redis.call('XACK', KEYS[1], ARGV[1], ARGV[i]) == 1 then
    redis.call('XADD', KEYS[2], '*', unpack(ARGV, i + 2, i + 1 + 2 * n))
    moved = moved + 1
  end
  i = i + 2 + 2 * n
end
return moved
"""


@dataclass(slots=True)
class Entry:
    """A stream entry handed to this consumer: its id, raw fields and delivery count."""

    id: str
    fields: dict[bytes, bytes] | None
    deliveries: int
    settling: bool = False


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """An entry to move to the dead-letter stream, and why."""

    entry: Entry
    reason: str
    deliveries: int


def text_fields(fields: dict[bytes, bytes]) -> dict[str, str]:
    """The default decoder: field names and values decoded as UTF-8."""
    return {key.decode(): value.decode() for key, value in fields.items()}


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for logs and errors)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def text(value: bytes | str) -> str:
    """A stream id or name as ``str``."""
    return value.decode() if isinstance(value, bytes) else value


def describe(reason: Any) -> str:
    """A short text for a failure reason, stored with a dead-lettered entry."""
    if isinstance(reason, BaseException):
        described = f"{type(reason).__name__}: {reason}"
    else:
        described = str(reason)
    return described[:_MAX_REASON]


class Outage:
    """Logs a lost connection once, when it starts, and once more when it ends."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.since: float | None = None

    def failed(self, doing: str, exc: BaseException) -> None:
        """Note that ``doing`` failed with ``exc`` (a connection error)."""
        if self.since is None:
            self.since = time.monotonic()
            _log.warning(
                "Redis at %s is unreachable while %s (%s: %s); retrying every %.3g s",
                self.url,
                doing,
                type(exc).__name__,
                exc,
                self.interval,
            )
        else:
            _log.debug("Redis at %s still unreachable while %s: %s", self.url, doing, exc)

    def recovered(self) -> None:
        """Note that a command succeeded."""
        if self.since is not None:
            _log.info(
                "Redis at %s is reachable again after %.1f s",
                self.url,
                time.monotonic() - self.since,
            )
            self.since = None


def is_nogroup(exc: BaseException) -> bool:
    """Whether ``exc`` says that the stream or its consumer group does not exist."""
    return isinstance(exc, ResponseError) and str(exc).startswith("NOGROUP")


class StreamOps:
    """The commands of one consumer of one group on one stream.

    Args:
        client: The connected client.
        stream: The stream's key.
        group: The consumer group.
        consumer: This consumer's name in the group.
        dead_letter_stream: Where dead-lettered entries go (``None``: nowhere).
    """

    def __init__(
        self,
        client: Redis,
        stream: str,
        group: str,
        consumer: str,
        dead_letter_stream: str | None,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.dead_letter_stream = dead_letter_stream
        self._settle_script = client.register_script(_SETTLE_LUA)

    async def ensure_group(self, start_id: str) -> bool:
        """Create the group (and the stream) if missing; ``True`` if it was created."""
        try:
            await self.client.xgroup_create(self.stream, self.group, start_id, mkstream=True)
        except ResponseError as exc:
            if str(exc).startswith("BUSYGROUP"):
                return False
            raise
        return True

    async def group_exists(self) -> bool:
        """Whether the stream exists and has the group."""
        try:
            groups = await self.client.xinfo_groups(self.stream)
        except ResponseError as exc:
            if "no such key" in str(exc).lower():
                return False
            raise
        return any(text(g["name"]) == self.group for g in groups)

    async def read(self, count: int, block_ms: int) -> list[Entry]:
        """New entries (``XREADGROUP >``), waiting up to ``block_ms`` for the first."""
        reply: Any = await self.client.xreadgroup(
            self.group, self.consumer, {self.stream: ">"}, count=count, block=block_ms
        )
        return [
            Entry(text(entry_id), fields, 1)
            for _stream, items in reply or ()
            for entry_id, fields in items
        ]

    async def autoclaim(
        self, min_idle_ms: int, cursor: str, count: int
    ) -> tuple[str, list[tuple[str, dict[bytes, bytes] | None]]]:
        """``XAUTOCLAIM`` from ``cursor``: the next cursor and the claimed ``(id, fields)``."""
        reply = await self.client.xautoclaim(
            self.stream, self.group, self.consumer, min_idle_ms, cursor, count=count
        )
        return text(reply[0]), [(text(entry_id), fields) for entry_id, fields in reply[1]]

    async def delivery_counts(self, ids: Sequence[str]) -> list[int | None]:
        """Each id's delivery count, or ``None`` when it is no longer pending."""
        pipe = self.client.pipeline(transaction=False)
        for entry_id in ids:
            pipe.xpending_range(self.stream, self.group, entry_id, entry_id, 1)
        replies = await pipe.execute()
        return [int(reply[0]["times_delivered"]) if reply else None for reply in replies]

    async def set_deliveries(self, counts: Iterable[tuple[str, int]], idle_ms: int | None) -> None:
        """Set the delivery count of pending entries, given as ``(id, count)`` pairs.

        With ``idle_ms`` the entries also get that idle time (a large one hands them back
        to the group at once); without, their idle time restarts from zero.
        """
        by_count: dict[int, list[StreamIdT]] = {}
        for entry_id, count in counts:
            by_count.setdefault(count, []).append(entry_id)
        if not by_count:
            return
        pipe = self.client.pipeline(transaction=False)
        for count, ids in by_count.items():
            pipe.xclaim(
                self.stream,
                self.group,
                self.consumer,
                0,
                ids,
                idle=idle_ms,
                retrycount=count,
                justid=True,
            )
        await pipe.execute()

    async def settle(self, ack_ids: Sequence[str], dead: Sequence[DeadLetter]) -> None:
        """Acknowledge ``ack_ids`` and move ``dead`` to the dead-letter stream, atomically."""
        if not dead:
            if ack_ids:
                await self.client.xack(self.stream, self.group, *ack_ids)
            return
        assert self.dead_letter_stream is not None
        args: list[bytes | str | int] = [self.group, len(ack_ids), *ack_ids]
        for item in dead:
            fields = dict(item.entry.fields or {})
            fields[ORIGIN_ID] = item.entry.id.encode()
            fields[ORIGIN_STREAM] = self.stream.encode()
            fields[ORIGIN_GROUP] = self.group.encode()
            fields[DELIVERIES] = str(item.deliveries).encode()
            fields[REASON] = item.reason.encode("utf-8", "replace")
            args += [item.entry.id, len(fields)]
            for key, value in fields.items():
                args += [key, value]
        await self._settle_script(keys=[self.stream, self.dead_letter_stream], args=args)

    async def unblock_readers(self, client_name: str) -> int:
        """Wake this client's connections blocked in ``XREADGROUP``; how many were woken."""
        woken = 0
        for info in await self.client.client_list():
            if (
                info.get("name") == client_name
                and "b" in info.get("flags", "")
                and info.get("cmd") == "xreadgroup"
            ):
                woken += bool(await self.client.client_unblock(int(info["id"])))
        return woken

    async def forget_consumer(self) -> bool:
        """Remove this consumer from the group if it holds no pending entry."""
        held = await self.client.xpending_range(
            self.stream, self.group, "-", "+", 1, consumername=self.consumer
        )
        if held:
            return False
        await self.client.xgroup_delconsumer(self.stream, self.group, self.consumer)
        return True
