"""Builds the partner responses from the platform's services."""

from datetime import UTC, datetime

from app.errors import NotFound, UpstreamRejected
from app.frontends.order_entry import place_order
from app.frontends.partner.v1.views import (
    CandleInterval,
    CandleRange,
    PartnerCandle,
    PartnerCandles,
    PartnerOrder,
    PartnerOrderRequest,
    QuotaView,
    RatesView,
    UsageView,
)
from app.policy.idempotency import IdempotencyScope
from app.security.principal import Principal
from app.security.quotas import QuotaCounter, QuotaPeriods, QuotaUsage
from app.store.snapshot import ConfigSnapshot
from app.upstreams import market_data as market_data_service
from app.upstreams.caller import UpstreamCaller
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


def _quota(limit: int | None, used: int, resets_at: datetime) -> QuotaView:
    remaining = max(0, limit - used) if limit is not None else None
    return QuotaView(limit=limit, used=used, remaining=remaining, resets_at=resets_at)


async def usage(
    principal: Principal, *, snapshot: ConfigSnapshot, quotas: QuotaCounter
) -> UsageView:
    """Who the caller is to the gateway, its plan's rates, and its day and month quota use."""
    plan = snapshot.plans.get(principal.plan) if principal.plan is not None else None
    consumer = (
        snapshot.consumers.get(principal.consumer_id) if principal.consumer_id is not None else None
    )
    if principal.consumer_id is not None:
        used = await quotas.usage(principal.consumer_id)
    else:
        # A client-credentials token without a consumer record: nothing is counted.
        used = QuotaUsage(0, 0, QuotaPeriods.at(datetime.now(UTC)))
    periods = used.periods
    return UsageView(
        consumer=consumer.name if consumer is not None else principal.subject,
        consumer_id=principal.consumer_id,
        plan=principal.plan,
        scopes=sorted(principal.scopes),
        account_ids=list(principal.account_ids),
        rates=RatesView(
            rate_per_second=plan.rate_per_second if plan else None,
            rate_per_minute=plan.rate_per_minute if plan else None,
            max_in_flight=plan.max_in_flight if plan else None,
        ),
        day=_quota(plan.quota_per_day if plan else None, used.used_today, periods.day_resets_at),
        month=_quota(
            plan.quota_per_month if plan else None, used.used_this_month, periods.month_resets_at
        ),
    )
