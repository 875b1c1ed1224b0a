"""What the mobile app's screens show: compact response models, only the fields on screen."""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, computed_field

from app.upstreams.orders import OrderSide, OrderStatus, OrderType


class Mover(BaseModel):
    """A held symbol that moved most today."""

    symbol: str = Field(description="Ticker symbol", examples=["NVDA"])
    price: float = Field(description="Last price", examples=[131.27])
    change_pct: float = Field(
        description="Change since the previous close, in percent", examples=[-3.05]
    )


class HomeView(BaseModel):
    """The home screen: account value, today's result and what needs attention.

    Sections that could not be loaded are null and named in `degraded`.
    """

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "currency": "USD",
                    "equity": 187342.18,
                    "day_pnl": -1523.4,
                    "day_pnl_pct": -0.81,
                    "movers": [
                        {"symbol": "NVDA", "price": 131.27, "change_pct": -3.05},
                        {"symbol": "AMZN", "price": 199.02, "change_pct": 1.64},
                        {"symbol": "XOM", "price": 117.11, "change_pct": -0.92},
                    ],
                    "open_orders": 2,
                    "running_bots": 1,
                    "degraded": [],
                }
            ]
        }
    )

    currency: str = Field(description="Currency of every amount", examples=["USD"])
    equity: float | None = Field(
        description="Cash plus positions at last prices; null when quotes are unavailable"
    )
    day_pnl: float | None = Field(
        description="Equity change since the previous close; null when quotes are unavailable"
    )
    day_pnl_pct: float | None = Field(
        description="`day_pnl` as percent of the previous close's equity"
    )
    movers: list[Mover] | None = Field(
        description="Up to 3 positions with the largest absolute change %, largest first"
    )
    open_orders: int | None = Field(description="Orders still working; null when unavailable")
    running_bots: int | None = Field(description="Trading bots running; null when unavailable")
    degraded: list[Literal["quotes", "orders", "bots"]] = Field(
        description="Sections left out because their service failed: `quotes`, `orders`, `bots`",
        examples=[["bots"]],
    )


class PositionRow(BaseModel):
    """One line of the positions list."""

    symbol: str = Field(description="Ticker symbol", examples=["AAPL"])
    quantity: float = Field(description="Shares held", examples=[150])
    average_cost: float = Field(description="Average price paid per share", examples=[187.42])
    price: float | None = Field(description="Last price; null when quotes are unavailable")
    unrealized_pnl: float | None = Field(
        description="(price - average_cost) x quantity; null without a price", examples=[6181.5]
    )
    unrealized_pnl_pct: float | None = Field(
        description="`unrealized_pnl` as percent of the cost basis", examples=[21.99]
    )


class PositionsPage(BaseModel):
    """A page of positions in symbol order."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "items": [
                        {
                            "symbol": "AAPL",
                            "quantity": 150,
                            "average_cost": 187.42,
                            "price": 228.63,
                            "unrealized_pnl": 6181.5,
                            "unrealized_pnl_pct": 21.99,
                        }
                    ],
                    "next_cursor": "QUFQTA",
                    "degraded": [],
                }
            ]
        }
    )

    items: list[PositionRow] = Field(description="Up to `limit` positions, by symbol")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )
    degraded: list[Literal["quotes"]] = Field(
        description="`quotes` when prices could not be loaded (prices and P&L are then null)"
    )


class CompactQuote(BaseModel):
    """A quote reduced to what a list row shows."""

    symbol: str = Field(description="Ticker symbol", examples=["AAPL"])
    price: float = Field(description="Last price", examples=[228.63])
    change_pct: float = Field(
        description="Change since the previous close, in percent", examples=[0.42]
    )


class QuoteList(BaseModel):
    """Quotes of the requested symbols; unknown symbols are left out."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "quotes": [
                        {"symbol": "AAPL", "price": 228.63, "change_pct": 0.42},
                        {"symbol": "MSFT", "price": 414.1, "change_pct": -0.27},
                    ]
                }
            ]
        }
    )

    quotes: list[CompactQuote] = Field(description="One per known symbol, in request order")


class PlacedOrderView(BaseModel):
    """The order as accepted by the orders service."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "ord-7f3a2c",
                    "id": "ord-7f3a2c",
                    "status": "open",
                    "symbol": "AAPL",
                    "side": "buy",
                    "quantity": 10,
                    "type": "limit",
                }
            ]
        }
    )

    order_id: str = Field(
        description="Order id, named as every frontend names it", examples=["ord-7f3a2c"]
    )
    status: OrderStatus = Field(description="Where the order stands")
    symbol: str = Field(description="Ticker symbol", examples=["AAPL"])
    side: OrderSide = Field(description="Buy or sell")
    quantity: float = Field(description="Shares ordered", examples=[10])
    type: OrderType = Field(description="Market, limit, stop or stop-limit")

    # The id's name before every frontend called it `order_id`; kept while clients move.
    # Marked deprecated in the schema only: pydantic would warn on every serialization.
    @computed_field(  # type: ignore[prop-decorator]
        json_schema_extra={"deprecated": True},
        description="Deprecated: the same as `order_id`; read `order_id` instead",
        examples=["ord-7f3a2c"],
    )
    @property
    def id(self) -> str:
        return self.order_id
