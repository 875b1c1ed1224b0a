"""Backpressure: a client that cannot keep up is conflated, then dropped; the others keep
their rate."""

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from app.settings import Settings, StreamSettings
from app.streams.frames import HEARTBEAT_CHUNK
from app.streams.hub import quote_event, status_notice
from app.streams.subscriber import DIRECT_WRITE_BOUND, Subscriber
from backends.catalog import INSTRUMENTS
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.streams.clients import SseReader, sse

# Every symbol a stream may follow: the most bytes per tick for the slow client's buffers.
SYMBOLS = sorted(INSTRUMENTS)[:50]


def _quote(symbol: str, step: int) -> dict[str, object]:
    return {
        "symbol": symbol,
        "price": 100.0 + step,
        "change": 1.0,
        "change_pct": 1.0,
        "bid": 99.0,
        "ask": 101.0,
        "volume": step,
        "timestamp": "2026-12-01T00:00:00Z",
    }


def test_a_buffer_holds_the_latest_quote_per_symbol() -> None:
    subscriber = Subscriber(principal_key="user:alice")
    for step in range(1, 101):
        subscriber.offer(quote_event(_quote("AAPL", step), step))
        subscriber.offer(quote_event(_quote("MSFT", step), step))

    batch = subscriber.take()

    assert [(event.symbol, event.step) for event in batch.quotes] == [
        ("AAPL", 100),
        ("MSFT", 100),
    ]
    assert subscriber.conflated == 198
    assert not subscriber.pending and not subscriber.wake.is_set()


def test_the_quick_take_leaves_anything_but_quotes_to_the_full_one() -> None:
    subscriber = Subscriber(principal_key="user:alice")
    subscriber.offer(quote_event(_quote("AAPL", 1), 1))
    quotes = subscriber.take_quotes()
    subscriber.offer(quote_event(_quote("AAPL", 2), 2))
    subscriber.heartbeat()

    assert quotes is not None and [event.step for event in quotes] == [1]
    assert subscriber.take_quotes() is None
    batch = subscriber.take()
    assert batch.heartbeat and [event.step for event in batch.quotes] == [2]


class FakeConnection:
    """What the hub uses of a lent connection: unsent bytes, closing, writes."""

    def __init__(self) -> None:
        self.unsent = 0
        self.closing = False
        self.written: list[bytes] = []

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.unsent

    def write(self, data: bytes) -> None:
        self.written.append(data)


def _lent(subscriber: Subscriber) -> FakeConnection:
    connection = FakeConnection()
    subscriber.transport = connection  # type: ignore[assignment]
    return connection


def test_a_lent_connection_gets_each_event_as_its_chunk_without_a_wake_up() -> None:
    subscriber = Subscriber(principal_key="user:alice")
    connection = _lent(subscriber)
    events = [quote_event(_quote("AAPL", step), step) for step in (1, 2)]
    live = status_notice("live", "Quotes are live.")

    subscriber.offer(events[0])
    subscriber.offer_status(live)
    subscriber.heartbeat()
    subscriber.offer(events[1])

    assert connection.written == [events[0].chunk, live.chunk, HEARTBEAT_CHUNK, events[1].chunk]
    assert events[0].chunk == b"%x\r\n%s\r\n" % (len(events[0].sse), events[0].sse)
    assert not subscriber.pending and subscriber.status is None
    assert not subscriber.wake.is_set() and subscriber.transport is not None


def test_a_client_behind_is_buffered_and_conflated_until_its_writer_takes_the_buffer() -> None:
    subscriber = Subscriber(principal_key="user:alice")
    connection = _lent(subscriber)
    subscriber.offer(quote_event(_quote("AAPL", 1), 1))
    connection.unsent = DIRECT_WRITE_BOUND + 1

    subscriber.offer(quote_event(_quote("AAPL", 2), 2))
    # Room again, but the connection was taken back: the buffer keeps the order.
    connection.unsent = 0
    subscriber.offer(quote_event(_quote("AAPL", 3), 3))
    subscriber.heartbeat()

    assert len(connection.written) == 1
    assert subscriber.transport is None and subscriber.wake.is_set()
    batch = subscriber.take()
    assert [event.step for event in batch.quotes] == [3] and batch.heartbeat
    assert subscriber.conflated == 1


def test_a_closing_connection_or_stream_takes_no_direct_write() -> None:
    lost, closed = Subscriber(principal_key="user:alice"), Subscriber(principal_key="user:bob")
    lost_connection, closed_connection = _lent(lost), _lent(closed)
    lost_connection.closing = True

    lost.offer(quote_event(_quote("AAPL", 1), 1))
    closed.close("draining")
    closed.offer(quote_event(_quote("AAPL", 1), 1))

    assert lost_connection.written == closed_connection.written == []
    assert lost.transport is None and list(lost.pending) == ["AAPL"]
    assert closed.transport is None and closed.take().closing == "draining"


@pytest.fixture
async def busy_market(platform: Platform) -> AsyncIterator[None]:
    """The market-data stream publishes every 20 ms: the slow client's buffers fill in
    seconds."""
    async with httpx.AsyncClient(timeout=5) as control:
        for url in platform.urls["market-data"]:
            (await control.put(f"{url}/stream/tick", json={"interval_s": 0.02})).raise_for_status()
        try:
            yield
        finally:
            for url in platform.urls["market-data"]:
                await control.delete(f"{url}/stream/tick")


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    streams = StreamSettings(write_stall_s=1.0, heartbeat_s=5.0)
    async with running_gateway(settings.model_copy(update={"streams": streams})) as running:
        yield running


async def _metric(gateway: RunningGateway, name: str) -> float:
    text = (await gateway.client.get("/metrics")).text
    found = re.search(rf"^{name}(?:_total)? (\S+)$", text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


async def _slow_client(
    gateway: RunningGateway, path: str, headers: dict[str, str]
) -> socket.socket:
    """A client that asks for the stream and never reads (a tiny receive buffer)."""
    port = int(gateway.url.rsplit(":", 1)[1])
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    client.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    client.setblocking(False)
    await asyncio.get_running_loop().sock_connect(client, ("127.0.0.1", port))
    request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.items()
    )
    await asyncio.get_running_loop().sock_sendall(client, (request + "\r\n").encode())
    return client


async def _read_to_end(client: socket.socket, timeout_s: float) -> bytes:
    loop = asyncio.get_running_loop()
    received = bytearray()
    async with asyncio.timeout(timeout_s):
        while chunk := await loop.sock_recv(client, 65536):
            received += chunk
    return bytes(received)


async def test_a_slow_client_is_conflated_then_dropped_while_a_fast_one_keeps_its_rate(
    gateway: RunningGateway, platform: Platform, busy_market: None
) -> None:
    headers = await bearer_headers(platform, username="alice")
    path = "/web/v1/stream/quotes?symbols=" + ",".join(SYMBOLS)
    drops_before = await _metric(gateway, "gateway_stream_drops")
    conflated_before = await _metric(gateway, "gateway_stream_conflated_quotes")
    fast_arrivals: list[float] = []

    async def read_fast(stream: SseReader) -> None:
        while True:
            event = await stream.next_event(timeout_s=10)
            if event.event == "quote" and event.data["symbol"] == SYMBOLS[0]:
                fast_arrivals.append(time.monotonic())

    async with (
        httpx.AsyncClient(base_url=gateway.url, timeout=30) as fast_client,
        sse(fast_client, path, **headers) as fast,
    ):
        reader = asyncio.create_task(read_fast(fast))
        slow = await _slow_client(gateway, path, headers)
        started = time.monotonic()
        try:
            while await _metric(gateway, "gateway_stream_drops") <= drops_before:
                assert time.monotonic() - started < 60, "the slow client was never dropped"
                assert not reader.done(), "the fast client's stream stopped"
                await asyncio.sleep(0.5)
            # The fast client keeps getting quotes after the drop too.
            await asyncio.sleep(1.0)
            ended = time.monotonic()
            slow_received = await _read_to_end(slow, timeout_s=10)
        finally:
            slow.close()
            reader.cancel()
    conflated = await _metric(gateway, "gateway_stream_conflated_quotes") - conflated_before

    assert slow_received.startswith(b"HTTP/1.1 200")
    assert conflated >= len(SYMBOLS), "the slow client's buffer never conflated"
    # The fast client got quotes all along, never a second without.
    during = [moment for moment in fast_arrivals if started <= moment <= ended]
    gaps = [b - a for a, b in zip([started, *during], [*during, ended], strict=True)]
    assert len(during) > (ended - started) * 5, (len(during), ended - started)
    assert max(gaps) < 1.0, max(gaps)
