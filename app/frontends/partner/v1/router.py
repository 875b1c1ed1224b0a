"""The partner frontend's endpoints, version 1: market data and order entry for partner systems."""

from typing import Annotated

from fastapi import Depends, Query, Request, Response, status

from app.deps import (
    IdempotencyDep,
    OrdersDep,
    PartnerCaller,
    StateDep,
    require_partner,
)
from app.errors import Forbidden, problem_responses
from app.frontends.caching import cached_json, policies
from app.frontends.formats import (
    ListFormat,
    as_plain_json_request,
    csv_of_json,
    csv_responses,
    negotiate,
    varies_by_accept,
)
from app.frontends.order_entry import PLACED_ORDER_RESPONSE, IdempotencyKey
from app.frontends.partner.v1 import compose
from app.frontends.partner.v1.views import (
    CandleInterval,
    CandleRange,
    PartnerCandle,
    PartnerCandles,
    PartnerOrder,
    PartnerOrderRequest,
    PartnerQuote,
    PartnerQuotes,
    UpstreamJSON,
    UsageView,
)
from app.frontends.replay import mark_replayed
from app.frontends.routing import FrontendRouter
from app.frontends.symbols import SymbolList, SymbolPath
from app.security.principal import Principal
from app.upstreams.caller import UpstreamCaller
from app.upstreams.market_data import MarketDataClient

# Partner credentials only (API key or client-credentials token); each route names its scope.
router = FrontendRouter(prefix="/partner/v1", responses=problem_responses(401, 403))


# One rule instance for the route and its accounts dependency, so it runs once.
ORDER_ENTRY = require_partner("orders:write", introspect=True)


async def partner_accounts(principal: Annotated[Principal, ORDER_ENTRY]) -> list[str]:
    """The accounts the calling partner may act on: those linked to its consumer or client."""
    return list(principal.account_ids)


PartnerAccountsDep = Annotated[list[str], Depends(partner_accounts)]


@router.get(
    "/quotes",
    dependencies=[require_partner("quotes:read")],
    response_model=PartnerQuotes,
    response_class=UpstreamJSON,
    responses={**csv_responses(PartnerQuote), **problem_responses(406, 422, 502, 503, 504)},
)
async def partner_quotes(symbols: SymbolList, request: Request) -> Response:
    """Level-1 quotes of up to 50 symbols."""
    # The partner traffic's bulk: the format and the caller straight from the request and
    # the lifespan state rather than more dependencies to solve. market-data's document
    # already has the documented shape: its bytes pass through, shared for
    # `cache.quotes_ttl_s` (`app.frontends.caching`); CSV is made from the same entry.
    answer_format = negotiate(request.headers.get("accept"))
    state = request.state.gateway
    caller: UpstreamCaller = state.caller
    as_csv = answer_format is ListFormat.csv
    answer = await cached_json(
        as_plain_json_request(request) if as_csv else request,
        policies(state.cache).quotes,
        lambda: compose.quote_document(caller, symbols),
    )
    if as_csv:
        return csv_of_json(answer.body, key="quotes", model=PartnerQuote)
    return varies_by_accept(answer)


@router.get(
    "/candles/{symbol}",
    dependencies=[require_partner("candles:read")],
    response_model=PartnerCandles,
    responses={**csv_responses(PartnerCandle), **problem_responses(404, 406, 422, 502, 503, 504)},
)
async def partner_candles(
    symbol: SymbolPath,
    request: Request,
    interval: Annotated[CandleInterval, Query(description="Width of one candle")] = (
        CandleInterval.five_minutes
    ),
    span: Annotated[
        CandleRange, Query(alias="range", description="How far back the series reaches")
    ] = CandleRange.one_day,
) -> Response:
    """OHLCV candles of one symbol."""
    # The client from the lifespan state rather than a dependency: with its access rule as
    # its one dependency the route is answered past FastAPI's routing (`app.frontends.direct`).
    answer_format = negotiate(request.headers.get("accept"))
    market_data = MarketDataClient(request.state.gateway.caller)

    async def document() -> bytes:
        candles = await compose.candles(market_data, symbol=symbol, interval=interval, span=span)
        return candles.model_dump_json(by_alias=True).encode()

    as_csv = answer_format is ListFormat.csv
    answer = await cached_json(
        as_plain_json_request(request) if as_csv else request,
        policies(request.state.gateway.cache).candles,
        document,
    )
    if as_csv:
        return csv_of_json(answer.body, key="candles", model=PartnerCandle)
    return varies_by_accept(answer)


@router.post(
    "/orders",
    dependencies=[ORDER_ENTRY],
    status_code=status.HTTP_201_CREATED,
    response_model=PartnerOrder,
    responses={
        status.HTTP_201_CREATED: PLACED_ORDER_RESPONSE,
        **problem_responses(403, 404, 409, 422, 502, 503, 504),
    },
)
async def partner_place_order(
    order: PartnerOrderRequest,
    idempotency_key: IdempotencyKey,
    idempotency: IdempotencyDep,
    accounts: PartnerAccountsDep,
    orders: OrdersDep,
    response: Response,
) -> PartnerOrder:
    """Place an order in one of the partner's linked accounts."""
    if order.account_id not in accounts:
        raise Forbidden(
            f"Account {order.account_id} is not linked to this partner.",
            extra={"account_id": order.account_id},
        )
    placed, replayed = await compose.place(
        orders, request=order, idempotency_key=idempotency_key, idempotency=idempotency
    )
    mark_replayed(response, replayed=replayed)
    return placed


# Last: FastAPI tries a router's routes in order, and quotes are the partner traffic's bulk.
@router.get("/usage", response_model=UsageView, responses=problem_responses(401, 403))
async def partner_usage(principal: PartnerCaller, state: StateDep) -> UsageView:
    """The caller's plan, rate limits and day/month quota consumption."""
    return await compose.usage(principal, snapshot=state.config.current, quotas=state.chain.quotas)
