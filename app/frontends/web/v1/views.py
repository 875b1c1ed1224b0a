"""What the trading dashboard shows: the web frontend's response models.

Money is rounded to cents and percentages to two decimals. A section that could not be
fetched is `null` and its name is listed in the view's `degraded`, so the page can show
what it has and say what is missing.
"""

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from app.frontends.paging import SECTION_LIMIT
from app.upstreams.bots import BotStatus
from app.upstreams.orders import OrderSide, OrderStatus, OrderType, TimeInForce

_QUOTE_DERIVED = "Null when the live quote is missing (`quotes` in `degraded`, or no quote for it)."
_FIRST = f"at most the first {SECTION_LIMIT}"

# The optional sections each view may leave out, as `degraded` names them.
DashboardSection = Literal["watchlists", "quotes", "sparklines", "orders", "bots", "news"]
SymbolDetailSection = Literal["info", "candles", "news", "position", "orders"]
PositionsSection = Literal["quotes"]


class ChartRange(StrEnum):
    """How far back a chart reaches."""

    d1 = "1d"
    d5 = "5d"
    mo1 = "1mo"
    mo3 = "3mo"
    mo6 = "6mo"
    y1 = "1y"


class ChartInterval(StrEnum):
    """The width of one candle."""

    m1 = "1m"
    m5 = "5m"
    m15 = "15m"
    h1 = "1h"
    d1 = "1d"


class OrderStatusFilter(StrEnum):
    """Which orders a listing shows."""

    open = "open"
    filled = "filled"
    cancelled = "cancelled"
    all = "all"


class EquityBasis(StrEnum):
    """How the account's equity was valued."""

    live = "live"
    cost = "cost"


_ACCOUNT_EXAMPLE: JsonDict = {
    "account_id": "ACC-1001",
    "currency": "USD",
    "equity": 215_734.18,
    "equity_basis": "live",
    "cash": 43_912.57,
    "buying_power": 87_825.14,
    "prev_close_equity": 214_002.4,
    "day_pnl": 1_731.78,
    "day_pnl_pct": 0.81,
}


class AccountSummaryView(BaseModel):
    """Balances and today's result of the account."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ACCOUNT_EXAMPLE]})

    account_id: str = Field(description="The account the dashboard belongs to")
    currency: str = Field(description="ISO 4217 currency of every amount in the view")
    equity: float = Field(
        description=(
            "Cash plus every position at its live price. When a position has no live quote "
            "(quotes degraded or missing), it is valued at its average cost instead and "
            "`equity_basis` is `cost`."
        )
    )
    equity_basis: EquityBasis = Field(
        description="`live` when every position was valued at a live price, else `cost`"
    )
    cash: float = Field(description="Settled cash")
    buying_power: float = Field(description="What the account can spend on new orders")
    prev_close_equity: float = Field(description="Equity at the previous close")
    day_pnl: float | None = Field(
        description=(
            "Equity minus the previous close's equity. Null unless `equity_basis` is `live`: "
            "a cost-based equity would make the day's result meaningless."
        )
    )
    day_pnl_pct: float | None = Field(
        description="`day_pnl` as a percentage of the previous close's equity; null with it"
    )


_POSITION_EXAMPLE: JsonDict = {
    "symbol": "AAPL",
    "quantity": 150,
    "average_cost": 187.42,
    "cost_basis": 28_113.0,
    "price": 191.27,
    "change_pct": 0.84,
    "market_value": 28_690.5,
    "unrealized_pnl": 577.5,
    "unrealized_pnl_pct": 2.05,
}


class PositionView(BaseModel):
    """One holding, valued at the live quote when there is one."""

    model_config = ConfigDict(json_schema_extra={"examples": [_POSITION_EXAMPLE]})

    symbol: str = Field(description="Ticker symbol")
    quantity: float = Field(description="Shares held; fractions allowed")
    average_cost: float = Field(description="Average price paid per share")
    cost_basis: float = Field(description="Quantity times average cost")
    price: float | None = Field(description=f"Last trade price. {_QUOTE_DERIVED}")
    change_pct: float | None = Field(
        description=f"Today's price change in percent. {_QUOTE_DERIVED}"
    )
    market_value: float | None = Field(description=f"Quantity times price. {_QUOTE_DERIVED}")
    unrealized_pnl: float | None = Field(
        description=f"Market value minus cost basis. {_QUOTE_DERIVED}"
    )
    unrealized_pnl_pct: float | None = Field(
        description=f"Unrealised P&L as a percentage of the cost basis. {_QUOTE_DERIVED}"
    )


_WATCHLIST_ITEM_EXAMPLE: JsonDict = {
    "symbol": "NVDA",
    "price": 104.12,
    "change": 1.37,
    "change_pct": 1.33,
    "sparkline": [102.75, 103.1, 102.9, 103.8, 104.12],
}


class WatchlistItemView(BaseModel):
    """One watched symbol: its price and today's line."""

    model_config = ConfigDict(json_schema_extra={"examples": [_WATCHLIST_ITEM_EXAMPLE]})

    symbol: str = Field(description="Ticker symbol")
    price: float | None = Field(description=f"Last trade price. {_QUOTE_DERIVED}")
    change: float | None = Field(description=f"Today's price change. {_QUOTE_DERIVED}")
    change_pct: float | None = Field(
        description=f"Today's price change in percent. {_QUOTE_DERIVED}"
    )
    sparkline: list[float] | None = Field(
        description=(
            "Today's prices, oldest first, ending with the live price. Null when sparklines "
            "could not be fetched (`sparklines` in `degraded`) or the symbol has none."
        )
    )


_WATCHLIST_EXAMPLE: JsonDict = {
    "watchlist_id": "wl-1001-tech",
    "name": "Tech Leaders",
    "items": [_WATCHLIST_ITEM_EXAMPLE],
    "items_total": 1,
}


class WatchlistView(BaseModel):
    """A named list of symbols the user follows."""

    model_config = ConfigDict(json_schema_extra={"examples": [_WATCHLIST_EXAMPLE]})

    watchlist_id: str = Field(description="Identifier of the watchlist")
    name: str = Field(description="The name the user gave it")
    items: list[WatchlistItemView] = Field(
        description=f"The watched symbols in the user's order, {_FIRST}"
    )
    items_total: int = Field(description="How many symbols the watchlist holds")


_ORDER_EXAMPLE: JsonDict = {
    "order_id": "ord_3f9a1c2b7d4e",
    "symbol": "AAPL",
    "side": "buy",
    "type": "limit",
    "quantity": 10,
    "filled_quantity": 0,
    "limit_price": 187.5,
    "stop_price": None,
    "average_fill_price": None,
    "time_in_force": "day",
    "status": "open",
    "created_at": "2026-11-26T14:31:07Z",
    "updated_at": "2026-11-26T14:31:07Z",
}


class OrderView(BaseModel):
    """An order as the order blotter shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ORDER_EXAMPLE]})

    order_id: str = Field(description="Identifier of the order")
    symbol: str = Field(description="Ticker symbol")
    side: OrderSide = Field(description="Buy or sell")
    type: OrderType = Field(description="Order type")
    quantity: float = Field(description="Shares ordered")
    filled_quantity: float = Field(description="Shares filled so far")
    limit_price: float | None = Field(description="Limit price; null for market and stop orders")
    stop_price: float | None = Field(description="Stop price; null for market and limit orders")
    average_fill_price: float | None = Field(description="Average fill price; null until filled")
    time_in_force: TimeInForce = Field(description="How long the order stays working")
    status: OrderStatus = Field(description="Where the order stands")
    created_at: datetime = Field(description="When the order was placed")
    updated_at: datetime = Field(description="When the order last changed")


_ORDERS_EXAMPLE: JsonDict = {
    "status": "open",
    "symbol": None,
    "orders": [_ORDER_EXAMPLE],
    "total": 10_777,
    "next_cursor": "b3JkXzNmOWExYzJiN2Q0ZQ",
}


class OrdersView(BaseModel):
    """A page of the user's orders, newest first."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ORDERS_EXAMPLE]})

    status: OrderStatusFilter = Field(description="The status filter that was applied")
    symbol: str | None = Field(description="The symbol filter that was applied; null for all")
    orders: list[OrderView] = Field(description="Up to `limit` matching orders, newest first")
    total: int = Field(description="How many orders match the filters, on every page")
    next_cursor: str | None = Field(
        description=(
            "Pass as `cursor` for the next page; null on the last page. Orders placed while "
            "paging appear on the first page, never twice."
        )
    )


_POSITIONS_PAGE_EXAMPLE: JsonDict = {
    "items": [_POSITION_EXAMPLE],
    "total": 42,
    "next_cursor": "QUFQTA",
    "degraded": [],
}


class PositionsPage(BaseModel):
    """A page of the user's holdings in symbol order, valued at live quotes."""

    model_config = ConfigDict(json_schema_extra={"examples": [_POSITIONS_PAGE_EXAMPLE]})

    items: list[PositionView] = Field(description="Up to `limit` holdings, by symbol")
    total: int = Field(description="How many holdings the account has")
    next_cursor: str | None = Field(
        description="Pass as `cursor` for the next page; null on the last page"
    )
    degraded: list[PositionsSection] = Field(
        description="`quotes` when prices could not be loaded (prices and P&L are then null)"
    )


_BOT_EXAMPLE: JsonDict = {
    "bot_id": "bot-momentum-1",
    "name": "Momentum scalper",
    "strategy": "momentum",
    "status": "running",
    "symbols": ["AAPL", "MSFT"],
    "pnl_today": 412.35,
    "trades_today": 17,
    "started_at": "2026-11-26T14:30:00Z",
}


class BotView(BaseModel):
    """One trading bot and how it is doing today."""

    model_config = ConfigDict(json_schema_extra={"examples": [_BOT_EXAMPLE]})

    bot_id: str = Field(description="Identifier of the bot")
    name: str = Field(description="The bot's display name")
    strategy: str = Field(description="The strategy it trades")
    status: BotStatus = Field(description="Whether it is running")
    symbols: list[str] = Field(description="Symbols it trades")
    pnl_today: float = Field(description="Today's profit or loss of its trades")
    trades_today: int = Field(description="Trades it made today")
    started_at: datetime | None = Field(description="When it was started; null unless running")


_BOTS_EXAMPLE: JsonDict = {
    "running": 1,
    "bots": [_BOT_EXAMPLE],
}


class BotsView(BaseModel):
    """The user's trading bots."""

    model_config = ConfigDict(json_schema_extra={"examples": [_BOTS_EXAMPLE]})

    running: int = Field(description="How many bots are running")
    bots: list[BotView] = Field(description="Every bot of the account")


_ARTICLE_EXAMPLE: JsonDict = {
    "article_id": "news-7c1e",
    "headline": "Apple unveils new chips",
    "source": "Wire",
    "url": "https://news.example/apple-chips",
    "summary": "The company said the new chips ...",
    "symbols": ["AAPL"],
    "published_at": "2026-11-26T13:05:00Z",
}


class ArticleView(BaseModel):
    """A news headline."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ARTICLE_EXAMPLE]})

    article_id: str = Field(description="Identifier of the article")
    headline: str = Field(description="The headline")
    source: str = Field(description="Who published it")
    url: str = Field(description="Where to read it")
    summary: str = Field(description="A short summary")
    symbols: list[str] = Field(description="Symbols it is about")
    published_at: datetime = Field(description="When it was published")


_DEGRADED = (
    "Names of the optional sections that could not be fetched and are null in this view "
    "(e.g. `quotes`, `sparklines`, `watchlists`, `orders`, `bots`, `news`); empty when "
    "everything is present."
)


_DASHBOARD_EXAMPLE: JsonDict = {
    "account": _ACCOUNT_EXAMPLE,
    "positions": [_POSITION_EXAMPLE],
    "positions_total": 1,
    "positions_next": None,
    "watchlists": [_WATCHLIST_EXAMPLE],
    "watchlists_total": 1,
    "open_orders": [_ORDER_EXAMPLE],
    "open_orders_total": 10_777,
    "open_orders_next": "/web/v1/orders?status=open&cursor=b3JkXzNmOWExYzJiN2Q0ZQ",
    "bots": _BOTS_EXAMPLE,
    "bots_total": 1,
    "bots_next": None,
    "news": None,
    "degraded": ["news"],
}

_REST = "null when every one is shown"


class DashboardView(BaseModel):
    """Everything the dashboard's first screen shows."""

    model_config = ConfigDict(json_schema_extra={"examples": [_DASHBOARD_EXAMPLE]})

    account: AccountSummaryView = Field(
        description="Balances and today's result, over every holding (shown or not)"
    )
    positions: list[PositionView] = Field(
        description=f"Holdings with live valuation in symbol order, {_FIRST}"
    )
    positions_total: int = Field(description="How many holdings the account has")
    positions_next: str | None = Field(
        description=f"`/web/v1/positions?cursor=...`: the holdings after those shown; {_REST}"
    )
    watchlists: list[WatchlistView] | None = Field(
        description=(
            f"The user's watchlists, {_FIRST}; null when they could not be fetched (`watchlists`)"
        )
    )
    watchlists_total: int | None = Field(
        description="How many watchlists the user has; null with `watchlists`"
    )
    open_orders: list[OrderView] | None = Field(
        description=(
            f"Working orders, newest first, {_FIRST}; null when they could not be fetched "
            "(`orders`)"
        )
    )
    open_orders_total: int | None = Field(
        description="How many orders are working; null with `open_orders`"
    )
    open_orders_next: str | None = Field(
        description=(
            "`/web/v1/orders?status=open&cursor=...`: the working orders after those shown; "
            f"{_REST}"
        )
    )
    bots: BotsView | None = Field(
        description=(
            f"The user's trading bots, {_FIRST} (`running` counts all of them); null when they "
            "could not be fetched (`bots`)"
        )
    )
    bots_total: int | None = Field(description="How many bots the user has; null with `bots`")
    bots_next: str | None = Field(description=f"`/web/v1/bots`: every bot; {_REST}")
    news: list[ArticleView] | None = Field(
        description="Latest market news; null when it could not be fetched (`news`)"
    )
    degraded: list[DashboardSection] = Field(description=_DEGRADED)


_QUOTE_EXAMPLE: JsonDict = {
    "symbol": "AAPL",
    "price": 191.27,
    "change": 1.59,
    "change_pct": 0.84,
    "bid": 191.25,
    "ask": 191.29,
    "open": 189.9,
    "high": 192.04,
    "low": 189.51,
    "prev_close": 189.68,
    "volume": 31_482_113,
    "timestamp": "2026-11-26T15:02:11Z",
}


class QuoteView(BaseModel):
    """The live quote of one symbol."""

    model_config = ConfigDict(json_schema_extra={"examples": [_QUOTE_EXAMPLE]})

    symbol: str = Field(description="Ticker symbol")
    price: float = Field(description="Last trade price")
    change: float = Field(description="Change since the previous close")
    change_pct: float = Field(description="Change since the previous close, in percent")
    bid: float = Field(description="Best bid")
    ask: float = Field(description="Best ask")
    open: float = Field(description="Today's opening price")
    high: float = Field(description="Today's high")
    low: float = Field(description="Today's low")
    prev_close: float = Field(description="The previous close")
    volume: int = Field(description="Shares traded today")
    timestamp: datetime = Field(description="When the quote was taken")


_SYMBOL_INFO_EXAMPLE: JsonDict = {
    "name": "Apple Inc.",
    "exchange": "NASDAQ",
    "sector": "Technology",
    "currency": "USD",
}


class SymbolInfoView(BaseModel):
    """Reference data of a listed symbol."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SYMBOL_INFO_EXAMPLE]})

    name: str = Field(description="Company name")
    exchange: str = Field(description="Listing exchange")
    sector: str = Field(description="Industry sector")
    currency: str = Field(description="Trading currency")


_CANDLE_EXAMPLE: JsonDict = {
    "time": "2026-11-26T15:00:00Z",
    "open": 191.02,
    "high": 191.35,
    "low": 190.88,
    "close": 191.27,
    "volume": 412_330,
}


class CandleView(BaseModel):
    """One price bar."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CANDLE_EXAMPLE]})

    time: datetime = Field(description="When the bar opened")
    open: float = Field(description="First price of the bar")
    high: float = Field(description="Highest price of the bar")
    low: float = Field(description="Lowest price of the bar")
    close: float = Field(description="Last price of the bar; the live price for the last bar")
    volume: int = Field(description="Shares traded in the bar")


_CHART_EXAMPLE: JsonDict = {
    "range": "1d",
    "interval": "5m",
    "candles": [_CANDLE_EXAMPLE],
}


class ChartView(BaseModel):
    """Price bars over the requested range."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CHART_EXAMPLE]})

    range: ChartRange = Field(description="How far back the chart reaches")
    interval: ChartInterval = Field(description="The width of one candle")
    candles: list[CandleView] = Field(
        description="Bars oldest first (at most the latest 500); the last one is still live"
    )


_SYMBOL_DETAIL_EXAMPLE: JsonDict = {
    "symbol": "AAPL",
    "quote": _QUOTE_EXAMPLE,
    "info": _SYMBOL_INFO_EXAMPLE,
    "chart": _CHART_EXAMPLE,
    "news": [],
    "position": _POSITION_EXAMPLE,
    "orders": [],
    "orders_total": 0,
    "orders_next": None,
    "degraded": [],
}


class SymbolDetailView(BaseModel):
    """Everything the symbol page shows."""

    model_config = ConfigDict(json_schema_extra={"examples": [_SYMBOL_DETAIL_EXAMPLE]})

    symbol: str = Field(description="Ticker symbol")
    quote: QuoteView = Field(description="The live quote")
    info: SymbolInfoView | None = Field(
        description="Company reference data; null when it could not be fetched (`info`)"
    )
    chart: ChartView | None = Field(
        description="Price bars; null when they could not be fetched (`candles`)"
    )
    news: list[ArticleView] | None = Field(
        description="News about the symbol; null when it could not be fetched (`news`)"
    )
    position: PositionView | None = Field(
        description=(
            "The user's holding in the symbol, valued at the quote above. Null when the user "
            "holds none, or when positions could not be fetched (then `position` is in "
            "`degraded`)."
        )
    )
    orders: list[OrderView] | None = Field(
        description=(
            f"The user's orders in the symbol, newest first, {_FIRST}; null when they could "
            "not be fetched (`orders`)"
        )
    )
    orders_total: int | None = Field(
        description="How many orders the user has in the symbol; null with `orders`"
    )
    orders_next: str | None = Field(
        description=(
            "`/web/v1/orders?symbol=...&cursor=...`: the user's orders in the symbol after "
            f"those shown; {_REST}"
        )
    )
    degraded: list[SymbolDetailSection] = Field(
        description=(
            "Names of the optional sections that could not be fetched and are null in this view "
            "(`info`, `candles`, `news`, `position`, `orders`); empty when everything is present."
        )
    )
