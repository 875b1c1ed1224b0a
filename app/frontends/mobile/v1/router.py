"""The mobile frontend's endpoints, version 1: compact payloads, cursor pagination."""

from typing import Annotated

from fastapi import Query, Response, status

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
from app.frontends.mobile.v1 import compose
from app.frontends.mobile.v1.views import HomeView, PlacedOrderView, PositionsPage, QuoteList
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
    responses=problem_responses(422, 502, 503, 504),
)
async def mobile_positions(
    account_id: AccountIdDep,
    portfolio: PortfolioDep,
    market_data: MarketDataDep,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_LIMIT, description="Positions per page")] = 20,
    cursor: Cursor = None,
) -> PositionsPage:
    """Positions with price and unrealised P&L, a page at a time in symbol order."""
    after = compose.decode_position_cursor(cursor) if cursor is not None else None
    return await compose.positions_page(
        account_id=account_id,
        after=after,
        limit=limit,
        portfolio=portfolio,
        market_data=market_data,
    )


@router.get(
    "/quotes",
    response_model=QuoteList,
    responses=problem_responses(422, 502, 503, 504),
)
async def mobile_quotes(symbols: SymbolList, market_data: MarketDataDep) -> QuoteList:
    """Price and change % of up to 50 symbols."""
    return await compose.compact_quotes(market_data, symbols.split(","))


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
