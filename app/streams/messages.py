"""What a quote stream carries: the quote event, status events and the WebSocket's messages.

The SSE stream sends `quote` events (data: `StreamQuote`, id: the quote's tick, epoch
seconds) and `status` events (data: `StatusEvent`); the WebSocket sends the same as
`QuoteMessage` and `StatusMessage`, answers `SubscribeMessage` and `UnsubscribeMessage`
with `SubscribedMessage`, and a message it cannot take with `ErrorMessage`.
"""

from typing import Annotated, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from app.domain import SYMBOL_PATTERN

# Symbols one stream may follow (the SSE list, or a WebSocket's subscriptions together).
MAX_STREAM_SYMBOLS = 50

UpstreamState = Literal["live", "reconnecting"]
# Why a stream ends; "disconnected" (the client left) is never sent.
CloseReason = Literal[
    "credential-expired", "credential-revoked", "too-slow", "draining", "shutdown", "disconnected"
]

# WebSocket close codes (4000-4999 are the application's).
CLOSE_CODES: dict[CloseReason, int] = {
    "credential-expired": 4401,
    "credential-revoked": 4401,
    "too-slow": 4408,
    # 1012 service restart: reconnect, to another process.
    "draining": 1012,
    "shutdown": 1001,
    "disconnected": 1000,
}


class StreamQuote(BaseModel):
    """One symbol's quote at one tick."""

    symbol: str = Field(examples=["AAPL"])
    price: float
    change: float
    change_pct: float
    bid: float
    ask: float
    volume: int
    timestamp: str = Field(description="The tick, ISO 8601 UTC", examples=["2026-12-01T18:00:00Z"])

    @classmethod
    def fields_of(cls, upstream: dict[str, object]) -> bytes:
        """The JSON of this model from the upstream's quote, without building the model
        (once per symbol and tick, shared by every client)."""
        return orjson.dumps({name: upstream[name] for name in _QUOTE_FIELDS})


_QUOTE_FIELDS = tuple(StreamQuote.model_fields)


class StatusEvent(BaseModel):
    """The state of the stream's upstream, or why the gateway ends the stream."""

    status: UpstreamState | Literal["closing"]
    detail: str
    reason: CloseReason | None = None


class QuoteMessage(BaseModel):
    type: Literal["quote"] = "quote"
    id: str = Field(description="The quote's tick (epoch seconds), as the SSE event id")
    quote: StreamQuote


class StatusMessage(StatusEvent):
    type: Literal["status"] = "status"


class SubscribedMessage(BaseModel):
    """The symbols the socket follows now, after a subscribe or unsubscribe."""

    type: Literal["subscribed"] = "subscribed"
    symbols: list[str]


class ErrorMessage(BaseModel):
    """A client message the gateway could not take; the socket stays open."""

    type: Literal["error"] = "error"
    detail: str


Symbol = Annotated[StrictStr, Field(pattern=SYMBOL_PATTERN)]


class SubscribeMessage(BaseModel):
    """Follow these symbols too (at most 50 on one socket)."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["subscribe"]
    symbols: list[Symbol] = Field(min_length=1, max_length=MAX_STREAM_SYMBOLS)


class UnsubscribeMessage(BaseModel):
    """Stop following these symbols."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["unsubscribe"]
    symbols: list[Symbol] = Field(min_length=1, max_length=MAX_STREAM_SYMBOLS)


ClientMessage = Annotated[SubscribeMessage | UnsubscribeMessage, Field(discriminator="type")]
