"""Builds the mobile views from the platform's services."""

import asyncio
from collections.abc import Sequence

from app.frontends.mobile.v1.views import (
    CompactQuote,
    HomeView,
    Mover,
    PositionRow,
    PositionsPage,
    QuoteList,
)
from app.frontends.paging import decode_cursor, page_after
from app.frontends.sections import Failed, Sections, settle, settle_optional
from app.frontends.symbols import is_symbol
from app.frontends.valuation import day_change, equity, value_position
from app.upstreams.bots import BotsClient, BotStatus
from app.upstreams.market_data import MarketDataClient, Quote
from app.upstreams.orders import OrdersClient
from app.upstreams.portfolio import Account, PortfolioClient, Position

MOVERS_SHOWN = 3


async def _positions_and_quotes(
    portfolio: PortfolioClient, market_data: MarketDataClient, account_id: str
) -> tuple[list[Position], list[Quote] | Failed]:
    """Positions, then their quotes: the second stage starts as soon as positions arrive."""
    positions = await portfolio.positions(account_id)
    quotes = await settle_optional(market_data.quotes([p.symbol for p in positions]))
    return positions, quotes


async def _open_order_count(orders: OrdersClient, account_id: str) -> int:
    # A page of one carries the total: the count never fetches every order.
    return (await orders.page(account_id, status="open", limit=1)).total


async def _running_bot_count(bots: BotsClient, account_id: str) -> int:
    return sum(bot.status is BotStatus.running for bot in await bots.bots(account_id))


def _equity(account: Account, positions: Sequence[Position], prices: dict[str, float]) -> float:
    """Cash plus each position's market value, valued as every frontend values it."""
    values = (
        value_position(quantity=p.quantity, average_cost=p.average_cost, price=prices[p.symbol])
        for p in positions
    )
    return equity(account.cash, (v.market_value for v in values if v.market_value is not None))


def _movers(positions: Sequence[Position], quotes: Sequence[Quote]) -> list[Mover]:
    held = {p.symbol for p in positions}
    ranked = sorted(
        (q for q in quotes if q.symbol in held),
        key=lambda q: (-abs(q.change_pct), q.symbol),
    )
    return [
        Mover(symbol=q.symbol, price=q.price, change_pct=q.change_pct)
        for q in ranked[:MOVERS_SHOWN]
    ]


async def home(
    *,
    account_id: str,
    portfolio: PortfolioClient,
    market_data: MarketDataClient,
    orders: OrdersClient,
    bots: BotsClient,
) -> HomeView:
    """The home screen; the portfolio is required, quotes, orders and bots are optional."""
    async with asyncio.TaskGroup() as group:
        account_task = group.create_task(settle(portfolio.account(account_id)))
        holdings_task = group.create_task(
            settle(_positions_and_quotes(portfolio, market_data, account_id))
        )
        orders_task = group.create_task(settle_optional(_open_order_count(orders, account_id)))
        bots_task = group.create_task(settle_optional(_running_bot_count(bots, account_id)))

    sections = Sections()
    account = sections.required(account_task.result())
    positions, quote_result = sections.required(holdings_task.result())
    quotes = sections.optional("quotes", quote_result)
    open_orders = sections.optional("orders", orders_task.result())
    running_bots = sections.optional("bots", bots_task.result())

    account_equity = day_pnl = day_pnl_pct = None
    movers = None
    if quotes is not None:
        prices = {q.symbol: q.price for q in quotes}
        movers = _movers(positions, quotes)
        # A position without a quote cannot be valued; an equity without it would mislead.
        if all(p.symbol in prices for p in positions):
            account_equity = _equity(account, positions, prices)
            today = day_change(account_equity, account.prev_close_equity)
            day_pnl, day_pnl_pct = today.pnl, today.pnl_pct
        else:
            sections.degraded.append("quotes")
    return HomeView(
        currency=account.currency,
        equity=account_equity,
        day_pnl=day_pnl,
        day_pnl_pct=day_pnl_pct,
        movers=movers,
        open_orders=open_orders,
        running_bots=running_bots,
        degraded=sections.degraded,
    )


def decode_position_cursor(cursor: str) -> str:
    """The symbol a positions cursor names; anything else is a 422 naming `query.cursor`."""
    return decode_cursor(cursor, is_key=is_symbol)


def position_row(position: Position, price: float | None) -> PositionRow:
    value = value_position(
        quantity=position.quantity, average_cost=position.average_cost, price=price
    )
    return PositionRow(
        symbol=position.symbol,
        quantity=position.quantity,
        average_cost=position.average_cost,
        price=price,
        unrealized_pnl=value.unrealized_pnl,
        unrealized_pnl_pct=value.unrealized_pnl_pct,
    )


async def positions_page(
    *,
    account_id: str,
    after: str | None,
    limit: int,
    portfolio: PortfolioClient,
    market_data: MarketDataClient,
) -> PositionsPage:
    """The `limit` positions after symbol `after`, priced; quotes only for that page."""
    held = sorted(await portfolio.positions(account_id), key=lambda p: p.symbol)
    page, next_cursor = page_after(held, key=lambda p: p.symbol, after=after, limit=limit)
    sections = Sections()
    quotes = sections.optional(
        "quotes", await settle_optional(market_data.quotes([p.symbol for p in page]))
    )
    prices = {q.symbol: q.price for q in quotes or ()}
    return PositionsPage(
        items=[position_row(p, prices.get(p.symbol)) for p in page],
        next_cursor=next_cursor,
        degraded=sections.degraded,
    )


async def compact_quotes(market_data: MarketDataClient, symbols: Sequence[str]) -> QuoteList:
    """Quotes reduced to symbol, price and change %."""
    quotes = await market_data.quotes(symbols)
    return QuoteList(
        quotes=[
            CompactQuote(symbol=q.symbol, price=q.price, change_pct=q.change_pct) for q in quotes
        ]
    )
