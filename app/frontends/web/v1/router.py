"""The web frontend's endpoints, version 1: what the trading dashboard calls.

The account always comes from `AccountIdDep`, never from the request, so a caller can only
see and act on its own account.
"""

import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response, status

from app.deps import (
    AccountIdDep,
    BotsDep,
    IdempotencyDep,
    OrdersDep,
    require_user,
)
from app.domain import SYMBOL_PATTERN
from app.errors import InvalidRequest, problem_responses
from app.frontends import order_entry
from app.frontends.batch import add_batch_route
from app.frontends.formats import ListFormatDep, csv_responses
from app.frontends.order_entry import PLACED_ORDER_RESPONSE, IdempotencyKey, OrderRequest
from app.frontends.paging import MAX_PAGE_LIMIT, Cursor, decode_cursor
from app.frontends.replay import mark_replayed
from app.frontends.routing import FrontendRouter
from app.frontends.streams import add_quote_stream
from app.frontends.symbols import SymbolPath, is_symbol
from app.frontends.versions import WEB_V1, superseded_route
from app.frontends.web.v1.compose import (
    WebServices,
    bot_view,
    bots_view,
    compose_dashboard,
    compose_symbol_detail,
    order_view,
    orders_page,
    positions_page,
)
from app.frontends.web.v1.views import (
    BotsView,
    BotView,
    ChartInterval,
    ChartRange,
    DashboardView,
    OrderStatusFilter,
    OrdersView,
    OrderView,
    PositionsPage,
    PositionView,
    SymbolDetailView,
)
from app.upstreams.bots import BotsClient
from app.upstreams.market_data import MarketDataClient
from app.upstreams.news import NewsClient
from app.upstreams.orders import OrdersClient
from app.upstreams.portfolio import PortfolioClient

# Signed-in users only; reads need "read", writes also the scope of what they change.
# Superseded by /web/v2: every answer names its successor (`app.frontends.versions`).
router = FrontendRouter(
    prefix="/web/v1",
    dependencies=[require_user("read")],
    responses=problem_responses(401, 403),
    route_class=superseded_route(WEB_V1),
)
# Live quotes as Server-Sent Events (`app.frontends.streams`).
add_quote_stream(router)

ID_PATTERN = r"^[A-Za-z0-9_\-]{1,64}$"

# Fine intervals only over short ranges: market-data returns at most the latest 500 bars,
# so a 1m chart over months would show a sliver of the range asked for. Kept deliberately
# simple (one longest range per interval); a chart may still hold only the latest 500 bars.
LONGEST_RANGE_BY_INTERVAL: dict[ChartInterval, ChartRange] = {
    ChartInterval.m1: ChartRange.d5,
    ChartInterval.m5: ChartRange.mo1,
    ChartInterval.m15: ChartRange.mo3,
    ChartInterval.h1: ChartRange.y1,
    ChartInterval.d1: ChartRange.y1,
}
_RANGE_ORDER = list(ChartRange)
_CHART_RULE = ", ".join(
    f"{interval.value} up to {longest.value}"
    for interval, longest in LONGEST_RANGE_BY_INTERVAL.items()
)

OrderIdPath = Annotated[
    str,
    Path(pattern=ID_PATTERN, description="Identifier of the order", examples=["ord_3f9a1c2b7d4e"]),
]
OrderSymbol = Annotated[
    str | None,
    Query(
        pattern=SYMBOL_PATTERN,
        description="Only orders in this ticker symbol; every symbol when left out",
        examples=["AAPL"],
    ),
]
_ORDER_ID = re.compile(ID_PATTERN)


def _is_order_id(text: str) -> bool:
    return _ORDER_ID.match(text) is not None


BotIdPath = Annotated[
    str,
    Path(pattern=ID_PATTERN, description="Identifier of the bot", examples=["bot-momentum-1"]),
]


async def web_services(request: Request) -> WebServices:
    """Every service client a composed view uses, made here rather than as five more
    dependencies for FastAPI to solve on every request."""
    state = request.state.gateway
    caller = state.caller
    return WebServices(
        market_data=MarketDataClient(caller),
        portfolio=PortfolioClient(caller),
        orders=OrdersClient(caller),
        news=NewsClient(caller),
        bots=BotsClient(caller),
        cache=state.cache,
    )


WebServicesDep = Annotated[WebServices, Depends(web_services)]


# Several calls in one round trip, to either version (`app.frontends.batch`).
add_batch_route(router, reach=("/web/v1", "/web/v2"))


@router.get(
    "/dashboard",
    response_model=DashboardView,
    responses=problem_responses(502, 503, 504),
)
async def get_dashboard(services: WebServicesDep, account_id: AccountIdDep) -> DashboardView:
    """Account summary, positions, watchlists, open orders, bots and news in one view."""
    return await compose_dashboard(services, account_id=account_id)


@router.get(
    "/symbols/{symbol}",
    response_model=SymbolDetailView,
    responses=problem_responses(404, 422, 502, 503, 504),
)
async def get_symbol_detail(
    services: WebServicesDep,
    account_id: AccountIdDep,
    symbol: SymbolPath,
    chart_range: Annotated[
        ChartRange, Query(alias="range", description="How far back the chart reaches")
    ] = ChartRange.d1,
    interval: Annotated[
        ChartInterval,
        Query(
            description=(
                f"Candle width; it must suit the range (longest range per interval: "
                f"{_CHART_RULE}), otherwise 422 naming `query.interval`"
            )
        ),
    ] = ChartInterval.m5,
) -> SymbolDetailView:
    """Quote, company data, chart, news, and the user's position and orders for one symbol."""
    longest = LONGEST_RANGE_BY_INTERVAL[interval]
    if _RANGE_ORDER.index(chart_range) > _RANGE_ORDER.index(longest):
        message = (
            f"{interval.value} candles are served for ranges up to {longest.value}, "
            f"not {chart_range.value}; choose a wider interval or a shorter range"
        )
        raise InvalidRequest(
            f"query.interval: {message}",
            extra={"errors": [{"field": "query.interval", "message": message}]},
        )
    return await compose_symbol_detail(
        services,
        account_id=account_id,
        symbol=symbol,
        chart_range=chart_range,
        interval=interval,
    )


@router.get(
    "/positions",
    response_model=PositionsPage,
    responses={**csv_responses(PositionView), **problem_responses(406, 422, 502, 503, 504)},
)
async def list_positions(
    services: WebServicesDep,
    account_id: AccountIdDep,
    answer_format: ListFormatDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT, description="Holdings per page")] = 20,
    cursor: Cursor = None,
) -> PositionsPage | Response:
    """The user's holdings, valued at live quotes, a page at a time in symbol order."""
    after = None if cursor is None else decode_cursor(cursor, is_key=is_symbol)
    page = await positions_page(services, account_id=account_id, after=after, limit=limit)
    if answer_format.csv:
        return answer_format.table(
            page.items, PositionView, next_cursor=page.next_cursor, total=page.total
        )
    return page


@dataclass(frozen=True, slots=True)
class OrderListing:
    """Which page of which orders a listing asks for."""

    status: OrderStatusFilter
    symbol: str | None
    after: str | None
    limit: int

    async def page(self, orders: OrdersClient, *, account_id: str) -> OrdersView:
        """The page of the account's orders this listing asks for."""
        return await orders_page(
            orders,
            account_id=account_id,
            status=self.status,
            symbol=self.symbol,
            after=self.after,
            limit=self.limit,
        )


async def order_listing(
    order_status: Annotated[
        OrderStatusFilter, Query(alias="status", description="Which orders to list")
    ] = OrderStatusFilter.all,
    symbol: OrderSymbol = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT, description="Orders per page")] = 20,
    cursor: Cursor = None,
) -> OrderListing:
    after = None if cursor is None else decode_cursor(cursor, is_key=_is_order_id)
    return OrderListing(status=order_status, symbol=symbol, after=after, limit=limit)


# The orders list's parameters, as every version of it takes them.
OrderListingDep = Annotated[OrderListing, Depends(order_listing)]


@router.get(
    "/orders",
    response_model=OrdersView,
    responses={**csv_responses(OrderView), **problem_responses(406, 422, 502, 503, 504)},
)
async def list_orders(
    orders: OrdersDep,
    account_id: AccountIdDep,
    listing: OrderListingDep,
    answer_format: ListFormatDep,
) -> OrdersView | Response:
    """The user's orders, newest first, filtered by status and symbol, a page at a time."""
    page = await listing.page(orders, account_id=account_id)
    if answer_format.csv:
        return answer_format.table(
            page.orders, OrderView, next_cursor=page.next_cursor, total=page.total
        )
    return page


@router.post(
    "/orders",
    dependencies=[require_user("orders", introspect=True)],
    response_model=OrderView,
    status_code=status.HTTP_201_CREATED,
    responses={
        201: PLACED_ORDER_RESPONSE,
        # 409: a request with the same key is still being placed.
        **problem_responses(409, 422, 502, 503, 504),
    },
)
async def place_order(
    orders: OrdersDep,
    account_id: AccountIdDep,
    order: OrderRequest,
    idempotency_key: IdempotencyKey,
    idempotency: IdempotencyDep,
    response: Response,
) -> OrderView:
    """Place an order; the Idempotency-Key makes a retry return the first order."""
    placed = await order_entry.place_order(
        orders,
        account_id=account_id,
        order=order,
        idempotency_key=idempotency_key,
        idempotency=idempotency,
    )
    mark_replayed(response, replayed=placed.replayed)
    return order_view(placed.order)


@router.delete(
    "/orders/{order_id}",
    dependencies=[require_user("orders", introspect=True)],
    response_model=OrderView,
    responses=problem_responses(404, 409, 502, 503, 504),
)
async def cancel_order(
    orders: OrdersDep, account_id: AccountIdDep, order_id: OrderIdPath
) -> OrderView:
    """Cancel a working order."""
    return order_view(await orders.cancel(account_id, order_id))


@router.get("/bots", response_model=BotsView, responses=problem_responses(502, 503, 504))
async def list_bots(bots: BotsDep, account_id: AccountIdDep) -> BotsView:
    """The user's trading bots and how many are running."""
    return bots_view(await bots.bots(account_id))


@router.post(
    "/bots/{bot_id}/start",
    dependencies=[require_user("bots")],
    response_model=BotView,
    responses=problem_responses(404, 409, 502, 503, 504),
)
async def start_bot(bots: BotsDep, account_id: AccountIdDep, bot_id: BotIdPath) -> BotView:
    """Start a trading bot."""
    return bot_view(await bots.start(account_id, bot_id))


@router.post(
    "/bots/{bot_id}/stop",
    dependencies=[require_user("bots")],
    response_model=BotView,
    responses=problem_responses(404, 409, 502, 503, 504),
)
async def stop_bot(bots: BotsDep, account_id: AccountIdDep, bot_id: BotIdPath) -> BotView:
    """Stop a trading bot."""
    return bot_view(await bots.stop(account_id, bot_id))
