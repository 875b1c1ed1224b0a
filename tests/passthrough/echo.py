"""A small upstream for pass-through tests, on a real socket: it answers what it received
(method, raw path, query, headers, body size), streams large bodies both ways, redirects to
its own address and answers errors of its own."""

import asyncio
import hashlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

CHUNK = 64 * 1024


@dataclass
class EchoUpstream:
    url: str
    # Every request it received: (method, raw path with query).
    received: list[tuple[str, str]] = field(default_factory=list)


async def _echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path": request.raw_path.partition("?")[0],
            "query": request.query_string,
            "headers": [[k, v] for k, v in request.headers.items()],
            "host": request.host,
            "body": body.decode("utf-8", "replace"),
            "length": len(body),
        }
    )


async def _download(request: web.Request) -> web.StreamResponse:
    size = int(request.query.get("bytes", "0"))
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = size
    await response.prepare(request)
    block = b"x" * CHUNK
    sent = 0
    while sent < size:
        piece = block[: min(CHUNK, size - sent)]
        await response.write(piece)
        sent += len(piece)
    await response.write_eof()
    return response


async def _upload(request: web.Request) -> web.Response:
    digest = hashlib.sha256()
    size = 0
    async for chunk in request.content.iter_chunked(CHUNK):
        digest.update(chunk)
        size += len(chunk)
    return web.json_response({"received": size, "sha256": digest.hexdigest()})


async def _redirect(request: web.Request) -> web.Response:
    own = f"http://{request.host}"
    raise web.HTTPFound(location=f"{own}/files/moved?x=1")


async def _elsewhere(request: web.Request) -> web.Response:
    raise web.HTTPFound(location="https://example.org/away")


async def _fail(request: web.Request) -> web.Response:
    status = int(request.match_info["status"])
    return web.json_response({"detail": f"the upstream's own {status}"}, status=status)


async def _article(request: web.Request) -> web.Response:
    return web.json_response(
        {
            "data": {"headline": "Markets up", "secret": "internal", "id": 7},
            "meta": {"source": "wire"},
        },
        headers={"X-Upstream-Secret": "s3cret", "X-Kept": "yes"},
    )


async def _articles(request: web.Request) -> web.Response:
    return web.json_response(
        [{"headline": "One", "secret": "a"}, {"headline": "Two", "secret": "b"}]
    )


async def _slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "0.5")))
    return web.json_response({"headline": "late", "id": 1})


async def _stall(request: web.Request) -> web.StreamResponse:
    """A head and a first chunk, then nothing for `s` seconds, then the rest."""
    response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
    response.content_length = 2 * CHUNK
    await response.prepare(request)
    await response.write(b"s" * CHUNK)
    await asyncio.sleep(float(request.query.get("s", "30")))
    await response.write(b"s" * CHUNK)
    await response.write_eof()
    return response


async def _hop(request: web.Request) -> web.Response:
    return web.Response(
        text="ok",
        headers={
            "Connection": "X-Hop-Custom",
            "X-Hop-Custom": "drop me",
            "Keep-Alive": "timeout=5",
            "X-End-To-End": "keep me",
        },
    )


def _app(upstream: EchoUpstream) -> web.Application:
    @web.middleware
    async def remember(request: web.Request, handler: Any) -> web.StreamResponse:
        upstream.received.append((request.method, request.raw_path))
        response: web.StreamResponse = await handler(request)
        return response

    app = web.Application(middlewares=[remember], client_max_size=1024**3)
    app.router.add_get("/health", lambda r: web.json_response({"status": "ok"}))
    app.router.add_get("/download", _download)
    app.router.add_post("/upload", _upload)
    app.router.add_put("/upload", _upload)
    app.router.add_get("/files/redirect", _redirect)
    app.router.add_get("/files/elsewhere", _elsewhere)
    app.router.add_route("*", "/fail/{status}", _fail)
    app.router.add_get("/article", _article)
    app.router.add_get("/articles", _articles)
    app.router.add_get("/hop", _hop)
    app.router.add_get("/slow", _slow)
    app.router.add_get("/stall", _stall)
    app.router.add_route("*", "/{tail:.*}", _echo)
    return app


@asynccontextmanager
async def echo_upstream() -> AsyncIterator[EchoUpstream]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    upstream = EchoUpstream(url=f"http://127.0.0.1:{port}")
    runner = web.AppRunner(_app(upstream), access_log=None)
    await runner.setup()
    site = web.SockSite(runner, sock)
    await site.start()
    try:
        yield upstream
    finally:
        await runner.cleanup()
        await asyncio.sleep(0)
