"""A TCP proxy of the test's own in front of PostgreSQL, to make the config database silent.

`black_hole()`: connections are accepted and everything sent is swallowed; nothing ever
comes back, as from a database host that hangs. `forward()`: bytes are relayed both ways to
the real server. Connections accepted while silent are cut when it forwards again (as a
restarted database would), so clients reconnect.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from tests.fixtures.databases import POSTGRES_ADMIN_DSN


def _postgres_address() -> tuple[str, int]:
    netloc = POSTGRES_ADMIN_DSN.split("@", 1)[1].split("/", 1)[0]
    host, _, port = netloc.partition(":")
    return host, int(port or 5432)


@dataclass
class DatabaseProxy:
    silent: bool = True
    target: tuple[str, int] = field(default_factory=_postgres_address)
    port: int = 0
    _server: asyncio.Server | None = None
    _held: set[asyncio.StreamWriter] = field(default_factory=set)
    _open: set[asyncio.StreamWriter] = field(default_factory=set)
    _tasks: set[asyncio.Task[Any]] = field(default_factory=set)

    def url(self, database: str = "test") -> str:
        """The SQLAlchemy URL of `database` on the real server, reached through the proxy."""
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{database}"

    async def start(self) -> "DatabaseProxy":
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def black_hole(self) -> None:
        self.silent = True

    def forward(self) -> None:
        self.silent = False
        for writer in list(self._held):
            writer.close()
        self._held.clear()

    async def close(self) -> None:
        """Stop accepting and cut every connection; their handlers end on their own."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._open):
            writer.close()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._open.add(writer)
        try:
            if self.silent:
                await self._swallow(reader, writer)
            else:
                await self._relay(reader, writer)
        except OSError:
            pass
        finally:
            self._open.discard(writer)
            self._tasks.discard(task)
            writer.close()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._held.add(writer)
        try:
            while await reader.read(65536):
                pass
        finally:
            self._held.discard(writer)

    async def _relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._open.add(upstream_writer)
        try:
            await asyncio.gather(
                self._pump(reader, upstream_writer), self._pump(upstream_reader, writer)
            )
        finally:
            self._open.discard(upstream_writer)
            upstream_writer.close()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Once silent again, bytes are swallowed both ways: the connection hangs.
        try:
            while data := await reader.read(65536):
                if not self.silent:
                    writer.write(data)
                    await writer.drain()
        finally:
            writer.close()
