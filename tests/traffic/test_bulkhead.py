"""Bulkheads: a full service fails fast with 503 while other services keep answering."""

import asyncio

import pytest

from app.traffic.bulkhead import Bulkhead, BulkheadFull
from app.traffic.service_policy import BulkheadPolicy
from backends.launcher import Platform
from tests.fixtures.upstream_caller import upstream_caller


async def test_calls_beyond_the_limit_wait_briefly_then_fail() -> None:
    bulkhead = Bulkhead("news", BulkheadPolicy(max_concurrent=2, max_wait_ms=20))
    release = asyncio.Event()

    async def hold() -> None:
        async with bulkhead.slot():
            await release.wait()

    holders = [asyncio.create_task(hold()) for _ in range(2)]
    await asyncio.sleep(0)
    assert bulkhead.in_flight == 2
    with pytest.raises(BulkheadFull) as full:
        async with bulkhead.slot():
            pass
    assert full.value.status == 503
    assert full.value.extra["reason"] == "bulkhead-full"
    release.set()
    await asyncio.gather(*holders)
    async with bulkhead.slot():
        assert bulkhead.in_flight == 1
    assert bulkhead.rejected == 1


async def test_a_waiting_call_gets_the_slot_a_finished_one_frees() -> None:
    bulkhead = Bulkhead("news", BulkheadPolicy(max_concurrent=1, max_wait_ms=1000))
    order: list[str] = []

    async def call(name: str, hold_s: float) -> None:
        async with bulkhead.slot():
            order.append(name)
            await asyncio.sleep(hold_s)

    await asyncio.gather(call("first", 0.05), call("second", 0))
    assert order == ["first", "second"]
    assert bulkhead.rejected == 0


async def test_a_full_news_bulkhead_leaves_market_data_unaffected(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.set_faults(latency_ms=600, paths=["/news"])
    policies = {"news": {"bulkhead": {"max_concurrent": 2, "max_wait_ms": 0}}}
    services = {"news": [news.url], "market-data": platform.urls["market-data"]}
    async with upstream_caller(database_url, services, policies=policies) as caller:
        slow = [
            asyncio.create_task(caller.request("news", "GET", "/news", params={"limit": str(n)}))
            for n in (1, 2)
        ]
        await asyncio.sleep(0.1)
        with pytest.raises(BulkheadFull):
            await caller.request("news", "GET", "/news", params={"limit": "3"})
        quotes = await caller.request("market-data", "GET", "/quotes", params={"symbols": "AAPL"})
        assert not any(task.done() for task in slow)  # news is still saturated
        assert quotes.status == 200
        assert [(await task).status for task in slow] == [200, 200]
    requests = news.stats()["requests"]
    assert isinstance(requests, dict)
    assert requests["GET /news"] == 2


async def test_a_slot_handed_to_a_waiter_that_is_cancelled_passes_on() -> None:
    bulkhead = Bulkhead("news", BulkheadPolicy(max_concurrent=1, max_wait_ms=5000))
    assert bulkhead.try_enter()
    waiting = asyncio.create_task(bulkhead.enter())
    await asyncio.sleep(0.01)
    assert bulkhead.waiting == 1
    # The slot is handed over, and the waiter's caller goes away before it could run.
    bulkhead.leave()
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    # The handed-over slot was given back, not lost, and not counted twice.
    assert bulkhead.in_flight == 0
    assert bulkhead.waiting == 0
    assert bulkhead.try_enter()
    assert not bulkhead.try_enter()
