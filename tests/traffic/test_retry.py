"""Retries: only what is safe to repeat, on another instance, with jittered backoff, within
the retry budget and the request's deadline."""

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from app.errors import UpstreamTimeout, UpstreamUnavailable
from app.traffic.deadline import deadline_scope
from app.traffic.retry import RetryBudget, backoff_s, is_repeatable, retry_after_s
from app.traffic.service_policy import RetryPolicy
from app.upstreams.orders import OrdersClient
from backends.launcher import BackendProcess, Platform, start_service
from tests.fixtures.upstream_caller import upstream_caller
from tests.fixtures.web_server import serving

ORDER = {"symbol": "AAPL", "side": "buy", "type": "market", "quantity": 1, "time_in_force": "day"}


def test_only_idempotent_methods_and_keyed_posts_are_repeatable() -> None:
    for method in ("GET", "head", "OPTIONS", "PUT", "DELETE"):
        assert is_repeatable(method, None)
    assert not is_repeatable("POST", None)
    assert not is_repeatable("POST", {"Idempotency-Key": ""})
    assert is_repeatable("POST", {"Idempotency-Key": "k-1"})
    assert is_repeatable("post", {"idempotency-key": "k-1"})
    assert not is_repeatable("PATCH", {"idempotency-key": "k-1"})


def test_backoff_is_full_jitter_under_an_exponential_ceiling() -> None:
    policy = RetryPolicy(base_backoff_ms=10, max_backoff_ms=50)
    for retry, ceiling in ((1, 0.010), (2, 0.020), (3, 0.040), (4, 0.050), (9, 0.050)):
        delays = [backoff_s(policy, retry) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # jitter spreads over the whole range


def test_retry_after_in_seconds_or_as_a_date() -> None:
    assert retry_after_s("2") == 2.0
    in_three = format_datetime(datetime.now(UTC) + timedelta(seconds=3), usegmt=True)
    parsed = retry_after_s(in_three)
    assert parsed is not None and 1.5 < parsed <= 3.0
    assert retry_after_s("soon") is None
    assert retry_after_s(None) is None


def test_the_budget_allows_ratio_times_calls_plus_the_minimum() -> None:
    now = [0.0]
    budget = RetryBudget(ratio=0.2, min_per_s=2, clock=lambda: now[0])
    granted = 0
    for _ in range(100):
        budget.record_call()
        granted += budget.try_spend()
    assert granted == 20 + 2
    assert budget.refused == 100 - granted
    now[0] += 1.0  # the reserve refills with time, not beyond its size
    assert budget.try_spend() and budget.try_spend() and not budget.try_spend()


@pytest.fixture(scope="module")
def flaky_orders() -> Iterator[BackendProcess]:
    """A second orders instance that answers every order with 503."""
    backend = start_service("orders", instance="orders-flaky")
    try:
        yield backend
    finally:
        backend.stop()


def _posts(backend: BackendProcess, account: str) -> int:
    requests = backend.stats()["requests"]
    assert isinstance(requests, dict)
    return int(requests.get(f"POST /accounts/{account}/orders", 0))


async def test_a_keyed_order_is_retried_on_another_instance_and_placed_once(
    platform: Platform, database_url: str, flaky_orders: BackendProcess
) -> None:
    real = platform.process("orders")
    real.reset_stats()
    flaky_orders.reset_stats()
    flaky_orders.set_faults(error_rate=1.0, error_status=503, paths=["/accounts"])
    key = f"retry-{uuid.uuid4()}"
    # Round robin starts with the first instance: the flaky one.
    async with upstream_caller(database_url, {"orders": [flaky_orders.url, real.url]}) as caller:
        placed = await OrdersClient(caller).place("ACC-1001", ORDER, idempotency_key=key)
        orders = await OrdersClient(caller).orders("ACC-1001")
    assert not placed.replayed
    assert _posts(flaky_orders, "ACC-1001") == 1
    assert _posts(real, "ACC-1001") == 1
    forwarded = real.stats()["last_headers"]
    assert isinstance(forwarded, dict)
    assert forwarded["POST /accounts/ACC-1001/orders"]["idempotency-key"] == key
    assert [o.order_id for o in orders].count(placed.order.order_id) == 1


async def test_an_order_without_a_key_is_never_retried(
    platform: Platform, database_url: str
) -> None:
    real = platform.process("orders")
    real.reset_stats()
    real.set_faults(error_rate=1.0, error_status=503, paths=["/accounts"])
    async with upstream_caller(database_url, {"orders": [real.url]}) as caller:
        with pytest.raises(UpstreamUnavailable):
            await caller.request("orders", "POST", "/accounts/ACC-1002/orders", json_body=ORDER)
    assert _posts(real, "ACC-1002") == 1


async def test_a_timed_out_order_without_a_key_is_not_retried(
    platform: Platform, database_url: str
) -> None:
    real = platform.process("orders")
    real.reset_stats()
    real.set_faults(latency_ms=400, paths=["/accounts"])
    async with upstream_caller(
        database_url, {"orders": [real.url]}, timeouts_ms={"orders": 100}
    ) as caller:
        with pytest.raises(UpstreamTimeout):
            await caller.request("orders", "POST", "/accounts/ACC-1003/orders", json_body=ORDER)
    assert _posts(real, "ACC-1003") == 1


async def test_the_budget_caps_retries_when_every_call_fails(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.reset_stats()
    news.set_faults(error_rate=1.0, error_status=503)
    policy = {
        "retries": {
            "attempts": 3,
            "base_backoff_ms": 0,
            "max_backoff_ms": 0,
            "budget_ratio": 0.2,
            "budget_min_per_s": 1,
        },
        "breaker": {"consecutive_failures": 1000, "minimum_calls": 100_000},
        "ejection": {"consecutive_failures": 1000},
    }
    calls = 40
    started = time.monotonic()
    async with upstream_caller(
        database_url, {"news": [news.url]}, policies={"news": policy}
    ) as caller:
        for index in range(calls):
            with pytest.raises(UpstreamUnavailable):
                await caller.request("news", "GET", "/news", params={"limit": str(index + 1)})
    elapsed = time.monotonic() - started
    retries = int(str(news.stats()["total"])) - calls
    # Without a budget every call would have been tried three times: 80 retries.
    assert retries <= 0.2 * calls + 1 + 1 * elapsed
    assert retries >= 5  # ...yet the budget did fund some


async def test_no_retry_when_the_deadline_leaves_no_room(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.reset_stats()
    news.set_faults(latency_ms=300, paths=["/news"])
    async with upstream_caller(
        database_url, {"news": [news.url]}, timeouts_ms={"news": 2000}
    ) as caller:
        with deadline_scope(150), pytest.raises(UpstreamTimeout) as timed_out:
            await caller.request("news", "GET", "/news/latest")
    assert timed_out.value.status == 504
    assert news.stats()["total"] == 1


@pytest.fixture
async def busy_once() -> AsyncIterator[tuple[str, list[float]]]:
    """An upstream that answers its first request 503 with `Retry-After: 1`, then 200."""
    hits: list[float] = []

    async def latest(request: web.Request) -> web.Response:
        hits.append(time.monotonic())
        if len(hits) == 1:
            return web.json_response({"detail": "busy"}, status=503, headers={"Retry-After": "1"})
        return web.json_response({"articles": []})

    app = web.Application()
    app.router.add_get("/news/latest", latest)
    async with serving(app) as url:
        yield url, hits


async def test_retry_after_is_honoured_within_the_deadline(
    busy_once: tuple[str, list[float]], database_url: str
) -> None:
    url, hits = busy_once
    async with upstream_caller(database_url, {"news": [url]}) as caller:
        with deadline_scope(3000):
            response = await caller.request("news", "GET", "/news/latest")
    assert response.status == 200
    assert len(hits) == 2
    assert hits[1] - hits[0] >= 0.95


async def test_a_retry_after_beyond_the_deadline_is_not_waited_for(
    busy_once: tuple[str, list[float]], database_url: str
) -> None:
    url, hits = busy_once
    async with upstream_caller(database_url, {"news": [url]}) as caller:
        with deadline_scope(500), pytest.raises(UpstreamUnavailable):
            await caller.request("news", "GET", "/news/latest")
    assert len(hits) == 1


@pytest.fixture(scope="module")
def second_news() -> Iterator[BackendProcess]:
    """A second news instance, beside the platform's one."""
    backend = start_service("news", instance="news-second")
    try:
        yield backend
    finally:
        backend.stop()


async def test_a_try_that_times_out_is_retried_on_another_instance_within_the_deadline(
    platform: Platform, database_url: str, second_news: BackendProcess
) -> None:
    slow = platform.process("news")
    slow.reset_stats()
    second_news.reset_stats()
    second_news.reset_faults()
    slow.set_faults(latency_ms=2000, paths=["/news"])
    policy = {"retries": {"per_try_timeout_ms": 300, "base_backoff_ms": 0, "max_backoff_ms": 0}}
    # Round robin starts with the first instance: the slow one.
    async with upstream_caller(
        database_url, {"news": [slow.url, second_news.url]}, policies={"news": policy}
    ) as caller:
        with deadline_scope(1500):
            started = time.monotonic()
            response = await caller.request("news", "GET", "/news/latest")
            waited = time.monotonic() - started
    assert response.status == 200
    assert waited < 1.2  # one 0.3 s try, then the other instance; not the 2 s service timeout
    assert slow.stats()["requests"] == {"GET /news/latest": 1}
    assert second_news.stats()["requests"] == {"GET /news/latest": 1}
    # The slow instance was told it had the per-try timeout, not the whole deadline.
    sent = slow.stats()["last_headers"]
    assert isinstance(sent, dict)
    assert 0 < int(sent["GET /news/latest"]["x-request-deadline"]) <= 300


async def test_without_a_per_try_timeout_the_service_timeout_is_each_trys(
    platform: Platform, database_url: str, second_news: BackendProcess
) -> None:
    slow = platform.process("news")
    slow.reset_stats()
    second_news.reset_stats()
    second_news.reset_faults()
    slow.set_faults(latency_ms=2000, paths=["/news"])
    policy = {"retries": {"base_backoff_ms": 0, "max_backoff_ms": 0}}
    async with upstream_caller(
        database_url,
        {"news": [slow.url, second_news.url]},
        policies={"news": policy},
        timeouts_ms={"news": 300},
    ) as caller:
        with deadline_scope(1500):
            response = await caller.request("news", "GET", "/news/latest")
    # A hung instance costs its try (the service's 0.3 s), and the other one answers.
    assert response.status == 200
    assert slow.stats()["requests"] == {"GET /news/latest": 1}
    assert second_news.stats()["requests"] == {"GET /news/latest": 1}


async def test_a_call_whose_only_instance_timed_out_is_not_tried_again(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.reset_stats()
    news.set_faults(latency_ms=1500, paths=["/news"])
    async with upstream_caller(
        database_url, {"news": [news.url]}, timeouts_ms={"news": 300}
    ) as caller:
        with deadline_scope(3000), pytest.raises(UpstreamTimeout):
            await caller.request("news", "GET", "/news/latest")
    assert news.stats()["requests"] == {"GET /news/latest": 1}


async def test_each_try_waits_its_per_try_timeout_and_no_instance_twice_after_a_timeout(
    platform: Platform, database_url: str, second_news: BackendProcess
) -> None:
    instances = [platform.process("news"), second_news]
    for backend in instances:
        backend.reset_stats()
        backend.set_faults(latency_ms=2000, paths=["/news"])
    policy = {"retries": {"per_try_timeout_ms": 300, "base_backoff_ms": 0, "max_backoff_ms": 0}}
    async with upstream_caller(
        database_url,
        {"news": [b.url for b in instances]},
        policies={"news": policy},
        timeouts_ms={"news": 500},
    ) as caller:
        with deadline_scope(5000):
            started = time.monotonic()
            with pytest.raises(UpstreamTimeout):
                await caller.request("news", "GET", "/news/latest")
            waited = time.monotonic() - started
    # 0.3 s on each instance (the per-try timeout, below the service's 0.5 s); then neither
    # may be tried again after its timeout, and the call ends long before its deadline.
    assert waited < 0.9
    assert [b.stats()["requests"] for b in instances] == [{"GET /news/latest": 1}] * 2


async def test_a_broken_connection_to_the_only_instance_is_retried_there_after_backoff(
    platform: Platform, database_url: str
) -> None:
    news = platform.process("news")
    news.reset_stats()
    news.set_faults(drop_rate=1.0, paths=["/news"])
    async with upstream_caller(database_url, {"news": [news.url]}) as caller:
        with deadline_scope(3000), pytest.raises(UpstreamUnavailable):
            await caller.request("news", "GET", "/news/latest")
    # Quick and often passing (a stale connection, a restart): every attempt the policy allows.
    assert news.stats()["requests"] == {"GET /news/latest": 3}
