"""Instance health: active checks take a failing instance out of rotation and bring it back;
passive ejection does the same from failed calls."""

import asyncio
from collections.abc import Callable

from app.discovery.checks import HealthTable
from app.traffic.service_policy import EjectionPolicy, HealthCheckPolicy
from backends.launcher import Platform
from tests.fixtures.upstream_caller import upstream_caller


async def _until(condition: Callable[[], bool], *, timeout_s: float = 5.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true after {timeout_s} s")


def test_consecutive_failed_calls_eject_an_instance_for_a_while() -> None:
    now = [100.0]
    table = HealthTable(clock=lambda: now[0])
    policy = EjectionPolicy(consecutive_failures=3, ejection_ms=2000)
    for ok in (False, False, True, False, False):
        table.record_call("news", "http://a", ok=ok, policy=policy)
    assert table.in_rotation("news", "http://a")
    table.record_call("news", "http://a", ok=False, policy=policy)
    assert not table.in_rotation("news", "http://a")
    now[0] += 2.1
    assert table.in_rotation("news", "http://a")


def test_check_thresholds_decide_when_an_instance_leaves_and_returns() -> None:
    table = HealthTable()
    policy = HealthCheckPolicy(unhealthy_threshold=2, healthy_threshold=3)
    table.record_check("news", "http://a", error="answered 503", policy=policy)
    assert table.in_rotation("news", "http://a")
    table.record_check("news", "http://a", error="answered 503", policy=policy)
    assert not table.in_rotation("news", "http://a")
    for _ in range(2):
        table.record_check("news", "http://a", error=None, policy=policy)
    assert not table.in_rotation("news", "http://a")
    table.record_check("news", "http://a", error=None, policy=policy)
    assert table.in_rotation("news", "http://a")


async def test_active_checks_take_a_failing_instance_out_and_bring_it_back(
    platform: Platform, database_url: str
) -> None:
    sick, well = platform.instances("market-data")
    # Probe a path that fault injection reaches (it never faults /health).
    policy = {
        "health_check": {
            "path": "/symbols",
            "interval_ms": 100,
            "unhealthy_threshold": 2,
            "healthy_threshold": 2,
        }
    }
    async with upstream_caller(
        database_url,
        {"market-data": platform.urls["market-data"]},
        policies={"market-data": policy},
        health_checks=True,
    ) as caller:
        registry = caller.registry
        sick.set_faults(error_rate=1.0, error_status=500, paths=["/symbols"])
        await _until(lambda: not registry.health.in_rotation("market-data", sick.url))
        assert [i.url for i in registry.routable("market-data")] == [well.url]
        health = registry.health.health("market-data", sick.url)
        assert health.last_error == "answered 500"
        sick.reset_stats()
        for symbol in ("AAPL", "MSFT", "NVDA"):
            await caller.request("market-data", "GET", "/quotes", params={"symbols": symbol})
        requests = sick.stats()["requests"]
        assert isinstance(requests, dict)
        assert "GET /quotes" not in requests
        sick.reset_faults()
        await _until(lambda: registry.health.in_rotation("market-data", sick.url))
        assert len(registry.routable("market-data")) == 2


async def test_with_every_instance_out_of_rotation_calls_still_try_them(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    async with upstream_caller(database_url, {"news": [news.url]}) as caller:
        table = caller.registry.health
        policy = EjectionPolicy(consecutive_failures=1)
        table.record_call("news", news.url, ok=False, policy=policy)
        assert not table.in_rotation("news", news.url)
        response = await caller.request("news", "GET", "/news/latest")
    assert response.status == 200
