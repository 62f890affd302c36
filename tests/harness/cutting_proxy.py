"""A TCP relay that cuts the connection it carries at a chosen point: the dropped 4G link
between a unit and the controller, with real TLS and HTTP on both ends.

    proxy = CuttingProxy("127.0.0.1", receiver_port)
    await proxy.start()                 # proxy.port: where the client dials
    proxy.cut_after(123_456)            # cut once the client has sent that many more bytes
    ...
    await proxy.close()

A cut closes both sides at once (what the unit sees as a reset, the server as the peer
gone part way through a request). Bytes relayed from the client are counted in `relayed`.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["CuttingProxy"]


class CuttingProxy:
    def __init__(self, target_host: str, target_port: int, *, host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.host = host
        self.port = 0
        self.relayed = 0
        self.cuts = 0
        self._cut_at: int | None = None
        self._cut = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def cut_after(self, more_bytes: int) -> None:
        """Cut the connection once the client has sent `more_bytes` more bytes."""
        self._cut_at = self.relayed + more_bytes
        self._cut = asyncio.Event()

    async def wait_cut(self, within: float) -> None:
        async with asyncio.timeout(within):
            await self._cut.wait()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(OSError):
                await task

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            self._tasks.discard(task)
            return
        try:
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._pump(reader, up_writer, count=True))
                    tg.create_task(self._pump(up_reader, writer, count=False))
            except* (OSError, _Cut):
                pass
        except asyncio.CancelledError:
            # Closed by `close()`. Ending normally: on Python 3.11 asyncio logs a
            # connection handler that ends cancelled as an unhandled exception.
            pass
        finally:
            for w in (writer, up_writer):
                w.transport.abort()
            self._tasks.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool
    ) -> None:
        while data := await reader.read(16 * 1024):
            if count and self._cut_at is not None:
                room = self._cut_at - self.relayed
                if len(data) >= room:
                    if room > 0:
                        writer.write(data[:room])
                        await writer.drain()
                        self.relayed += room
                    self._cut_at = None
                    self.cuts += 1
                    self._cut.set()
                    raise _Cut
            writer.write(data)
            await writer.drain()
            if count:
                self.relayed += len(data)
        raise _Cut  # one side closed: close the other


class _Cut(Exception):
    pass
