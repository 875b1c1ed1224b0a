"""What partner systems receive and send: full quotes, candles, order entry per account, and
the caller's own plan and usage."""

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from app.domain import ACCOUNT_ID_PATTERN
from app.frontends.order_entry import OrderRequest
from app.upstreams.orders import OrderSide, OrderStatus, OrderType, TimeInForce


class UpstreamJSON(JSONResponse):
    """JSON bytes an upstream produced, sent on as they are: no parse, no re-encode.

    A `JSONResponse` so OpenAPI documents the route's response model for it.
    """

    def render(self, content: Any) -> bytes:
        body: bytes = content
        return body


class PartnerQuote(BaseModel):
    """A level-1 quote."""

    symbol: str = Field(description="Ticker symbol", examples=["AAPL"])
    price: float = Field(description="Last trade price", examples=[228.63])
    change: float = Field(description="Change since the previous close", examples=[0.96])
    change_pct: float = Field(description="`change` in percent of `prev_close`", examples=[0.42])
    bid: float = Field(description="Best bid", examples=[228.6])
    ask: float = Field(description="Best ask", examples=[228.66])
    open: float = Field(description="Today's opening price", examples=[227.9])
    high: float = Field(description="Today's high", examples=[229.4])
    low: float = Field(description="Today's low", examples=[227.15])
    prev_close: float = Field(description="Previous session's close", examples=[227.67])
    volume: int = Field(description="Shares traded today", examples=[31250412])
    timestamp: datetime = Field(description="Time of the quote (UTC)")


class PartnerQuotes(BaseModel):
    """Quotes of the requested symbols, in request order; unknown symbols are left out."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "quotes": [
                        {
                            "symbol": "AAPL",
                            "price": 228.63,
                            "change": 0.96,
                            "change_pct": 0.42,
                            "bid": 228.6,
                            "ask": 228.66,
                            "open": 227.9,
                            "high": 229.4,
                            "low": 227.15,
                            "prev_close": 227.67,
                            "volume": 31250412,
                            "timestamp": "2026-11-26T15:04:05Z",
                        }
                    ]
                }
            ]
        }
    )

    quotes: list[PartnerQuote] = Field(description="One per known symbol, in request order")


class CandleInterval(StrEnum):
    """Width of one candle."""

    one_minute = "1m"
    five_minutes = "5m"
    fifteen_minutes = "15m"
    one_hour = "1h"
    one_day = "1d"


class CandleRange(StrEnum):
    """How far back the series reaches."""

    one_day = "1d"
    five_days = "5d"
    one_month = "1mo"
    three_months = "3mo"
    six_months = "6mo"
    one_year = "1y"


class PartnerCandle(BaseModel):
    """One OHLCV bar."""

    t: datetime = Field(description="Start of the bar (UTC)")
    o: float = Field(description="Open", examples=[227.9])
    h: float = Field(description="High", examples=[228.4])
    l: float = Field(description="Low", examples=[227.7])  # noqa: E741 - the OHLC convention
    c: float = Field(description="Close", examples=[228.2])
    v: int = Field(description="Volume", examples=[412503])


class PartnerCandles(BaseModel):
    """OHLCV bars of one symbol, oldest first (at most the latest 500)."""

    model_config = ConfigDict(
        validate_by_name=True,
        serialize_by_alias=True,
        json_schema_extra={
            "examples": [
                {
                    "symbol": "AAPL",
                    "interval": "5m",
                    "range": "1d",
                    "candles": [
                        {
                            "t": "2026-11-26T14:30:00Z",
                            "o": 227.9,
                            "h": 228.4,
                            "l": 227.7,
                            "c": 228.2,
                            "v": 412503,
                        }
                    ],
                }
            ]
        },
    )

    symbol: str = Field(description="Ticker symbol", examples=["AAPL"])
    interval: CandleInterval = Field(description="The requested candle width")
    span: CandleRange = Field(alias="range", description="The requested range")
    candles: list[PartnerCandle] = Field(description="Oldest first")


class PartnerOrderRequest(OrderRequest):
    """A new order for one of the partner's linked accounts."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "account_id": "ACC-2001",
                    "symbol": "MSFT",
                    "side": "buy",
                    "type": "limit",
                    "quantity": 25,
                    "limit_price": 410.0,
                    "time_in_force": "day",
                }
            ]
        },
    )

    account_id: str = Field(
        pattern=ACCOUNT_ID_PATTERN,
        description="The account to trade in; must be linked to the partner",
        examples=["ACC-2001"],
    )

    def order(self) -> OrderRequest:
        """The order itself, without the account it is for."""
        return OrderRequest.model_construct(**self.model_dump(exclude={"account_id"}))


class PartnerOrder(BaseModel):
    """An order as the orders service holds it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "ord-7f3a2c",
                    "account_id": "ACC-2001",
                    "symbol": "MSFT",
                    "side": "buy",
                    "type": "limit",
                    "quantity": 25,
                    "limit_price": 410.0,
                    "stop_price": None,
                    "time_in_force": "day",
                    "status": "open",
                    "filled_quantity": 0,
                    "average_fill_price": None,
                    "created_at": "2026-11-26T15:04:05Z",
                    "updated_at": "2026-11-26T15:04:05Z",
                }
            ]
        }
    )

    order_id: str = Field(description="Order id", examples=["ord-7f3a2c"])
    account_id: str = Field(description="The account the order is in", examples=["ACC-2001"])
    symbol: str = Field(description="Ticker symbol", examples=["MSFT"])
    side: OrderSide = Field(description="Buy or sell")
    type: OrderType = Field(description="Market, limit, stop or stop-limit")
    quantity: float = Field(description="Shares ordered")
    limit_price: float | None = Field(None, description="Set for limit and stop-limit orders")
    stop_price: float | None = Field(None, description="Set for stop and stop-limit orders")
    time_in_force: TimeInForce = Field(description="How long the order works")
    status: OrderStatus = Field(description="Where the order stands")
    filled_quantity: float = Field(description="Shares filled so far")
    average_fill_price: float | None = Field(None, description="Null until something fills")
    created_at: datetime = Field(description="When the order was accepted (UTC)")
    updated_at: datetime = Field(description="Last change of status or fill (UTC)")


class QuotaView(BaseModel):
    """One period's quota; `limit` and `remaining` are null when the plan sets none."""

    limit: int | None
    used: int
    remaining: int | None
    resets_at: datetime = Field(description="When the period ends (UTC)")


class RatesView(BaseModel):
    rate_per_second: float | None
    rate_per_minute: int | None
    max_in_flight: int | None


class UsageView(BaseModel):
    """Who the caller is to the gateway and how much of its plan it has used."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "consumer": "acme-trading",
                    "consumer_id": 7,
                    "plan": "partner-basic",
                    "scopes": ["candles:read", "quotes:read"],
                    "account_ids": ["ACC-2001"],
                    "rates": {"rate_per_second": 5, "rate_per_minute": 200, "max_in_flight": 10},
                    "day": {
                        "limit": 10000,
                        "used": 42,
                        "remaining": 9958,
                        "resets_at": "2026-11-27T00:00:00Z",
                    },
                    "month": {
                        "limit": 250000,
                        "used": 1234,
                        "remaining": 248766,
                        "resets_at": "2026-12-01T00:00:00Z",
                    },
                }
            ]
        }
    )

    consumer: str
    consumer_id: int | None
    plan: str | None
    scopes: list[str]
    account_ids: list[str]
    rates: RatesView
    day: QuotaView
    month: QuotaView
