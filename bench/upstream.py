"""A minimal market-data stand-in: canned bytes over HTTP/1.1 keep-alive on a raw uvloop
protocol, so that the upstream is never what limits the bare handler the gateway is
compared with (a uvicorn app sharing a core with the load tool capped it).

It parses only the request line and headers (GET and HEAD, no bodies) and answers with
responses built at start-up: `/health`, `/quotes?symbols=...` (one document per catalogue
symbol; a list is assembled once and kept), anything else 404. Its connection
(`HttpConnection`) also serves `bench.memoized_upstream`, whose answers come later.

    python -m bench.upstream --port N
"""

import argparse
import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Iterable
from functools import lru_cache, partial
from typing import cast
from urllib.parse import parse_qs

import orjson
import uvloop

from backends.catalog import INSTRUMENTS, Instrument

TIMESTAMP = "2026-11-26T15:30:00Z"
HEALTH = b'{"status":"ok","service":"market-data","instance":"bench"}'
NOT_FOUND = b'{"detail":"Not Found"}'
# A request head larger than this is refused rather than buffered without end.
MAX_HEAD_BYTES = 64 * 1024

# A response's head and body.
Response = tuple[bytes, bytes]
Answer = Response | asyncio.Future[Response]


def quote(instrument: Instrument) -> dict[str, object]:
    """A level-1 quote of `instrument` in market-data's shape, fixed at its base price."""
    price = instrument.base_price
    prev_close = round(price * 0.994, 2)
    change = round(price - prev_close, 2)
    return {
        "symbol": instrument.symbol,
        "price": price,
        "change": change,
        "change_pct": round(change / prev_close * 100, 2),
        "bid": round(price - 0.01, 2),
        "ask": round(price + 0.01, 2),
        "open": prev_close,
        "high": round(price * 1.004, 2),
        "low": round(prev_close * 0.996, 2),
        "prev_close": prev_close,
        "volume": instrument.average_daily_volume // 2,
        "timestamp": TIMESTAMP,
    }


def response(status: bytes, body: bytes, *, content_type: bytes = b"application/json") -> Response:
    """A response's head and body, as written for GET (HEAD writes the head alone)."""
    head = (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: " + content_type + b"\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    return head, body


def quotes_document(symbols: Iterable[str]) -> bytes:
    """Quotes of the listed symbols in order; unknown symbols are left out, as market-data
    leaves them out."""
    return orjson.dumps({"quotes": [quote(INSTRUMENTS[s]) for s in symbols if s in INSTRUMENTS]})


def refusal(status: bytes) -> Response:
    """A bodiless error after which the connection closes."""
    return b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n", b""


HEALTH_RESPONSE = response(b"200 OK", HEALTH)
NOT_FOUND_RESPONSE = response(b"404 Not Found", NOT_FOUND)
# What the benchmark's load asks for: each symbol alone, keyed by the raw query string.
SINGLE_QUOTES = {
    f"symbols={symbol}".encode(): response(b"200 OK", quotes_document([symbol]))
    for symbol in INSTRUMENTS
}


@lru_cache(maxsize=1024)
def quotes_response(query: bytes) -> Response:
    """Any other quotes query (lists, extra parameters, percent-encoding)."""
    found = parse_qs(query.decode("latin-1")).get("symbols", [""])
    return response(b"200 OK", quotes_document(found[0].split(",")))


def canned_answer(target: bytes) -> Response:
    path, _, query = target.partition(b"?")
    if path == b"/quotes":
        return SINGLE_QUOTES.get(query) or quotes_response(query)
    if path == b"/health":
        return HEALTH_RESPONSE
    return NOT_FOUND_RESPONSE


class HttpConnection(asyncio.Protocol):
    """One connection: requests may arrive split across reads or several in one read
    (pipelined). `answer` gives a target's response at once or as a future; responses go
    out in request order, those ready in one write per read."""

    def __init__(self, answer: Callable[[bytes], Answer]) -> None:
        self.answer = answer
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        # Responses not yet written, in request order: (answer, with its body, close after).
        self.queue: deque[tuple[Answer, bool, bool]] = deque()
        # A request asked to close, or was refused: nothing after it is read.
        self.finished = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCP transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.finished:
            return
        self.buffer += data
        while not self.finished and (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            request_head = bytes(self.buffer[:end])
            del self.buffer[: end + 4]
            request_line, _, headers = request_head.partition(b"\r\n")
            parts = request_line.split(b" ")
            if len(parts) != 3:
                self._queue(refusal(b"400 Bad Request"), with_body=False, close=True)
            elif parts[0] not in (b"GET", b"HEAD"):
                # Other methods may carry a body, which this server does not read.
                self._queue(refusal(b"405 Method Not Allowed"), with_body=False, close=True)
            else:
                method, target, version = parts
                lowered = headers.lower()
                close = b"connection: close" in lowered or (
                    version == b"HTTP/1.0" and b"connection: keep-alive" not in lowered
                )
                self._queue(self.answer(target), with_body=method == b"GET", close=close)
        if not self.finished and len(self.buffer) > MAX_HEAD_BYTES:
            self._queue(
                refusal(b"431 Request Header Fields Too Large"), with_body=False, close=True
            )
        self._write_ready()

    def _queue(self, answer: Answer, *, with_body: bool, close: bool) -> None:
        self.queue.append((answer, with_body, close))
        self.finished = close
        if isinstance(answer, asyncio.Future):
            answer.add_done_callback(self._answered)

    def _answered(self, _: "asyncio.Future[Response]") -> None:
        self._write_ready()

    def _write_ready(self) -> None:
        """Write the answered responses at the head of the queue, and close after the
        response of a request that asked for it."""
        if self.transport is None:
            return
        out: list[bytes] = []
        while self.queue:
            answer, with_body, close = self.queue[0]
            if isinstance(answer, asyncio.Future):
                if not answer.done():
                    break
                answer = answer.result()
            self.queue.popleft()
            head, body = answer
            out.append(head)
            if with_body:
                out.append(body)
            if close:
                self.transport.write(b"".join(out))
                self.transport.close()
                return
        if out:
            self.transport.write(b"".join(out))


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        partial(HttpConnection, canned_answer), "127.0.0.1", port, backlog=1024
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    arguments = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        uvloop.run(serve(arguments.port))


if __name__ == "__main__":
    main()
