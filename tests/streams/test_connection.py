"""The connection an event stream lends the hub: uvicorn's httptools protocol, chunked
bodies only; any other server writes through ASGI."""

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import httpx
import pytest
import uvicorn
from starlette.types import Receive, Scope, Send

from app.streams.connection import chunked_transport
from app.streams.frames import chunk


class DirectWriter:
    """An ASGI app that sends its head through ASGI, writes `direct` to the connection when
    it has one (else through ASGI), and ends through ASGI; it notes whether it had one."""

    def __init__(self, *, length: int | None = None) -> None:
        self.length = length
        self.lent: list[bool] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        headers = [(b"content-type", b"text/event-stream")]
        if self.length is not None:
            headers.append((b"content-length", str(self.length).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"head\n", "more_body": True})
        transport = chunked_transport()
        self.lent.append(transport is not None)
        if transport is not None:
            transport.write(chunk(b"direct\n"))
        else:
            await send({"type": "http.response.body", "body": b"direct\n", "more_body": True})
        await send({"type": "http.response.body", "body": b"tail\n", "more_body": False})


@asynccontextmanager
async def served(app: DirectWriter, http: Literal["httptools", "h11"]) -> AsyncIterator[str]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, http=http, lifespan="off", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done(), "the server stopped during start-up"
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


async def test_httptools_lends_the_chunked_connection_and_frames_stay_whole() -> None:
    app = DirectWriter()
    async with served(app, "httptools") as url, httpx.AsyncClient(base_url=url) as client:
        first = await client.get("/")
        # Keep-alive: the same connection serves the next request after the direct write.
        second = await client.get("/")

    assert app.lent == [True, True]
    assert first.headers["transfer-encoding"] == "chunked"
    assert first.content == second.content == b"head\ndirect\ntail\n"


@pytest.mark.parametrize("http", ["h11", "in-process"])
async def test_other_servers_write_through_asgi(http: Literal["h11", "in-process"]) -> None:
    app = DirectWriter()
    if http == "h11":
        async with served(app, "h11") as url, httpx.AsyncClient(base_url=url) as client:
            response = await client.get("/")
    else:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/")

    assert app.lent == [False]
    assert response.content == b"head\ndirect\ntail\n"


async def test_a_body_of_declared_length_is_not_chunked_so_not_lent() -> None:
    app = DirectWriter(length=len(b"head\ndirect\ntail\n"))
    async with served(app, "httptools") as url, httpx.AsyncClient(base_url=url) as client:
        response = await client.get("/")

    assert app.lent == [False]
    assert response.content == b"head\ndirect\ntail\n"
