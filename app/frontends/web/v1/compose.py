"""How the web views are assembled from the platform's services.

Every upstream call is settled (a failure becomes a value), so one failing section never
cancels its siblings. The dashboard runs in two stages: everything that only needs the
account id at once, and the market data for the held and watched symbols as soon as the
positions and watchlists are in, without waiting for the slower, unrelated sections.

A view shows at most `SECTION_LIMIT` items of each list section, with the section's total
and a link to the list that holds the rest (`app.frontends.paging`); orders are asked for a
page at a time, never all of them.
"""

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from urllib.parse import urlencode

from pydantic import TypeAdapter

from app.cache.cache import ResponseCache
from app.errors import NotFound
from app.frontends.caching import cached_section, policies
from app.frontends.paging import SECTION_LIMIT, encode_cursor, link, page_after, unknown_cursor
from app.frontends.sections import Failed, Sections, settle, settle_optional
from app.frontends.valuation import cents, day_change, equity, value_position
from app.frontends.web.v1.views import (
    AccountSummaryView,
    ArticleView,
    BotsView,
    BotView,
    CandleView,
    ChartInterval,
    ChartRange,
    ChartView,
    DashboardView,
    EquityBasis,
    OrderStatusFilter,
    OrdersView,
    OrderView,
    PositionsPage,
    PositionView,
    QuoteView,
    SymbolDetailView,
    SymbolInfoView,
    WatchlistItemView,
    WatchlistView,
)
from app.upstreams.bots import Bot, BotsClient, BotStatus
from app.upstreams.market_data import CandleSeries, MarketDataClient, Quote, Sparkline, SymbolInfo
from app.upstreams.news import Article, NewsClient
from app.upstreams.orders import Order, OrderPage, OrdersClient, UnknownOrderCursor
from app.upstreams.portfolio import Account, PortfolioClient, Position, Watchlist

# market-data answers at most this many symbols per quotes call.
QUOTE_BATCH = 50
DASHBOARD_NEWS = 10
SYMBOL_NEWS = 10
SPARKLINE_POINTS = 30

# The lists a view's sections link to, for the items they leave out.
ORDERS_LIST = "/web/v1/orders"
POSITIONS_LIST = "/web/v1/positions"
BOTS_LIST = "/web/v1/bots"


@dataclass(frozen=True, slots=True)
class WebServices:
    """The upstream clients the web views draw on."""

    market_data: MarketDataClient
    portfolio: PortfolioClient
    orders: OrdersClient
    news: NewsClient
    bots: BotsClient
    # Shares the sections that are the same for every user (`app.frontends.caching`).
    cache: ResponseCache | None = None


_SPARKLINES = TypeAdapter(list[Sparkline])
_ARTICLES = TypeAdapter(list[Article])


async def _sparklines(
    market_data: MarketDataClient, symbols: Sequence[str], *, cache: ResponseCache | None
) -> list[Sparkline]:
    """The symbols' sparklines, shared by every user for `cache.sparklines_ttl_s`."""
    produce = partial(market_data.sparklines, symbols, points=SPARKLINE_POINTS)
    if cache is None or not symbols:
        return await produce()
    query = urlencode({"symbols": ",".join(symbols), "points": SPARKLINE_POINTS})
    return await cached_section(
        cache,
        policies(cache).sparklines,
        path="/upstream/market-data/sparklines",
        query=query,
        adapter=_SPARKLINES,
        produce=produce,
    )


async def _latest_news(services: WebServices) -> list[Article]:
    """The latest headlines, shared by every user for `cache.news_ttl_s`."""
    produce = partial(services.news.latest, limit=DASHBOARD_NEWS)
    if services.cache is None:
        return await produce()
    return await cached_section(
        services.cache,
        policies(services.cache).news,
        path="/upstream/news/latest",
        query=f"limit={DASHBOARD_NEWS}",
        adapter=_ARTICLES,
        produce=produce,
    )


async def quotes_for(market_data: MarketDataClient, symbols: Sequence[str]) -> list[Quote]:
    """Quotes for any number of symbols, in concurrent batches the service accepts."""
    batches = [symbols[i : i + QUOTE_BATCH] for i in range(0, len(symbols), QUOTE_BATCH)]
    if len(batches) <= 1:
        return await market_data.quotes(symbols)
    # Every batch is awaited to the end, so no call is left running unobserved.
    answers = await asyncio.gather(
        *(market_data.quotes(batch) for batch in batches), return_exceptions=True
    )
    quotes: list[Quote] = []
    for answer in answers:
        if isinstance(answer, BaseException):
            raise answer
        quotes.extend(answer)
    return quotes


def position_view(position: Position, quote: Quote | None) -> PositionView:
    value = value_position(
        quantity=position.quantity,
        average_cost=position.average_cost,
        price=None if quote is None else quote.price,
    )
    return PositionView(
        symbol=position.symbol,
        quantity=position.quantity,
        average_cost=cents(position.average_cost),
        cost_basis=value.cost_basis,
        price=None if quote is None else cents(quote.price),
        change_pct=None if quote is None else round(quote.change_pct, 2),
        market_value=value.market_value,
        unrealized_pnl=value.unrealized_pnl,
        unrealized_pnl_pct=value.unrealized_pnl_pct,
    )


def account_summary(account: Account, positions: Sequence[PositionView]) -> AccountSummaryView:
    """Equity from the positions as shown, so it always equals cash plus their values."""
    live = all(p.market_value is not None for p in positions)
    account_equity = equity(
        account.cash,
        (p.market_value if p.market_value is not None else p.cost_basis for p in positions),
    )
    today = day_change(account_equity, account.prev_close_equity) if live else None
    return AccountSummaryView(
        account_id=account.account_id,
        currency=account.currency,
        equity=account_equity,
        equity_basis=EquityBasis.live if live else EquityBasis.cost,
        cash=cents(account.cash),
        buying_power=cents(account.buying_power),
        prev_close_equity=cents(account.prev_close_equity),
        day_pnl=None if today is None else today.pnl,
        day_pnl_pct=None if today is None else today.pnl_pct,
    )


def shown_symbols(watchlist: Watchlist) -> list[str]:
    """The symbols of a watchlist the dashboard shows, and so prices."""
    return watchlist.symbols[:SECTION_LIMIT]


def watchlist_view(
    watchlist: Watchlist,
    *,
    quotes: dict[str, Quote],
    sparklines: dict[str, Sparkline] | None,
) -> WatchlistView:
    items = []
    for symbol in shown_symbols(watchlist):
        quote = quotes.get(symbol)
        line = sparklines.get(symbol) if sparklines is not None else None
        items.append(
            WatchlistItemView(
                symbol=symbol,
                price=None if quote is None else cents(quote.price),
                change=None if quote is None else cents(quote.change),
                change_pct=None if quote is None else round(quote.change_pct, 2),
                # Points come rounded to cents from market-data; re-rounding hundreds costs CPU.
                sparkline=None if line is None else line.points,
            )
        )
    return WatchlistView(
        watchlist_id=watchlist.watchlist_id,
        name=watchlist.name,
        items=items,
        items_total=len(watchlist.symbols),
    )


def order_view(order: Order) -> OrderView:
    return OrderView(
        order_id=order.order_id,
        symbol=order.symbol,
        side=order.side,
        type=order.type,
        quantity=order.quantity,
        filled_quantity=order.filled_quantity,
        limit_price=order.limit_price,
        stop_price=order.stop_price,
        average_fill_price=(
            None if order.average_fill_price is None else cents(order.average_fill_price)
        ),
        time_in_force=order.time_in_force,
        status=order.status,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


def bot_view(bot: Bot) -> BotView:
    return BotView(
        bot_id=bot.bot_id,
        name=bot.name,
        strategy=bot.strategy,
        status=bot.status,
        symbols=bot.symbols,
        pnl_today=cents(bot.pnl_today),
        trades_today=bot.trades_today,
        started_at=bot.started_at,
    )


def bots_view(bots: Sequence[Bot], *, shown: int | None = None) -> BotsView:
    """Every bot counted, the first `shown` of them (all by default) listed."""
    return BotsView(
        running=sum(1 for bot in bots if bot.status is BotStatus.running),
        bots=[bot_view(bot) for bot in bots[:shown]],
    )


def orders_link(
    page: OrderPage, *, status: str | None = None, symbol: str | None = None
) -> str | None:
    """The orders list from just after the page, with the same filters; None after the last."""
    if page.next_after is None:
        return None
    return link(ORDERS_LIST, status=status, symbol=symbol, cursor=encode_cursor(page.next_after))


async def orders_page(
    orders: OrdersClient,
    *,
    account_id: str,
    status: OrderStatusFilter,
    symbol: str | None,
    after: str | None,
    limit: int,
) -> OrdersView:
    """One page of the orders list; a cursor naming no order of the account is a 422."""
    try:
        page = await orders.page(
            account_id, status=status.value, symbol=symbol, after=after, limit=limit
        )
    except UnknownOrderCursor as error:
        raise unknown_cursor() from error
    return OrdersView(
        status=status,
        symbol=symbol,
        orders=[order_view(order) for order in page.orders],
        total=page.total,
        next_cursor=None if page.next_after is None else encode_cursor(page.next_after),
    )


def article_view(article: Article) -> ArticleView:
    return ArticleView(
        article_id=article.article_id,
        headline=article.headline,
        source=article.source,
        url=article.url,
        summary=article.summary,
        symbols=article.symbols,
        published_at=article.published_at,
    )


def _unique(symbols: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(symbols))


@dataclass(frozen=True, slots=True)
class _MarketStage:
    quotes: list[Quote] | Failed
    sparklines: list[Sparkline] | Failed | None


async def _market_stage(
    market_data: MarketDataClient,
    *,
    positions: asyncio.Task[list[Position] | Failed],
    watchlists: asyncio.Task[list[Watchlist] | Failed],
    cache: ResponseCache | None = None,
) -> _MarketStage:
    held, watched = await positions, await watchlists
    held_symbols = [] if isinstance(held, Failed) else [p.symbol for p in held]
    watched_symbols = (
        []
        if isinstance(watched, Failed)
        else _unique(s for w in watched[:SECTION_LIMIT] for s in shown_symbols(w))
    )
    quotes_call = settle_optional(
        quotes_for(market_data, _unique([*held_symbols, *watched_symbols]))
    )
    if isinstance(watched, Failed):
        return _MarketStage(quotes=await quotes_call, sparklines=None)
    quotes, sparklines = await asyncio.gather(
        quotes_call,
        settle_optional(_sparklines(market_data, watched_symbols, cache=cache)),
    )
    return _MarketStage(quotes=quotes, sparklines=sparklines)


@dataclass(frozen=True, slots=True)
class ComposedDashboard:
    """The dashboard, and every holding valued as its account summary counts it (the view
    lists the first `SECTION_LIMIT`); later versions build their dashboards on it."""

    view: DashboardView
    positions: list[PositionView]


async def compose_dashboard(services: WebServices, *, account_id: str) -> DashboardView:
    """The dashboard: portfolio is required, every other section may degrade."""
    return (await assemble_dashboard(services, account_id=account_id)).view


async def assemble_dashboard(services: WebServices, *, account_id: str) -> ComposedDashboard:
    """The dashboard and every valued holding (see `ComposedDashboard`)."""
    portfolio = services.portfolio
    async with asyncio.TaskGroup() as group:
        # Tasks start in creation order; the two the second stage waits for go out first.
        positions_task = group.create_task(settle(portfolio.positions(account_id)))
        watchlists_task = group.create_task(settle_optional(portfolio.watchlists(account_id)))
        account_task = group.create_task(settle(portfolio.account(account_id)))
        orders_task = group.create_task(
            settle_optional(services.orders.page(account_id, status="open", limit=SECTION_LIMIT))
        )
        bots_task = group.create_task(settle_optional(services.bots.bots(account_id)))
        news_task = group.create_task(settle_optional(_latest_news(services)))
        market_task = group.create_task(
            _market_stage(
                services.market_data,
                positions=positions_task,
                watchlists=watchlists_task,
                cache=services.cache,
            )
        )
        critical = (await account_task, await positions_task)
        if any(isinstance(result, Failed) for result in critical):
            # Without the portfolio there is no dashboard: answer now and stop the calls
            # whose results nobody would read.
            for task in (watchlists_task, orders_task, bots_task, news_task, market_task):
                task.cancel()

    sections = Sections()
    account = sections.required(account_task.result())
    positions = sections.required(positions_task.result())
    watchlists = sections.optional("watchlists", watchlists_task.result())
    market = market_task.result()
    quotes = sections.optional("quotes", market.quotes)
    sparklines = (
        None if market.sparklines is None else sections.optional("sparklines", market.sparklines)
    )
    open_orders = sections.optional("orders", orders_task.result())
    bots = sections.optional("bots", bots_task.result())
    news = sections.optional("news", news_task.result())

    quote_by_symbol = {quote.symbol: quote for quote in quotes or []}
    sparkline_by_symbol = None if sparklines is None else {line.symbol: line for line in sparklines}
    # The account is valued over every holding; the view lists the first ones by symbol.
    position_views = sorted(
        (position_view(position, quote_by_symbol.get(position.symbol)) for position in positions),
        key=lambda view: view.symbol,
    )
    shown_positions, positions_cursor = page_after(
        position_views, key=lambda view: view.symbol, after=None, limit=SECTION_LIMIT
    )
    view = DashboardView(
        account=account_summary(account, position_views),
        positions=shown_positions,
        positions_total=len(position_views),
        positions_next=None
        if positions_cursor is None
        else link(POSITIONS_LIST, cursor=positions_cursor),
        watchlists=None
        if watchlists is None
        else [
            watchlist_view(w, quotes=quote_by_symbol, sparklines=sparkline_by_symbol)
            for w in watchlists[:SECTION_LIMIT]
        ],
        watchlists_total=None if watchlists is None else len(watchlists),
        open_orders=None if open_orders is None else [order_view(o) for o in open_orders.orders],
        open_orders_total=None if open_orders is None else open_orders.total,
        open_orders_next=None if open_orders is None else orders_link(open_orders, status="open"),
        bots=None if bots is None else bots_view(bots, shown=SECTION_LIMIT),
        bots_total=None if bots is None else len(bots),
        bots_next=BOTS_LIST if bots is not None and len(bots) > SECTION_LIMIT else None,
        news=None if news is None else [article_view(a) for a in news],
        degraded=sections.degraded,
    )
    return ComposedDashboard(view=view, positions=position_views)


def quote_view(quote: Quote) -> QuoteView:
    return QuoteView(
        symbol=quote.symbol,
        price=cents(quote.price),
        change=cents(quote.change),
        change_pct=round(quote.change_pct, 2),
        bid=cents(quote.bid),
        ask=cents(quote.ask),
        open=cents(quote.open),
        high=cents(quote.high),
        low=cents(quote.low),
        prev_close=cents(quote.prev_close),
        volume=quote.volume,
        timestamp=quote.timestamp,
    )


def symbol_info_view(symbol: str, found: Sequence[SymbolInfo]) -> SymbolInfoView | None:
    info = next((candidate for candidate in found if candidate.symbol == symbol), None)
    if info is None:
        return None
    return SymbolInfoView(
        name=info.name, exchange=info.exchange, sector=info.sector, currency=info.currency
    )


def chart_view(
    series: CandleSeries, *, chart_range: ChartRange, interval: ChartInterval
) -> ChartView:
    return ChartView(
        range=chart_range,
        interval=interval,
        candles=[
            CandleView(time=c.t, open=c.o, high=c.h, low=c.l, close=c.c, volume=c.v)
            for c in series.candles
        ],
    )


async def compose_symbol_detail(
    services: WebServices,
    *,
    account_id: str,
    symbol: str,
    chart_range: ChartRange,
    interval: ChartInterval,
) -> SymbolDetailView:
    """The symbol page in one stage: the quote is required, every other section may degrade."""
    market_data = services.market_data
    async with asyncio.TaskGroup() as group:
        quotes_task = group.create_task(settle(market_data.quotes([symbol])))
        # Search ranks the exact ticker first, so one result is the symbol's own entry.
        info_task = group.create_task(settle_optional(market_data.search_symbols(symbol, limit=1)))
        candles_task = group.create_task(
            settle_optional(
                market_data.candles(symbol, interval=interval.value, range_=chart_range.value)
            )
        )
        news_task = group.create_task(
            settle_optional(services.news.for_symbols([symbol], limit=SYMBOL_NEWS))
        )
        positions_task = group.create_task(
            settle_optional(services.portfolio.positions(account_id))
        )
        orders_task = group.create_task(
            settle_optional(services.orders.page(account_id, symbol=symbol, limit=SECTION_LIMIT))
        )

    sections = Sections()
    quote = next((q for q in sections.required(quotes_task.result()) if q.symbol == symbol), None)
    if quote is None:
        raise NotFound(f"No listed symbol {symbol}.", extra={"symbol": symbol})
    found = sections.optional("info", info_task.result())
    series = sections.optional("candles", candles_task.result())
    news = sections.optional("news", news_task.result())
    positions = sections.optional("position", positions_task.result())
    orders = sections.optional("orders", orders_task.result())

    held = next((p for p in positions or [] if p.symbol == symbol), None)
    return SymbolDetailView(
        symbol=symbol,
        quote=quote_view(quote),
        info=None if found is None else symbol_info_view(symbol, found),
        chart=None
        if series is None
        else chart_view(series, chart_range=chart_range, interval=interval),
        news=None if news is None else [article_view(a) for a in news],
        position=None if held is None else position_view(held, quote),
        orders=None if orders is None else [order_view(order) for order in orders.orders],
        orders_total=None if orders is None else orders.total,
        orders_next=None if orders is None else orders_link(orders, symbol=symbol),
        degraded=sections.degraded,
    )


async def positions_page(
    services: WebServices, *, account_id: str, after: str | None, limit: int
) -> PositionsPage:
    """The `limit` holdings after symbol `after`, valued; quotes only for that page."""
    held = sorted(await services.portfolio.positions(account_id), key=lambda p: p.symbol)
    page, next_cursor = page_after(held, key=lambda p: p.symbol, after=after, limit=limit)
    sections = Sections()
    found = await settle_optional(quotes_for(services.market_data, [p.symbol for p in page]))
    quotes = sections.optional("quotes", found)
    quote_by_symbol = {quote.symbol: quote for quote in quotes or ()}
    return PositionsPage(
        items=[position_view(p, quote_by_symbol.get(p.symbol)) for p in page],
        total=len(held),
        next_cursor=next_cursor,
        degraded=sections.degraded,
    )
