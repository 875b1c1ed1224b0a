"""The dashboard row's stand-in upstream (`bench.memoized_upstream`) over real sockets, in
front of a small origin server that counts what it is asked."""

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp import web

from bench.memoized_upstream import listen, stages_floor
from tests.fixtures.web_server import serving

DELAY_S = 0.1
# The origin takes this long for /slow, so that later requests overtake its fetch.
SLOW_ORIGIN_S = 0.2


@dataclass
class Origin:
    url: str
    hits: Counter[str]


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    hits: Counter[str] = Counter()

    async def handle(request: web.Request) -> web.Response:
        hits[request.path_qs] += 1
        if request.path == "/slow":
            await asyncio.sleep(SLOW_ORIGIN_S)
        if request.path == "/missing":
            return web.Response(status=404, text="no such thing")
        return web.json_response({"target": request.path_qs})

    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    async with serving(app) as url:
        yield Origin(url, hits)


@pytest.fixture
async def upstream(origin: Origin) -> AsyncIterator[tuple[str, int]]:
    """The stand-in's host and port, fronting `origin`."""
    async with aiohttp.ClientSession() as session:
        server = await listen(origin.url, port=0, session=session, delay_s=DELAY_S)
        try:
            yield "127.0.0.1", server.sockets[0].getsockname()[1]
        finally:
            server.close()
            await server.wait_closed()


async def read_reply(reader: asyncio.StreamReader) -> Reply:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    status_line, *lines = head.removesuffix("\r\n\r\n").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    body = await reader.readexactly(int(headers["content-length"]))
    return Reply(int(status_line.split(" ")[1]), headers, body)


def get(target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nhost: stand-in\r\n\r\n".encode()


async def fetch(address: tuple[str, int], target: str) -> Reply:
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(get(target))
        return await read_reply(reader)
    finally:
        writer.close()


async def test_the_first_get_is_fetched_and_later_ones_are_answered_from_memory(
    origin: Origin, upstream: tuple[str, int]
) -> None:
    first = await fetch(upstream, "/quotes?symbols=AAPL")
    later = [await fetch(upstream, "/quotes?symbols=AAPL") for _ in range(3)]
    missing = [await fetch(upstream, "/missing") for _ in range(2)]

    assert origin.hits == {"/quotes?symbols=AAPL": 1, "/missing": 1}
    assert first.status == 200
    assert first.body == b'{"target": "/quotes?symbols=AAPL"}'
    assert first.headers["content-type"] == "application/json; charset=utf-8"
    assert all(reply == first for reply in later)
    assert [(reply.status, reply.body) for reply in missing] == [(404, b"no such thing")] * 2
    assert missing[0].headers["content-type"] == "text/plain; charset=utf-8"


async def test_requests_arriving_while_the_origin_is_asked_share_its_one_fetch(
    origin: Origin, upstream: tuple[str, int]
) -> None:
    replies = await asyncio.gather(*(fetch(upstream, "/slow") for _ in range(5)))

    assert origin.hits == {"/slow": 1}
    assert {reply.body for reply in replies} == {b'{"target": "/slow"}'}


async def test_a_kept_answer_comes_after_the_delay_and_concurrent_ones_do_not_queue(
    origin: Origin, upstream: tuple[str, int]
) -> None:
    await fetch(upstream, "/quotes?symbols=MSFT")

    started = time.monotonic()
    await fetch(upstream, "/quotes?symbols=MSFT")
    alone = time.monotonic() - started
    started = time.monotonic()
    await asyncio.gather(*(fetch(upstream, "/quotes?symbols=MSFT") for _ in range(10)))
    together = time.monotonic() - started

    assert alone >= DELAY_S
    assert together >= DELAY_S
    # One after another they would take ten delays.
    assert together < 5 * DELAY_S
    assert origin.hits == {"/quotes?symbols=MSFT": 1}


async def test_pipelined_requests_are_answered_in_order(
    origin: Origin, upstream: tuple[str, int]
) -> None:
    await fetch(upstream, "/kept")
    reader, writer = await asyncio.open_connection(*upstream)
    try:
        # /slow is fetched first; /kept, answered from memory, must still wait behind it.
        writer.write(get("/slow") + get("/kept") + get("/missing") + get("/kept"))
        replies = [await read_reply(reader) for _ in range(4)]
    finally:
        writer.close()

    assert [reply.body for reply in replies] == [
        b'{"target": "/slow"}',
        b'{"target": "/kept"}',
        b"no such thing",
        b'{"target": "/kept"}',
    ]
    assert origin.hits == {"/kept": 1, "/slow": 1, "/missing": 1}


async def test_a_head_request_gets_the_kept_head_without_the_body(
    upstream: tuple[str, int],
) -> None:
    reader, writer = await asyncio.open_connection(*upstream)
    try:
        writer.write(b"HEAD /kept HTTP/1.1\r\nhost: stand-in\r\n\r\n" + get("/kept"))
        head = await reader.readuntil(b"\r\n\r\n")
        after = await read_reply(reader)
    finally:
        writer.close()

    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"content-length: 19\r\n" in head
    assert after.body == b'{"target": "/kept"}'


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
async def test_other_methods_are_refused_and_the_connection_closed(
    origin: Origin, upstream: tuple[str, int], method: str
) -> None:
    reader, writer = await asyncio.open_connection(*upstream)
    try:
        writer.write(
            f"{method} /orders HTTP/1.1\r\ncontent-length: 2\r\n\r\n{{}}".encode() + get("/kept")
        )
        reply = await read_reply(reader)
        rest = await reader.read()
    finally:
        writer.close()

    assert reply.status == 405
    assert reply.headers["connection"] == "close"
    assert rest == b""
    assert not origin.hits


async def test_the_floor_of_two_stages_is_two_delays_and_not_five_queued_ones(
    upstream: tuple[str, int],
) -> None:
    """`stages_floor`: five calls at once, then one, against the stand-in, take two of its
    delays (the five wait side by side), not six."""
    host, port = upstream
    url = f"http://{host}:{port}/kept"
    await fetch(upstream, "/kept")
    p50, p99 = await asyncio.to_thread(stages_floor, [[url] * 5, [url]], seconds=0.5)
    assert 2 * DELAY_S * 1000 <= p50 <= p99
    assert p50 < 3 * DELAY_S * 1000
