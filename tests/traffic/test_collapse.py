"""Request collapsing: identical concurrent GETs share one upstream call and its bytes."""

import asyncio
import time
from collections.abc import Awaitable

import pytest

from app.errors import UpstreamTimeout
from app.settings import UpstreamSettings
from app.traffic.collapse import RequestCollapser, collapse_key
from app.traffic.deadline import deadline_scope
from app.upstreams.caller import UpstreamResponse
from backends.launcher import Platform
from tests.fixtures.upstream_caller import upstream_caller


def _quote_calls(platform: Platform) -> int:
    total = 0
    for backend in platform.instances("market-data"):
        requests = backend.stats()["requests"]
        assert isinstance(requests, dict)
        total += int(requests.get("GET /quotes", 0))
    return total


@pytest.fixture
def slow_quotes(platform: Platform) -> Platform:
    """Quotes take long enough for concurrent callers to overlap."""
    for backend in platform.instances("market-data"):
        backend.reset_stats()
        backend.set_faults(latency_ms=150, paths=["/quotes"])
    return platform


async def test_concurrent_identical_gets_make_one_upstream_call(
    slow_quotes: Platform, database_url: str
) -> None:
    services = {"market-data": slow_quotes.urls["market-data"]}
    async with upstream_caller(database_url, services) as caller:
        responses = await asyncio.gather(
            *(
                caller.request("market-data", "GET", "/quotes", params={"symbols": "AAPL,MSFT"})
                for _ in range(20)
            )
        )
        assert len(caller.collapser) == 0  # nothing left in flight
    assert _quote_calls(slow_quotes) == 1
    assert {r.status for r in responses} == {200}
    assert len({r.body for r in responses}) == 1


async def test_calls_for_different_callers_or_queries_are_not_shared(
    slow_quotes: Platform, database_url: str
) -> None:
    services = {"market-data": slow_quotes.urls["market-data"]}
    async with upstream_caller(database_url, services) as caller:

        def quotes(symbols: str, account: str) -> Awaitable[UpstreamResponse]:
            return caller.request(
                "market-data",
                "GET",
                "/quotes",
                params={"symbols": symbols},
                headers={"x-account-id": account},
            )

        await asyncio.gather(
            quotes("AAPL", "ACC-1001"),
            quotes("AAPL", "ACC-1001"),
            quotes("AAPL", "ACC-1002"),
            quotes("NVDA", "ACC-1001"),
        )
    assert _quote_calls(slow_quotes) == 3


async def test_collapsing_can_be_switched_off_per_call(
    slow_quotes: Platform, database_url: str
) -> None:
    services = {"market-data": slow_quotes.urls["market-data"]}
    async with upstream_caller(database_url, services) as caller:
        await asyncio.gather(
            *(
                caller.request(
                    "market-data", "GET", "/quotes", params={"symbols": "TSLA"}, collapse=False
                )
                for _ in range(4)
            )
        )
    assert _quote_calls(slow_quotes) == 4


async def test_collapsing_can_be_switched_off_in_the_settings(
    slow_quotes: Platform, database_url: str
) -> None:
    services = {"market-data": slow_quotes.urls["market-data"]}
    settings = UpstreamSettings(collapse_gets=False)
    async with upstream_caller(database_url, services, settings=settings) as caller:
        await asyncio.gather(
            *(
                caller.request("market-data", "GET", "/quotes", params={"symbols": "TSLA"})
                for _ in range(4)
            )
        )
    assert _quote_calls(slow_quotes) == 4


async def test_a_cancelled_leader_does_not_cancel_its_followers() -> None:
    collapser: RequestCollapser[str] = RequestCollapser()
    release = asyncio.Event()
    calls = 0

    async def call() -> str:
        nonlocal calls
        calls += 1
        await release.wait()
        return "answer"

    key = collapse_key("news", "/news", params=None, headers={})
    leader = asyncio.create_task(collapser.run(key, call))
    follower = asyncio.create_task(collapser.run(key, call))
    await asyncio.sleep(0)
    leader.cancel()
    release.set()
    assert await follower == "answer"
    assert calls == 1
    assert collapser.followers == 1


def test_request_ids_and_deadlines_do_not_split_the_key() -> None:
    first = collapse_key(
        "news", "/news", params={"b": "2", "a": "1"}, headers={"X-Request-ID": "r1"}
    )
    second = collapse_key(
        "news",
        "/news",
        params={"a": "1", "b": "2"},
        headers={"x-request-id": "r2", "x-request-deadline": "800"},
    )
    assert first == second
    assert first != collapse_key("news", "/news", params={"a": "1"}, headers={})


async def test_a_shared_failure_holds_its_waiters_for_one_try_and_counts_once(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.reset_stats()
    news.set_faults(latency_ms=2000, paths=["/news"])
    async with upstream_caller(
        database_url, {"news": [news.url]}, timeouts_ms={"news": 300}
    ) as caller:

        async def waiter() -> float:
            started = time.monotonic()
            with deadline_scope(5000), pytest.raises(UpstreamTimeout):
                await caller.request("news", "GET", "/news/latest")
            return time.monotonic() - started

        waited = await asyncio.gather(*(waiter() for _ in range(10)))
        breaker = caller.breakers.get("news", news.url)
        assert breaker is not None
        assert breaker.window() == (1, 1)
    # One 0.3 s try for all ten, not a retry of the instance that timed out.
    assert max(waited) < 0.8
    assert news.stats()["requests"] == {"GET /news/latest": 1}
