"""The bare baseline: one FastAPI handler that calls the same upstream through aiohttp and
returns its bytes. What the gateway is measured against."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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
