"""Response compression through the edge: each coding decoded by the test and compared, the
client's q-values, the minimum size, `Vary: Accept-Encoding`, and what is never encoded."""

import asyncio
import gzip
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import brotli
import httpx
import orjson
import pytest
import uvicorn
import zstandard
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from app.cache.codings import negotiate
from app.middleware.edge import EdgeMiddleware
from app.settings import CompressionSettings, Settings

DOCUMENT = orjson.dumps(
    {
        "quotes": [
            {"symbol": f"S{i:04d}", "bid": 100 + i / 7, "ask": 101 + i / 7} for i in range(300)
        ]
    }
)


def _decode(coding: str, body: bytes) -> bytes:
    if coding == "gzip":
        return gzip.decompress(body)
    if coding == "br":
        decoded: bytes = brotli.decompress(body)
        return decoded
    assert coding == "zstd"
    return zstandard.ZstdDecompressor().decompressobj().decompress(body)


async def big(request: Request) -> Response:
    return Response(DOCUMENT, media_type="application/json", headers={"ETag": '"doc"'})


async def small(request: Request) -> Response:
    return Response(b'{"ok":true}', media_type="application/json")


async def events(request: Request) -> Response:
    async def stream() -> AsyncIterator[bytes]:
        for i in range(50):
            yield f"data: {'x' * 100} {i}\n\n".encode()

    return StreamingResponse(stream(), media_type="text/event-stream")


async def encoded(request: Request) -> Response:
    body = gzip.compress(DOCUMENT)
    return Response(body, media_type="application/json", headers={"Content-Encoding": "gzip"})


async def streamed(request: Request) -> Response:
    async def stream() -> AsyncIterator[bytes]:
        for start in range(0, len(DOCUMENT), 1000):
            yield DOCUMENT[start : start + 1000]
            await asyncio.sleep(0)

    return StreamingResponse(stream(), media_type="application/json")


async def no_transform(request: Request) -> Response:
    return Response(
        DOCUMENT, media_type="application/json", headers={"Cache-Control": "no-transform"}
    )


@asynccontextmanager
async def serving(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = Starlette(
        routes=[
            Route("/big", big),
            Route("/small", small),
            Route("/events", events),
            Route("/encoded", encoded),
            Route("/streamed", streamed),
            Route("/no-transform", no_transform),
        ]
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(EdgeMiddleware(app, settings=settings), log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not task.done()
            await asyncio.sleep(0.01)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            yield client
    finally:
        server.should_exit = True
        await task
        sock.close()


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with serving(Settings(environment="test", access_log=False)) as running:
        yield running


async def _raw(client: httpx.AsyncClient, path: str, accept: str) -> tuple[httpx.Response, bytes]:
    async with client.stream("GET", path, headers={"Accept-Encoding": accept}) as response:
        body = b"".join([chunk async for chunk in response.aiter_raw()])
    return response, body


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
async def test_each_coding_decodes_to_the_same_body(client: httpx.AsyncClient, coding: str) -> None:
    response, body = await _raw(client, "/big", coding)
    assert response.status_code == 200
    assert response.headers["content-encoding"] == coding
    assert "accept-encoding" in response.headers["vary"].lower()
    assert int(response.headers["content-length"]) == len(body) < len(DOCUMENT)
    assert _decode(coding, body) == DOCUMENT
    # Each encoding is a representation of its own.
    assert response.headers["etag"] == f'"doc-{coding}"'


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
async def test_streamed_bodies_are_encoded_chunk_by_chunk(
    client: httpx.AsyncClient, coding: str
) -> None:
    response, body = await _raw(client, "/streamed", coding)
    assert response.headers["content-encoding"] == coding
    assert "content-length" not in response.headers
    assert _decode(coding, body) == DOCUMENT


@pytest.mark.parametrize(
    ("accept", "chosen"),
    [
        ("gzip;q=0.5, br;q=0.9, zstd;q=0.1", "br"),
        ("gzip, zstd;q=0.8", "gzip"),
        ("br;q=0, gzip;q=0, *;q=0.2", "zstd"),
        ("gzip, br, zstd", "br"),
        ("*", "br"),
    ],
)
async def test_the_client_q_values_choose_the_coding(
    client: httpx.AsyncClient, accept: str, chosen: str
) -> None:
    response, body = await _raw(client, "/big", accept)
    assert response.headers["content-encoding"] == chosen
    assert _decode(chosen, body) == DOCUMENT


@pytest.mark.parametrize("accept", ["identity", "br;q=0, gzip;q=0, zstd;q=0", "compress", ""])
async def test_no_acceptable_coding_is_the_identity_with_vary(
    client: httpx.AsyncClient, accept: str
) -> None:
    response, body = await _raw(client, "/big", accept)
    assert "content-encoding" not in response.headers
    assert body == DOCUMENT
    assert "accept-encoding" in response.headers["vary"].lower()


async def test_tiny_bodies_event_streams_encoded_and_no_transform_are_left_alone(
    client: httpx.AsyncClient,
) -> None:
    tiny, body = await _raw(client, "/small", "br, gzip, zstd")
    assert "content-encoding" not in tiny.headers
    assert body == b'{"ok":true}'
    assert "vary" not in tiny.headers

    stream, body = await _raw(client, "/events", "br, gzip, zstd")
    assert "content-encoding" not in stream.headers
    assert body.startswith(b"data: ") and body.count(b"\n\n") == 50

    already, body = await _raw(client, "/encoded", "br, zstd")
    assert already.headers["content-encoding"] == "gzip"
    assert gzip.decompress(body) == DOCUMENT

    kept, body = await _raw(client, "/no-transform", "br, gzip, zstd")
    assert "content-encoding" not in kept.headers
    assert body == DOCUMENT


async def test_codings_and_minimum_are_settings() -> None:
    settings = Settings(
        environment="test",
        access_log=False,
        compression=CompressionSettings(codings=["gzip"], minimum_bytes=5),
    )
    async with serving(settings) as client:
        response, body = await _raw(client, "/big", "br, zstd, gzip;q=0.1")
        assert response.headers["content-encoding"] == "gzip"
        assert gzip.decompress(body) == DOCUMENT
        small_response, body = await _raw(client, "/small", "gzip")
        assert small_response.headers["content-encoding"] == "gzip"
        assert gzip.decompress(body) == b'{"ok":true}'


def test_negotiation_follows_rfc_9110() -> None:
    assert negotiate("") is None
    assert negotiate("x-gzip") == "gzip"
    assert negotiate("GZIP;Q=1.0") == "gzip"
    assert negotiate("gzip;q=abc, br;q=2") is None
    assert negotiate("zstd;q=0.5, br;q=0.5") == "br"
    assert negotiate("zstd;q=0.5, br;q=0.5", ("zstd", "br")) == "zstd"
