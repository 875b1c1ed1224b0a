"""The BFF routes' caching through the whole gateway, against the simulated platform: what is
shared (quotes, candles, sparklines, news), what never is (account sections), one backend
call however many requests miss together, 304s, encoded copies, the admin API's
invalidation."""

import asyncio
from collections.abc import AsyncIterator

import brotli
import pytest

from app.settings import CacheSettings, Settings
from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN, PartnerKey, create_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.platform_control import PlatformControl, platform_control
from tests.fixtures.problems import assert_problem

QUOTES = "/partner/v1/quotes"
PLAN = {"rate_per_minute": 100_000}


@pytest.fixture
async def backends(platform: Platform) -> AsyncIterator[PlatformControl]:
    async with platform_control(platform) as control:
        yield control


@pytest.fixture
async def partner(gateway: RunningGateway) -> PartnerKey:
    return await create_partner(gateway.client, plan=PLAN)


async def test_partner_quotes_miss_then_hit_one_backend_call(
    gateway: RunningGateway, partner: PartnerKey, backends: PlatformControl
) -> None:
    await backends.reset_stats("market-data")
    params = {"symbols": "AAPL,MSFT"}
    first = await gateway.client.get(QUOTES, params=params, headers=partner.headers)
    second = await gateway.client.get(QUOTES, params=params, headers=partner.headers)
    assert first.status_code == second.status_code == 200, first.text
    assert first.headers["cache-status"] == "gateway; fwd=uri-miss; fwd-status=200; ttl=1; stored"
    assert second.headers["cache-status"].startswith("gateway; hit; ttl=")
    assert second.content == first.content
    assert second.headers["content-type"] == "application/json"
    # What a partner is answered stays out of every other cache.
    assert second.headers["cache-control"] == "private, no-store"
    assert await backends.requests("market-data") == {"GET /quotes": 1}


async def test_partners_share_quotes_but_each_passes_its_access_rule(
    gateway: RunningGateway, partner: PartnerKey, backends: PlatformControl
) -> None:
    other = await create_partner(gateway.client, plan=PLAN)
    no_quotes = await create_partner(gateway.client, scopes=("candles:read",), plan=PLAN)
    await backends.reset_stats("market-data")
    params = {"symbols": "NVDA"}
    await gateway.client.get(QUOTES, params=params, headers=partner.headers)
    shared = await gateway.client.get(QUOTES, params=params, headers=other.headers)
    assert shared.status_code == 200 and "hit" in shared.headers["cache-status"]
    refused = await gateway.client.get(QUOTES, params=params, headers=no_quotes.headers)
    assert refused.status_code == 403
    anonymous = await gateway.client.get(QUOTES, params=params)
    assert anonymous.status_code == 401
    assert "cache-status" not in anonymous.headers
    assert await backends.requests("market-data") == {"GET /quotes": 1}


async def test_concurrent_misses_make_one_backend_call(
    gateway: RunningGateway, partner: PartnerKey, backends: PlatformControl
) -> None:
    await backends.fault("market-data", latency_ms=300)
    await backends.reset_stats("market-data")
    params = {"symbols": "AMZN,GOOGL"}
    answers = await asyncio.gather(
        *(gateway.client.get(QUOTES, params=params, headers=partner.headers) for _ in range(20))
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.content for a in answers}) == 1
    assert await backends.requests("market-data") == {"GET /quotes": 1}


async def test_conditional_requests_get_304_from_the_cache(
    gateway: RunningGateway, partner: PartnerKey, backends: PlatformControl
) -> None:
    params = {"symbols": "AAPL"}
    first = await gateway.client.get(QUOTES, params=params, headers=partner.headers)
    etag = first.headers["etag"]
    await backends.reset_stats("market-data")
    again = await gateway.client.get(
        QUOTES, params=params, headers={**partner.headers, "If-None-Match": etag}
    )
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert await backends.requests("market-data") == {}


async def test_candles_vary_by_interval_and_range(
    gateway: RunningGateway, partner: PartnerKey, backends: PlatformControl
) -> None:
    await backends.reset_stats("market-data")
    path = "/partner/v1/candles/AAPL"
    day = await gateway.client.get(path, params={"range": "1d"}, headers=partner.headers)
    week = await gateway.client.get(
        path, params={"range": "5d", "interval": "1h"}, headers=partner.headers
    )
    day_again = await gateway.client.get(path, params={"range": "1d"}, headers=partner.headers)
    assert day.status_code == week.status_code == 200, day.text
    assert day.json()["range"] == "1d" and week.json()["range"] == "5d"
    assert "hit" in day_again.headers["cache-status"]
    assert day_again.json() == day.json()
    assert await backends.requests("market-data") == {"GET /candles/AAPL": 2}


async def test_a_cached_body_is_encoded_for_clients_that_accept_it(
    gateway: RunningGateway, partner: PartnerKey
) -> None:
    params = {"symbols": ",".join(["AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA"])}
    plain = await gateway.client.get(QUOTES, params=params, headers=partner.headers)
    headers = {**partner.headers, "Accept-Encoding": "br"}
    async with gateway.client.stream("GET", QUOTES, params=params, headers=headers) as reply:
        raw = b"".join([chunk async for chunk in reply.aiter_raw()])
    assert reply.headers["content-encoding"] == "br"
    assert "hit" in reply.headers["cache-status"]
    assert brotli.decompress(raw) == plain.content


async def test_dashboards_share_news_and_sparklines_never_accounts(
    gateway: RunningGateway, platform: Platform, backends: PlatformControl
) -> None:
    alice = await bearer_headers(platform, username="alice")
    bob = await bearer_headers(platform, username="bob")
    await backends.reset_stats("news", "portfolio")
    mine = await gateway.client.get("/web/v1/dashboard", headers=alice)
    theirs = await gateway.client.get("/web/v1/dashboard", headers=bob)
    mine_again = await gateway.client.get("/web/v1/dashboard", headers=alice)
    assert mine.status_code == theirs.status_code == mine_again.status_code == 200
    assert mine.json()["account"]["account_id"] == "ACC-1001"
    assert theirs.json()["account"]["account_id"] == "ACC-1002"
    assert mine.json()["news"] == theirs.json()["news"] is not None
    # The account sections went to the portfolio service every time.
    portfolio = await backends.requests("portfolio")
    assert portfolio["GET /accounts/ACC-1001"] == 2
    assert portfolio["GET /accounts/ACC-1002"] == 1
    assert await backends.requests("news") == {"GET /news/latest": 1}
    assert "cache-status" not in mine.headers


async def test_mobile_quotes_are_shared_between_users(
    gateway: RunningGateway, platform: Platform, backends: PlatformControl
) -> None:
    await backends.reset_stats("market-data")
    params = {"symbols": "AAPL,TSLA"}
    alice = await gateway.client.get(
        "/mobile/v1/quotes", params=params, headers=await bearer_headers(platform, username="alice")
    )
    bob = await gateway.client.get(
        "/mobile/v1/quotes", params=params, headers=await bearer_headers(platform, username="bob")
    )
    assert alice.status_code == bob.status_code == 200, alice.text
    assert [q["symbol"] for q in bob.json()["quotes"]] == ["AAPL", "TSLA"]
    assert "hit" in bob.headers["cache-status"]
    assert await backends.requests("market-data") == {"GET /quotes": 1}


async def test_admin_api_invalidates_by_pattern_and_by_route(
    gateway: RunningGateway, partner: PartnerKey, backends: PlatformControl
) -> None:
    client = gateway.client
    await client.get(QUOTES, params={"symbols": "AAPL"}, headers=partner.headers)
    await client.get("/partner/v1/candles/MSFT", headers=partner.headers)
    state = await client.get("/admin/v1/cache", headers=ADMIN)
    assert state.status_code == 200 and state.json()["memory_entries"] >= 2

    by_pattern = await client.post(
        "/admin/v1/cache/invalidations", json={"patterns": ["/partner/v1/quotes*"]}, headers=ADMIN
    )
    assert by_pattern.status_code == 200, by_pattern.text
    assert by_pattern.json()["deleted"] >= 1
    after = await client.get(QUOTES, params={"symbols": "AAPL"}, headers=partner.headers)
    assert "fwd=uri-miss" in after.headers["cache-status"]
    assert (
        "hit"
        in (await client.get("/partner/v1/candles/MSFT", headers=partner.headers)).headers[
            "cache-status"
        ]
    )

    by_route = await client.post(
        "/admin/v1/cache/invalidations",
        json={"routes": ["/partner/v1/candles/{symbol}"]},
        headers=ADMIN,
    )
    assert by_route.json() == {"patterns": ["/partner/v1/candles/*"], "deleted": 1}
    again = await client.get("/partner/v1/candles/MSFT", headers=partner.headers)
    assert "fwd=uri-miss" in again.headers["cache-status"]


@pytest.mark.parametrize(
    "body",
    [{}, {"patterns": []}, {"patterns": "/x*"}, {"patterns": ["x*"]}, {"routes": [1]}, {"all": 1}],
)
async def test_admin_invalidation_refuses_bad_bodies(
    gateway: RunningGateway, body: dict[str, object]
) -> None:
    response = await gateway.client.post("/admin/v1/cache/invalidations", json=body, headers=ADMIN)
    assert_problem(response, 422)


async def test_admin_invalidation_needs_an_admin(gateway: RunningGateway) -> None:
    response = await gateway.client.post("/admin/v1/cache/invalidations", json={"patterns": ["/*"]})
    assert_problem(response, 401)


async def test_cache_switched_off_bypasses(settings: Settings, backends: PlatformControl) -> None:
    off = settings.model_copy(update={"cache": CacheSettings(enabled=False)})
    async with running_gateway(off) as gateway:
        partner = await create_partner(gateway.client, plan=PLAN)
        await backends.reset_stats("market-data")
        for _ in range(2):
            answer = await gateway.client.get(
                QUOTES, params={"symbols": "AAPL"}, headers=partner.headers
            )
            assert answer.status_code == 200
            assert "cache-status" not in answer.headers
    assert await backends.requests("market-data") == {"GET /quotes": 2}


def _lookups(metrics_text: str, result: str) -> float:
    for line in metrics_text.splitlines():
        if line.startswith(f'gateway_cache_lookups_total{{result="{result}"}}'):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_lookups_are_counted_by_result(gateway: RunningGateway, partner: PartnerKey) -> None:
    before = (await gateway.client.get("/metrics")).text
    params = {"symbols": "META"}
    for _ in range(3):
        await gateway.client.get(QUOTES, params=params, headers=partner.headers)
    after = (await gateway.client.get("/metrics")).text
    assert _lookups(after, "miss") - _lookups(before, "miss") == 1
    assert _lookups(after, "hit") - _lookups(before, "hit") == 2


async def test_hits_still_count_against_rate_limits_and_honour_csv(
    gateway: RunningGateway, partner: PartnerKey, backends: PlatformControl
) -> None:
    limited = await create_partner(gateway.client, plan={"rate_per_minute": 1})
    params = {"symbols": "KO"}
    await gateway.client.get(QUOTES, params=params, headers=partner.headers)
    first = await gateway.client.get(QUOTES, params=params, headers=limited.headers)
    assert first.status_code == 200 and "hit" in first.headers["cache-status"]
    assert "accept" in first.headers["vary"].lower()
    refused = await gateway.client.get(QUOTES, params=params, headers=limited.headers)
    assert_problem(refused, 429)
    assert "retry-after" in refused.headers
    await backends.reset_stats("market-data")
    table = await gateway.client.get(
        QUOTES, params=params, headers={**partner.headers, "Accept": "text/csv"}
    )
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    # Made from market-data's answer, not from the JSON entry.
    assert "cache-status" not in table.headers
    assert table.text.splitlines()[1].startswith("KO,")


def test_quotes_hits_are_answered_before_routing_under_their_own_rules() -> None:
    from app.frontends.caching import _shortcut_routes
    from app.main import create_app

    routes = _shortcut_routes(create_app())
    assert {path: rule.scopes for path, (_, rule) in routes.items()} == {
        "/partner/v1/quotes": ("quotes:read",),
        "/mobile/v1/quotes": ("read",),
    }


async def test_an_upstream_failure_on_a_miss_is_a_problem_with_cache_status(
    gateway: RunningGateway, partner: PartnerKey, backends: PlatformControl
) -> None:
    await backends.fault("market-data", error_rate=1.0)
    failed = await gateway.client.get(QUOTES, params={"symbols": "JPM"}, headers=partner.headers)
    assert failed.status_code >= 500
    assert failed.headers["content-type"].startswith("application/problem+json")
    assert failed.headers["cache-status"].startswith("gateway; fwd=miss; fwd-status=")
    await backends.clear_faults()
    after = await gateway.client.get(QUOTES, params={"symbols": "JPM"}, headers=partner.headers)
    assert after.status_code == 200 and "fwd=uri-miss" in after.headers["cache-status"]
