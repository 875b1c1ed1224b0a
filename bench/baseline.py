"""The bare baseline: one FastAPI handler that calls the same upstream through aiohttp and
returns its bytes. What the gateway is measured against.

`raw` is the same forward as a plain ASGI callable, no framework: the floor of Python and
aiohttp for this request, counted by `bench.instructions` beside the others (it shows what
any gateway written on them could reach, not a row of `make bench`'s wall clock)."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs

import aiohttp
from fastapi import FastAPI, Request, Response

UPSTREAM = os.environ.get("BENCH_UPSTREAM", "http://127.0.0.1:9201")


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, aiohttp.ClientSession]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
    try:
        yield {"session": session}
    finally:
        await session.close()


app = FastAPI(lifespan=lifespan)


@app.get("/quotes")
async def quotes(request: Request, symbols: str) -> Response:
    """Forward to the upstream and return its body."""
    session: aiohttp.ClientSession = request.state.session
    async with session.get(f"{UPSTREAM}/quotes", params={"symbols": symbols}) as upstream:
        body = await upstream.read()
    return Response(body, media_type="application/json")


class RawForward:
    """The handler above as a plain ASGI app: query read, upstream called, bytes returned."""

    def __init__(self) -> None:
        self.session: aiohttp.ClientSession | None = None

    @asynccontextmanager
    async def lifespan_context(self, app: Any) -> AsyncIterator[dict[str, Any]]:
        self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=200))
        try:
            yield {}
        finally:
            await self.session.close()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert self.session is not None
        symbols = parse_qs(scope["query_string"].decode("latin-1")).get("symbols", [""])[0]
        async with self.session.get(f"{UPSTREAM}/quotes", params={"symbols": symbols}) as upstream:
            body = await upstream.read()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


raw = RawForward()
