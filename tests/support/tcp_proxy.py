"""A TCP proxy a test can cut and restore: a database outage without touching the database.

Put it in front of the shared PostgreSQL and point a Weir at its port. ``cut()`` closes every
connection through it and refuses new ones (what clients see when the server is down);
``restore()`` listens again on the same port. The shared server never notices more than a few
client connections ending.
"""

from __future__ import annotations

import asyncio
import socket
from types import TracebackType

__all__ = ["TcpProxy"]

_CHUNK = 64 * 1024


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``target_host:target_port`` until cut."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = _free_port()
        self.accepted = 0
        """Connections accepted so far (a test can check the client really went through)."""

    @property
    def is_cut(self) -> bool:
        return self._server is None

    async def __aenter__(self) -> TcpProxy:
        await self.restore()
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.cut()

    async def restore(self) -> None:
        """Listen (again) on ``port``: new connections go through from now on."""
        if self._server is None:
            self._server = await asyncio.start_server(
                self._serve, "127.0.0.1", self.port, reuse_address=True
            )

    async def cut(self) -> None:
        """Refuse new connections and drop every open one, as a database that went away."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        pipes = list(self._pipes)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    async def _serve(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter
    ) -> None:
        self.accepted += 1
        self._writers.add(client)
        try:
            upstream_reader, upstream = await asyncio.open_connection(*self._target)
        except OSError:
            self._writers.discard(client)
            client.transport.abort()
            return
        self._writers.add(upstream)
        for reader, writer in ((client_reader, upstream), (upstream_reader, client)):
            pipe = asyncio.create_task(self._pump(reader, writer, (client, upstream)))
            self._pipes.add(pipe)
            pipe.add_done_callback(self._pipes.discard)

    async def _pump(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        ends: tuple[asyncio.StreamWriter, asyncio.StreamWriter],
    ) -> None:
        """Copy one direction until either side closes; then close both ends."""
        try:
            while chunk := await reader.read(_CHUNK):
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        finally:
            for end in ends:
                self._writers.discard(end)
                end.transport.abort()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
