"""Builds the partner responses from the platform's services."""

from app.errors import NotFound
from app.frontends.idempotency import IdempotencyScope
from app.frontends.order_entry import place_order
from app.frontends.partner.v1.views import (
    CandleInterval,
    CandleRange,
    PartnerCandle,
    PartnerCandles,
    PartnerOrder,
    PartnerOrderRequest,
)
from app.upstreams import market_data as market_data_service
from app.upstreams.caller import UpstreamCaller
from app.upstreams.errors import UpstreamRejected
from app.upstreams.market_data import MarketDataClient
from app.upstreams.orders import OrdersClient, PlacedOrder


async def quote_document(caller: UpstreamCaller, symbols: str) -> bytes:
    """market-data's quotes document as bytes; its shape is already the partner contract.
    `symbols` is the validated, comma-separated list."""
    upstream = await caller.request(
        market_data_service.SERVICE, "GET", "/quotes", params={"symbols": symbols}
    )
    if upstream.status >= 400:
        raise UpstreamRejected(upstream.detail(), status=upstream.status, service=upstream.service)
    return upstream.body


async def candles(
    market_data: MarketDataClient, *, symbol: str, interval: CandleInterval, span: CandleRange
) -> PartnerCandles:
    """OHLCV bars of one symbol; an unknown symbol is a 404 of ours, not market-data's."""
    try:
        series = await market_data.candles(symbol, interval=interval.value, range_=span.value)
    except UpstreamRejected as rejected:
        if rejected.status == 404:
            raise NotFound(f"No listed symbol {symbol!r}.") from rejected
        raise
    return PartnerCandles(
        symbol=series.symbol,
        interval=interval,
        span=span,
        candles=[PartnerCandle(t=c.t, o=c.o, h=c.h, l=c.l, c=c.c, v=c.v) for c in series.candles],
    )


async def place(
    orders: OrdersClient,
    *,
    request: PartnerOrderRequest,
    idempotency_key: str,
    idempotency: IdempotencyScope,
) -> tuple[PartnerOrder, bool]:
    """Place the order in its account; also says whether the orders service replayed it."""
    placed: PlacedOrder = await place_order(
        orders,
        account_id=request.account_id,
        order=request.order(),
        idempotency_key=idempotency_key,
        idempotency=idempotency,
    )
    return PartnerOrder.model_validate(placed.order.model_dump()), placed.replayed
