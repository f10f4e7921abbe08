"""A TCP proxy on loopback whose link can fail: a database outage for the nodes behind it.

Two ways to fail. :meth:`TcpProxy.cut`: the proxy listens on nothing (a connection attempt
is refused, as by a stopped server) and every connection through it is aborted.
:meth:`TcpProxy.stall`: nothing more is forwarded either way and new connections are
accepted but not forwarded (packets lost in a partition: every call hangs, nothing fails).
:meth:`TcpProxy.restore` ends either: it listens on the same port again, or lets the held
data and connections through. It runs on an event loop in a thread of its own, so the test process
itself stays synchronous; the thread is stopped and joined when the ``with`` block ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from types import TracebackType

__all__ = ["TcpProxy"]


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``host:port`` until cut.

    Args:
        host: Where connections go.
        port: The target's port.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcp-proxy")
        self._server: asyncio.Server | None = None
        self._links: set[asyncio.StreamWriter] = set()
        self._flowing: asyncio.Event | None = None

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._call(self._listen())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    def cut(self) -> None:
        """Stop listening and abort every connection through the proxy."""
        self._call(self._cut())

    def stall(self) -> None:
        """Forward nothing more, and hold new connections, until :meth:`restore`."""
        self._call(self._stall())

    def restore(self) -> None:
        """Listen again on the same port (after a cut); forward again (after a stall)."""
        self._call(self._listen())

    def _call(self, coro: object) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)  # type: ignore[arg-type]

    async def _shutdown(self) -> None:
        await self._cut()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    async def _stall(self) -> None:
        assert self._flowing is not None
        self._flowing.clear()

    async def _listen(self) -> None:
        if self._flowing is None:
            self._flowing = asyncio.Event()
        self._flowing.set()
        if self._server is not None:  # a stall ends: the server still listens
            return
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._links):
            writer.transport.abort()
        self._links.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._links.add(writer)
        assert self._flowing is not None
        await self._flowing.wait()
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self._links.update((writer, up_writer))
        await asyncio.gather(
            self._pump(reader, up_writer, self._flowing),
            self._pump(up_reader, writer, self._flowing),
            return_exceptions=True,
        )
        for w in (writer, up_writer):
            self._links.discard(w)
            w.transport.abort()

    @staticmethod
    async def _pump(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter, flowing: asyncio.Event
    ) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                await flowing.wait()
                writer.write(data)
                await writer.drain()
        writer.transport.abort()
