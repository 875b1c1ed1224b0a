"""Deadlines: one per request, shortened by the client's header, split over upstream calls,
passed upstream, and answered with 504 when it runs out."""

import time

import httpx
import pytest

from app.errors import UpstreamTimeout
from app.settings import Settings
from app.traffic.deadline import current_deadline, deadline_scope, route_budget_ms
from backends.launcher import Platform
from tests.fixtures.consumers import linked_client_partner
from tests.fixtures.gateway import running_gateway
from tests.fixtures.upstream_caller import upstream_caller


def test_the_longest_route_prefix_sets_the_budget() -> None:
    routes = {"/partner/v1": 3000, "/partner/v1/orders": 8000}
    assert route_budget_ms("/partner/v1/orders/1", default_ms=5000, route_ms=routes) == 8000
    assert route_budget_ms("/partner/v1/quotes", default_ms=5000, route_ms=routes) == 3000
    assert route_budget_ms("/web/v1/dashboard", default_ms=5000, route_ms=routes) == 5000


def test_the_scope_sets_and_restores_the_deadline() -> None:
    assert current_deadline() is None
    with deadline_scope(200) as deadline:
        assert current_deadline() is deadline
        assert 0 < deadline.remaining_ms() <= 200
    assert current_deadline() is None


async def test_a_slow_upstream_answers_504_at_the_deadline_while_another_stays_fast(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.reset_stats()
    news.set_faults(latency_ms=2000, paths=["/news"])
    market = platform.process("market-data", 0)
    market.reset_stats()
    services = {"news": [news.url], "market-data": [market.url]}
    async with upstream_caller(database_url, services, timeouts_ms={"news": 5000}) as caller:
        with deadline_scope(300):
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout) as timed_out:
                await caller.request("news", "GET", "/news/latest")
            waited = time.monotonic() - started
        with deadline_scope(300):
            quotes = await caller.request(
                "market-data", "GET", "/quotes", params={"symbols": "AAPL"}
            )
    assert timed_out.value.status == 504
    assert waited >= 0.25  # it waited for its deadline, not for the 5 s service timeout
    assert quotes.status == 200
    # The upstream was told how long the gateway would wait.
    sent = news.stats()["last_headers"]
    assert isinstance(sent, dict)
    assert 0 < int(sent["GET /news/latest"]["x-request-deadline"]) <= 300
    seen = market.stats()["last_headers"]
    assert isinstance(seen, dict)
    assert 0 < int(seen["GET /quotes"]["x-request-deadline"]) <= 300


async def test_an_exhausted_deadline_fails_before_calling(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.reset_stats()
    async with upstream_caller(database_url, {"news": [news.url]}) as caller:
        with deadline_scope(0), pytest.raises(UpstreamTimeout) as timed_out:
            await caller.request("news", "GET", "/news/latest")
    assert timed_out.value.extra["reason"] == "deadline-exceeded"
    assert news.stats()["total"] == 0


async def test_the_gateway_rejects_a_malformed_deadline_header(settings: Settings) -> None:
    async with running_gateway(settings) as gateway:
        response = await gateway.client.get("/healthz", headers={"X-Request-Deadline": "soon"})
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "X-Request-Deadline" in response.json()["detail"]


async def _partner_token(platform: Platform) -> str:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(
            platform.urls["identity"][0] + "/__dev/token", json={"client_id": "partner-acme"}
        )
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


async def test_the_gateway_passes_the_client_deadline_upstream_and_answers_504_when_it_ends(
    platform: Platform, settings: Settings
) -> None:
    market = platform.instances("market-data")
    for backend in market:
        backend.reset_stats()
    headers = {"Authorization": f"Bearer {await _partner_token(platform)}"}
    async with running_gateway(settings) as gateway:
        await linked_client_partner(gateway.client)
        fast = await gateway.client.get(
            "/partner/v1/quotes",
            params={"symbols": "AAPL"},
            headers={**headers, "X-Request-Deadline": "1200"},
        )
        sent = [b.stats()["last_headers"].get("GET /quotes") for b in market]
        for backend in market:
            backend.set_faults(latency_ms=1500, paths=["/quotes"])
        slow = await gateway.client.get(
            "/partner/v1/quotes",
            params={"symbols": "MSFT"},
            headers={**headers, "X-Request-Deadline": "300"},
        )
    assert fast.status_code == 200, fast.text
    (forwarded,) = [h for h in sent if h]
    assert 0 < int(forwarded["x-request-deadline"]) <= 1200
    assert slow.status_code == 504, slow.text
    assert slow.headers["content-type"] == "application/problem+json"
