"""Market-data's live quote stream: its own protocol, a WebSocket at ``/stream/quotes``.

A client subscribes and unsubscribes with ``{"op": "subscribe" | "unsubscribe", "symbols":
[...]}`` (acknowledged with ``{"type": "subscribed", "symbols": [...], "unknown": [...]}``)
and receives, at every tick (one per second, on the second), one
``{"type": "quotes", "step": <epoch s>, "quotes": [<Quote>, ...]}`` with the quote of each
symbol it subscribed to, from the same seeded walk as ``GET /quotes``.

For tests and benchmarks:

* ``GET /stream/subscriptions`` - open connections, subscribers per symbol now, and how many
  subscribe requests each symbol has had (``DELETE`` resets the totals);
* ``POST /stream/outage`` ``{"seconds": s}`` - close every stream connection (code 1012) and
  refuse new ones for ``s`` seconds, as a restarting service would;
* ``PUT /stream/tick`` ``{"interval_s": s}`` - publish every ``s`` seconds instead of on each
  second (the current step's quotes again: a busy market's message rate, for backpressure
  tests and benchmarks); ``DELETE`` goes back to once a second.
"""

import asyncio
import contextlib
import time
from collections import Counter
from typing import Literal

import orjson
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from pydantic import BaseModel, Field, ValidationError

from backends.catalog import INSTRUMENTS
from backends.clock import current_step
from backends.quotes import QuoteBoard

# Symbols one connection may hold.
MAX_SYMBOLS_PER_CONNECTION = 500
_SERVICE_RESTART = 1012
_TRY_AGAIN_LATER = 1013
_POLICY_VIOLATION = 1008


class StreamCommand(BaseModel):
    op: Literal["subscribe", "unsubscribe"]
    symbols: list[str] = Field(max_length=MAX_SYMBOLS_PER_CONNECTION)


class Outage(BaseModel):
    seconds: float = Field(gt=0, le=300)


class Tick(BaseModel):
    interval_s: float = Field(ge=0.005, le=1.0)


class SubscriptionCounts(BaseModel):
    connections: int
    active: dict[str, int]
    subscribes: dict[str, int]


class _Connection:
    __slots__ = ("socket", "symbols")

    def __init__(self, socket: WebSocket) -> None:
        self.socket = socket
        self.symbols: set[str] = set()


class QuotePublisher:
    """The stream's connections and the tick that feeds them."""

    def __init__(self, board: QuoteBoard) -> None:
        self._board = board
        self._connections: set[_Connection] = set()
        self.subscribes: Counter[str] = Counter()
        self._down_until = 0.0
        self.interval_s = 1.0
        self._ticker: asyncio.Task[None] | None = None

    def counts(self) -> SubscriptionCounts:
        active: Counter[str] = Counter()
        for connection in self._connections:
            active.update(connection.symbols)
        return SubscriptionCounts(
            connections=len(self._connections),
            active=dict(active),
            subscribes=dict(self.subscribes),
        )

    async def serve(self, socket: WebSocket) -> None:
        if time.monotonic() < self._down_until:
            await socket.close(code=_TRY_AGAIN_LATER)
            return
        await socket.accept()
        connection = _Connection(socket)
        self._connections.add(connection)
        if self._ticker is None or self._ticker.done():
            self._ticker = asyncio.create_task(self._tick(), name="quote-stream-tick")
        try:
            while True:
                raw = await socket.receive_text()
                try:
                    command = StreamCommand.model_validate_json(raw)
                except ValidationError:
                    await socket.close(code=_POLICY_VIOLATION)
                    return
                await self._apply(connection, command)
        except WebSocketDisconnect:
            pass
        finally:
            self._connections.discard(connection)

    async def _apply(self, connection: _Connection, command: StreamCommand) -> None:
        asked = [symbol.strip().upper() for symbol in command.symbols]
        known = [symbol for symbol in dict.fromkeys(asked) if symbol in INSTRUMENTS]
        if command.op == "subscribe":
            fresh = [symbol for symbol in known if symbol not in connection.symbols]
            if len(connection.symbols) + len(fresh) > MAX_SYMBOLS_PER_CONNECTION:
                await connection.socket.close(code=_POLICY_VIOLATION)
                return
            connection.symbols.update(fresh)
            self.subscribes.update(fresh)
        else:
            connection.symbols.difference_update(known)
        unknown = [symbol for symbol in asked if symbol not in INSTRUMENTS]
        ack = {"type": "subscribed", "symbols": sorted(connection.symbols), "unknown": unknown}
        await connection.socket.send_text(orjson.dumps(ack).decode())

    async def outage(self, seconds: float) -> None:
        self._down_until = time.monotonic() + seconds
        for connection in list(self._connections):
            with contextlib.suppress(Exception):
                await connection.socket.close(code=_SERVICE_RESTART)

    async def _tick(self) -> None:
        while self._connections:
            # Just after the second (a timer may fire a little early): a quote's delivery
            # delay is measured from its step.
            interval = self.interval_s
            await asyncio.sleep(interval - time.time() % interval + 0.001)
            step = current_step()
            encoded: dict[str, bytes] = {}
            for connection in list(self._connections):
                if not connection.symbols:
                    continue
                parts = []
                for symbol in connection.symbols:
                    quote = encoded.get(symbol)
                    if quote is None:
                        quote = orjson.dumps(self._board.quote(symbol, step).model_dump())
                        encoded[symbol] = quote
                    parts.append(quote)
                message = b'{"type":"quotes","step":%d,"quotes":[%s]}' % (step, b",".join(parts))
                with contextlib.suppress(Exception):
                    await connection.socket.send_text(message.decode())


def install_quote_stream(app: FastAPI, board: QuoteBoard) -> None:
    """Add the stream and its test controls to the market-data app."""
    publisher = QuotePublisher(board)

    @app.websocket("/stream/quotes")
    async def quote_stream(socket: WebSocket) -> None:
        await publisher.serve(socket)

    @app.get("/stream/subscriptions", response_model=SubscriptionCounts)
    async def subscriptions() -> SubscriptionCounts:
        """Open stream connections and subscriptions per symbol."""
        return publisher.counts()

    @app.delete("/stream/subscriptions", response_model=SubscriptionCounts)
    async def reset_subscriptions() -> SubscriptionCounts:
        """Forget the subscribe totals (open subscriptions stay)."""
        publisher.subscribes.clear()
        return publisher.counts()

    @app.put("/stream/tick", response_model=Tick)
    async def set_tick(body: Tick) -> Tick:
        """Publish every `interval_s` seconds."""
        publisher.interval_s = body.interval_s
        return body

    @app.delete("/stream/tick", response_model=Tick)
    async def reset_tick() -> Tick:
        """Publish once a second again."""
        publisher.interval_s = 1.0
        return Tick(interval_s=1.0)

    @app.post("/stream/outage", status_code=204)
    async def outage(body: Outage) -> None:
        """Close every stream connection and refuse new ones for a while."""
        await publisher.outage(body.seconds)
