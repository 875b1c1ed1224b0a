"""Circuit breakers: open on failures, refuse at once, probe when half-open, close on success;
and a killed instance under load: calls keep succeeding, its circuit opens, health checks take
it out, and it returns to rotation after a restart."""

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.errors import UpstreamUnavailable
from app.settings import RateLimitSettings, Settings
from app.traffic.breaker import BreakerBoard, CircuitBreaker, CircuitOpen, CircuitState
from app.traffic.service_policy import BreakerPolicy
from app.upstreams.caller import UpstreamCaller
from backends.launcher import Platform
from tests.fixtures.consumers import linked_client_partner
from tests.fixtures.gateway import running_gateway
from tests.fixtures.upstream_caller import upstream_caller


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_consecutive_failures_open_the_circuit() -> None:
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=3), clock=FakeClock())
    for _ in range(2):
        assert breaker.try_acquire()
        breaker.record_failure()
    assert breaker.state is CircuitState.closed
    breaker.record_success()
    for _ in range(3):
        assert breaker.try_acquire()
        breaker.record_failure()
    assert breaker.state is CircuitState.open
    assert not breaker.try_acquire()


def test_failure_ratio_over_the_window_opens_the_circuit_once_enough_calls() -> None:
    clock = FakeClock()
    policy = BreakerPolicy(
        consecutive_failures=100, failure_ratio=0.5, minimum_calls=10, window_s=10
    )
    breaker = CircuitBreaker(policy, clock=clock)
    for _ in range(4):
        breaker.record_success()
        breaker.record_failure()
    assert breaker.state is CircuitState.closed  # 4 of 8: too few calls to judge
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is CircuitState.open  # 5 of 10


def test_old_calls_leave_the_rolling_window() -> None:
    clock = FakeClock()
    policy = BreakerPolicy(
        consecutive_failures=100, failure_ratio=0.5, minimum_calls=4, window_s=10
    )
    breaker = CircuitBreaker(policy, clock=clock)
    for _ in range(6):
        breaker.record_success()
    breaker.record_failure()
    breaker.record_failure()
    assert breaker.state is CircuitState.closed
    clock.now += 11
    assert breaker.window() == (0, 0)
    # The six old successes no longer dilute the ratio: 3 of 4 recent calls failed.
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state is CircuitState.closed
    breaker.record_failure()
    assert breaker.state is CircuitState.open


def test_half_open_lets_a_limited_number_of_probes_through_and_success_closes() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(
        BreakerPolicy(consecutive_failures=1, cool_down_ms=5000, half_open_probes=2), clock=clock
    )
    breaker.record_failure()
    assert breaker.state is CircuitState.open
    clock.now += 4.9
    assert not breaker.try_acquire()
    clock.now += 0.2
    assert breaker.state is CircuitState.half_open
    assert breaker.try_acquire()
    assert breaker.try_acquire()
    assert not breaker.try_acquire()  # both probes in flight
    breaker.record_success()
    assert breaker.state is CircuitState.closed
    assert breaker.try_acquire()


def test_a_failed_probe_opens_the_circuit_for_another_cool_down() -> None:
    clock = FakeClock()
    breaker = CircuitBreaker(BreakerPolicy(consecutive_failures=1, cool_down_ms=1000), clock=clock)
    breaker.record_failure()
    clock.now += 1.5
    assert breaker.try_acquire()
    breaker.record_failure()
    assert breaker.state is CircuitState.open
    clock.now += 0.5
    assert not breaker.try_acquire()
    clock.now += 0.6
    assert breaker.state is CircuitState.half_open


def test_the_board_keeps_one_breaker_per_instance_and_applies_policy_changes() -> None:
    board = BreakerBoard()
    first = board.breaker("news", "http://a", BreakerPolicy())
    assert board.breaker("news", "http://a", BreakerPolicy()) is first
    assert board.breaker("news", "http://b", BreakerPolicy()) is not first
    changed = BreakerPolicy(consecutive_failures=2)
    assert board.breaker("news", "http://a", changed).policy == changed
    assert [(e.service, e.url) for e in board] == [("news", "http://a"), ("news", "http://b")]


async def test_all_circuits_open_answers_503_at_once_without_calling(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.reset_stats()
    news.set_faults(error_rate=1.0, error_status=500)
    policy = {"breaker": {"consecutive_failures": 2, "cool_down_ms": 60_000}}
    async with upstream_caller(
        database_url, {"news": [news.url]}, policies={"news": policy}
    ) as caller:
        for _ in range(2):
            with pytest.raises(Exception) as failed:
                await caller.request("news", "GET", "/news/latest")
            assert getattr(failed.value, "status", None) == 502
        with pytest.raises(CircuitOpen) as refused:
            await caller.request("news", "GET", "/news/latest")
    assert refused.value.status == 503
    assert "circuit open" in refused.value.detail
    assert news.stats()["total"] == 2


async def _load(caller: UpstreamCaller, results: list[int], stop: asyncio.Event) -> None:
    symbols = ["AAPL", "MSFT", "NVDA", "TSLA", "AMZN"]
    index = 0
    while not stop.is_set():
        index += 1
        response = await caller.request(
            "market-data", "GET", "/quotes", params={"symbols": symbols[index % 5]}
        )
        results.append(response.status)


async def _until(condition: Callable[[], bool], *, timeout_s: float = 10.0) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not true after {timeout_s} s: {condition}")


async def test_a_killed_instance_under_load_is_routed_around_and_returns_after_restart(
    platform: Platform, database_url: str
) -> None:
    victim, survivor = platform.instances("market-data")
    policy = {
        "breaker": {"consecutive_failures": 3, "cool_down_ms": 300},
        "health_check": {
            "interval_ms": 100,
            "timeout_ms": 300,
            "unhealthy_threshold": 2,
            "healthy_threshold": 1,
        },
        "retries": {"budget_min_per_s": 50},
    }
    async with upstream_caller(
        database_url,
        {"market-data": platform.urls["market-data"]},
        policies={"market-data": policy},
        health_checks=True,
    ) as caller:
        registry = caller.registry
        results: list[int] = []
        stop = asyncio.Event()
        workers = [asyncio.create_task(_load(caller, results, stop)) for _ in range(4)]
        try:
            await _until(lambda: len(results) >= 20)
            victim.kill()
            killed_at = len(results)
            await _until(lambda: not registry.health.in_rotation("market-data", victim.url))
            await _until(lambda: len(results) >= killed_at + 40)
            breaker = caller.breakers.get("market-data", victim.url)
            assert breaker is not None
            assert breaker.consecutive_failures >= 3 or breaker.state is not CircuitState.closed
            assert [i.url for i in registry.routable("market-data")] == [survivor.url]

            victim.restart()
            await _until(lambda: registry.health.in_rotation("market-data", victim.url))
            victim.reset_stats()
            await _until(lambda: int(str(victim.stats()["total"])) >= 5)
        finally:
            stop.set()
            await asyncio.gather(*workers)
            if not victim.is_running:
                victim.restart()
    # Every request succeeded: the ones that met the dead instance were retried on the other.
    assert results and set(results) == {200}
    assert breaker.state is CircuitState.closed


async def test_partner_quotes_keep_answering_while_a_market_data_instance_dies_and_returns(
    platform: Platform, settings: Settings
) -> None:
    victim, _ = platform.instances("market-data")
    quiet = settings.model_copy(update={"rate_limit": RateLimitSettings(enabled=False)})
    async with running_gateway(quiet) as gateway, httpx.AsyncClient(timeout=5) as plain:
        client = gateway.client
        admin = {"Authorization": "Bearer test-admin-token"}
        policy = {
            "breaker": {"consecutive_failures": 3, "cool_down_ms": 300},
            "health_check": {"interval_ms": 100, "unhealthy_threshold": 2, "healthy_threshold": 1},
        }
        changed = await client.put(
            "/admin/v1/services/market-data/policy", json=policy, headers=admin
        )
        assert changed.status_code == 200
        await linked_client_partner(client)
        token = (
            await plain.post(
                platform.urls["identity"][0] + "/__dev/token", json={"client_id": "partner-acme"}
            )
        ).json()["access_token"]
        partner = {"Authorization": f"Bearer {token}"}

        async def victim_view() -> dict[str, Any]:
            listed = (await client.get("/admin/v1/traffic/instances", headers=admin)).json()
            (market,) = [s for s in listed["services"] if s["service"] == "market-data"]
            (view,) = [i for i in market["instances"] if i["url"] == victim.url]
            return view

        results: list[int] = []
        stop = asyncio.Event()

        async def load(symbol: str) -> None:
            while not stop.is_set():
                response = await client.get(
                    "/partner/v1/quotes", params={"symbols": symbol}, headers=partner
                )
                results.append(response.status_code)

        workers = [asyncio.create_task(load(s)) for s in ("AAPL", "MSFT", "NVDA", "TSLA")]
        try:
            await _until(lambda: len(results) >= 20)
            victim.kill()
            killed_at = len(results)
            await _until(lambda: len(results) >= killed_at + 40)
            out = await victim_view()
            for _ in range(100):
                if not out["in_rotation"]:
                    break
                await asyncio.sleep(0.05)
                out = await victim_view()
            victim.restart()
            back = await victim_view()
            for _ in range(100):
                if back["in_rotation"] and back["circuit"] == "closed":
                    break
                await asyncio.sleep(0.05)
                back = await victim_view()
        finally:
            stop.set()
            await asyncio.gather(*workers)
            if not victim.is_running:
                victim.restart()
    assert results and set(results) == {200}
    assert out["in_rotation"] is False and out["healthy"] is False
    assert back["in_rotation"] is True and back["circuit"] == "closed"


async def test_a_half_open_circuit_lets_one_probe_through_and_the_others_fail_fast(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.set_faults(error_rate=1.0, error_status=503, paths=["/news"])
    policy = {
        "breaker": {"consecutive_failures": 1, "cool_down_ms": 200},
        "retries": {"attempts": 1},
        "ejection": {"consecutive_failures": 1000},
    }
    async with upstream_caller(
        database_url, {"news": [news.url]}, policies={"news": policy}
    ) as caller:
        with pytest.raises(UpstreamUnavailable):
            await caller.request("news", "GET", "/news/latest")
        breaker = caller.breakers.get("news", news.url)
        assert breaker is not None and breaker.state is CircuitState.open
        # The instance has recovered, but answers slowly.
        news.set_faults(error_rate=0.0, latency_ms=1000)
        news.reset_stats()
        await asyncio.sleep(0.3)
        assert breaker.state is CircuitState.half_open

        async def timed(params: dict[str, str]) -> tuple[float, int | Exception]:
            started = time.monotonic()
            try:
                answer: int | Exception = (
                    await caller.request("news", "GET", "/news/latest", params=params)
                ).status
            except UpstreamUnavailable as refused:
                answer = refused
            return time.monotonic() - started, answer

        # Identical calls (which would otherwise share the probe) and different ones.
        calls = [{"limit": "5"}] * 8 + [{"limit": str(n)} for n in range(1, 5)]
        outcomes = await asyncio.gather(*(timed(params) for params in calls))
        state_after = breaker.state

    probes = [(waited, answer) for waited, answer in outcomes if answer == 200]
    refused = [(waited, answer) for waited, answer in outcomes if answer != 200]
    assert len(probes) == 1
    assert probes[0][0] >= 0.9
    assert len(refused) == len(calls) - 1
    assert all(isinstance(answer, CircuitOpen) for _, answer in refused)
    assert max(waited for waited, _ in refused) < 0.5  # at once, not after the 1 s probe
    assert news.stats()["total"] == 1
    assert state_after is CircuitState.closed
