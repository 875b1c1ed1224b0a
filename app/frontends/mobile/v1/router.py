"""The mobile frontend's endpoints, version 1: compact payloads, cursor pagination."""

from typing import Annotated

from fastapi import Query, Request, Response, status

from app.deps import (
    AccountIdDep,
    BotsDep,
    IdempotencyDep,
    MarketDataDep,
    OrdersDep,
    PortfolioDep,
    require_user,
)
from app.errors import problem_responses
from app.frontends.batch import add_batch_route
from app.frontends.caching import cached_json, policies
from app.frontends.formats import (
    ListFormatDep,
    as_plain_json_request,
    csv_of_json,
    csv_responses,
    varies_by_accept,
)
from app.frontends.mobile.v1 import compose
from app.frontends.mobile.v1.views import (
    CompactQuote,
    HomeView,
    PlacedOrderView,
    PositionRow,
    PositionsPage,
    QuoteList,
)
from app.frontends.order_entry import (
    PLACED_ORDER_RESPONSE,
    IdempotencyKey,
    OrderRequest,
    place_order,
)
from app.frontends.paging import MAX_PAGE_LIMIT, Cursor
from app.frontends.replay import mark_replayed
from app.frontends.routing import FrontendRouter
from app.frontends.streams import add_quote_stream
from app.frontends.symbols import SymbolList

# Signed-in users only; reads need "read", order entry also "orders".
router = FrontendRouter(
    prefix="/mobile/v1", dependencies=[require_user("read")], responses=problem_responses(401, 403)
)
# Live quotes as Server-Sent Events (`app.frontends.streams`).
add_quote_stream(router)
# Several calls in one round trip (`app.frontends.batch`).
add_batch_route(router, reach=("/mobile/v1",))


@router.get(
    "/home",
    response_model=HomeView,
    responses=problem_responses(502, 503, 504),
)
async def mobile_home(
    account_id: AccountIdDep,
    portfolio: PortfolioDep,
    market_data: MarketDataDep,
    orders: OrdersDep,
    bots: BotsDep,
) -> HomeView:
    """Home screen: equity, today's P&L, top movers, open orders and running bots."""
    return await compose.home(
        account_id=account_id,
        portfolio=portfolio,
        market_data=market_data,
        orders=orders,
        bots=bots,
    )


@router.get(
    "/positions",
    response_model=PositionsPage,
    responses={**csv_responses(PositionRow), **problem_responses(406, 422, 502, 503, 504)},
)
async def mobile_positions(
    account_id: AccountIdDep,
    portfolio: PortfolioDep,
    market_data: MarketDataDep,
    answer_format: ListFormatDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT, description="Positions per page")] = 20,
    cursor: Cursor = None,
) -> PositionsPage | Response:
    """Positions with price and unrealised P&L, a page at a time in symbol order."""
    after = compose.decode_position_cursor(cursor) if cursor is not None else None
    page = await compose.positions_page(
        account_id=account_id,
        after=after,
        limit=limit,
        portfolio=portfolio,
        market_data=market_data,
    )
    if answer_format.csv:
        return answer_format.table(page.items, PositionRow, next_cursor=page.next_cursor)
    return page


@router.get(
    "/quotes",
    response_model=QuoteList,
    responses={**csv_responses(CompactQuote), **problem_responses(406, 422, 502, 503, 504)},
)
async def mobile_quotes(
    symbols: SymbolList, market_data: MarketDataDep, answer_format: ListFormatDep, request: Request
) -> QuoteList | Response:
    """Price and change % of up to 50 symbols."""

    async def document() -> bytes:
        quotes = await compose.compact_quotes(market_data, symbols.split(","))
        return quotes.model_dump_json().encode()

    # The same for every user: shared for `cache.quotes_ttl_s` (`app.frontends.caching`);
    # CSV is made from the same entry.
    answer = await cached_json(
        as_plain_json_request(request) if answer_format.csv else request,
        policies(request.state.gateway.cache).quotes,
        document,
    )
    if answer_format.csv:
        return csv_of_json(answer.body, key="quotes", model=CompactQuote)
    return varies_by_accept(answer)


@router.post(
    "/orders",
    dependencies=[require_user("orders", introspect=True)],
    status_code=status.HTTP_201_CREATED,
    response_model=PlacedOrderView,
    responses={
        status.HTTP_201_CREATED: PLACED_ORDER_RESPONSE,
        **problem_responses(404, 409, 422, 502, 503, 504),
    },
)
async def mobile_place_order(
    order: OrderRequest,
    idempotency_key: IdempotencyKey,
    idempotency: IdempotencyDep,
    account_id: AccountIdDep,
    orders: OrdersDep,
    response: Response,
) -> PlacedOrderView:
    """Place an order; repeating the Idempotency-Key returns the first order."""
    placed = await place_order(
        orders,
        account_id=account_id,
        order=order,
        idempotency_key=idempotency_key,
        idempotency=idempotency,
    )
    mark_replayed(response, replayed=placed.replayed)
    accepted = placed.order
    return PlacedOrderView(
        order_id=accepted.order_id,
        status=accepted.status,
        symbol=accepted.symbol,
        side=accepted.side,
        quantity=accepted.quantity,
        type=accepted.type,
    )
