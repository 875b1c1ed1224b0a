"""Usage per consumer (`app.security.usage`): counted by the edge for each request a
consumer's credential made, kept in Redis (every process's counts in one place, bounded
retention) or in memory, and read back by hour, day, route and status class."""

import time

from app.security.usage import HOUR_S, LATENCY_BOUNDS_MS, UsageMeter, percentile_ms
from app.settings import PortalSettings, Settings
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import running_gateway
from tests.fixtures.redis import prefixed_redis

QUOTES = "/partner/v1/quotes"


def test_percentiles_read_the_bucket_that_holds_the_quantile() -> None:
    # 90 requests at most 10 ms, 9 at most 250 ms, 1 over the last bound.
    histogram = {1: 90, 5: 9, len(LATENCY_BOUNDS_MS): 1}
    assert percentile_ms(histogram, 0.50) == 10
    assert percentile_ms(histogram, 0.95) == 250
    assert percentile_ms(histogram, 0.999) == LATENCY_BOUNDS_MS[-1] * 2
    assert percentile_ms({}, 0.5) is None


async def test_without_redis_counts_are_kept_in_memory_by_hour_day_route_and_class() -> None:
    meter = UsageMeter(PortalSettings(), prefix="t:")
    await meter.start(None)
    try:
        for status, seconds in ((200, 0.004), (200, 0.02), (429, 0.001), (503, 0.3)):
            meter.record(
                7, method="GET", route="/partner/v1/quotes", status=status, seconds=seconds
            )
        meter.record(7, method="POST", route="/partner/v1/orders", status=201, seconds=0.05)
        meter.record(8, method="GET", route="/partner/v1/quotes", status=200, seconds=0.01)
        report = await meter.report(7)
    finally:
        await meter.stop()
    hour = report.hours[-1]
    assert hour.start == int(time.time()) // HOUR_S * HOUR_S
    assert hour.requests == 5
    assert hour.by_class == {"2xx": 3, "4xx": 1, "5xx": 1}
    assert hour.limited == 1
    assert hour.latency_ms == {"p50": 25, "p95": 500, "p99": 500}
    assert sum(p.requests for p in report.hours[:-1]) == 0
    assert report.total.requests == 5 and report.total.errors == 1
    assert [(r.route, r.by_class) for r in report.routes] == [
        ("GET /partner/v1/quotes", {"2xx": 2, "4xx": 1, "5xx": 1}),
        ("POST /partner/v1/orders", {"2xx": 1}),
    ]


async def test_the_gateway_counts_a_consumers_calls_into_redis_with_bounded_retention(
    settings: Settings,
) -> None:
    async with prefixed_redis() as redis:
        settings = settings.model_copy(
            update={"redis_url": redis.url, "redis_prefix": redis.prefix}
        )
        async with running_gateway(settings) as gateway:
            partner = await create_partner(gateway.client, plan={"rate_per_minute": 2})
            statuses = [
                (
                    await gateway.client.get(
                        QUOTES, params={"symbols": "AAPL"}, headers=partner.headers
                    )
                ).status_code
                for _ in range(3)
            ]
            assert statuses == [200, 200, 429]
            # Not a consumer's call: not counted.
            assert (await gateway.client.get("/healthz")).status_code == 200
        # The gateway flushed on shutdown; another process reads the same counts.
        reader = UsageMeter(PortalSettings(usage_retention_days=30), prefix=redis.prefix)
        await reader.start(redis.shared)
        try:
            report = await reader.report(partner.consumer_id)
        finally:
            await reader.stop()
        assert report.total.requests == 3
        assert report.total.by_class == {"2xx": 2, "4xx": 1}
        assert report.total.limited == 1
        assert [r.route for r in report.routes] == ["GET /partner/v1/quotes"]
        keys = sorted(
            [k.decode() async for k in redis.client.scan_iter(match=f"{redis.prefix}usage:*")]
        )
        assert [k.rsplit(":", 2)[1] for k in keys] == ["d", "h"]
        day_ttl, hour_ttl = [await redis.client.ttl(k) for k in keys]
        assert 0 < hour_ttl <= 48 * 3600
        assert 48 * 3600 < day_ttl <= 31 * 86400
