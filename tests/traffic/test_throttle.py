"""In-flight caps: per consumer by plan (bounded wait, then 429) and for the whole gateway
process (503)."""

import asyncio
import time
from collections.abc import AsyncIterator

import httpx
import pytest

from app.settings import RateLimitSettings, Settings
from app.traffic.throttle import ConsumerThrottle
from backends.catalog import INSTRUMENTS
from backends.launcher import Platform
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.redis import prefixed_redis

QUOTES = "/partner/v1/quotes?symbols=AAPL"


async def _slow_quotes(platform: Platform, latency_ms: int) -> None:
    async with httpx.AsyncClient(timeout=5) as client:
        for url in platform.urls["market-data"]:
            response = await client.put(
                f"{url}/__faults", json={"latency_ms": latency_ms, "paths": ["/quotes"]}
            )
            response.raise_for_status()


@pytest.fixture
async def throttled(settings: Settings) -> AsyncIterator[RunningGateway]:
    limits = RateLimitSettings(in_flight_wait_s=0.05)
    async with running_gateway(settings.model_copy(update={"rate_limit": limits})) as gateway:
        yield gateway


async def _concurrently(
    gateway: RunningGateway, count: int, headers: dict[str, str]
) -> list[httpx.Response]:
    # A symbol each: identical quote requests would share one upstream call (collapsing) or
    # one cache entry, and not hold their slots for the upstream's latency.
    symbols = list(INSTRUMENTS)[:count]
    return await asyncio.gather(
        *(
            gateway.client.get("/partner/v1/quotes", params={"symbols": symbol}, headers=headers)
            for symbol in symbols
        )
    )


async def test_a_consumer_over_its_in_flight_cap_gets_429(
    throttled: RunningGateway, platform: Platform
) -> None:
    partner = await create_partner(throttled.client, plan={"max_in_flight": 2})
    await _slow_quotes(platform, 400)
    responses = await _concurrently(throttled, 6, partner.headers)

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    # Two run at once; a waiter may get a finished one's slot, the rest are refused.
    assert 2 <= statuses.count(200) < 6
    for response in (r for r in responses if r.status_code == 429):
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["retry-after"] == "1"
        assert response.json()["limit"] == "in-flight"
        assert response.json()["max_in_flight"] == 2


async def test_the_cap_is_per_consumer(throttled: RunningGateway, platform: Platform) -> None:
    first = await create_partner(throttled.client, plan={"max_in_flight": 1})
    second = await create_partner(throttled.client, plan={"max_in_flight": 1})
    await _slow_quotes(platform, 300)
    responses = await asyncio.gather(
        throttled.client.get(QUOTES, headers=first.headers),
        throttled.client.get(QUOTES, headers=second.headers),
    )
    assert [r.status_code for r in responses] == [200, 200]


@pytest.mark.parametrize("store", ["redis", "in-process"])
async def test_waiters_take_finished_requests_slots_in_turn(
    settings: Settings, platform: Platform, store: str
) -> None:
    update: dict[str, object] = {"rate_limit": RateLimitSettings(in_flight_wait_s=5)}
    async with prefixed_redis() as redis:
        if store == "redis":
            update |= {"redis_url": redis.url, "redis_prefix": redis.prefix}
        async with running_gateway(settings.model_copy(update=update)) as gateway:
            partner = await create_partner(gateway.client, plan={"max_in_flight": 2})
            await _slow_quotes(platform, 200)
            started = time.monotonic()
            responses = await _concurrently(gateway, 6, partner.headers)
            elapsed = time.monotonic() - started

    assert [r.status_code for r in responses] == [200] * 6
    # Never more than two at once: six 200 ms calls take at least three rounds.
    assert elapsed >= 0.6


async def test_the_gateway_sheds_load_above_its_own_cap_with_503(
    settings: Settings, platform: Platform
) -> None:
    limits = RateLimitSettings(gateway_max_in_flight=2)
    async with running_gateway(settings.model_copy(update={"rate_limit": limits})) as gateway:
        partner = await create_partner(gateway.client)
        await _slow_quotes(platform, 600)
        responses = await _concurrently(gateway, 4, partner.headers)
        health = await gateway.client.get("/healthz")

    assert sorted(r.status_code for r in responses) == [200, 200, 503, 503]
    shed = next(r for r in responses if r.status_code == 503)
    assert shed.headers["content-type"] == "application/problem+json"
    assert shed.headers["retry-after"] == "1"
    assert "in flight" in shed.json()["detail"]
    assert health.status_code == 200


async def test_a_slot_is_handed_to_the_oldest_waiter() -> None:
    throttle = ConsumerThrottle()
    release = await throttle.acquire("c", limit=1, wait_s=0)
    assert release is not None
    assert await throttle.acquire("c", limit=1, wait_s=0) is None

    first = asyncio.create_task(throttle.acquire("c", limit=1, wait_s=5))
    second = asyncio.create_task(throttle.acquire("c", limit=1, wait_s=5))
    await asyncio.sleep(0)
    release()
    release()  # a second call of the same release gives nothing back twice
    first_release = await first
    assert first_release is not None
    assert not second.done()
    assert throttle.in_flight("c") == 1

    first_release()
    second_release = await second
    assert second_release is not None
    second_release()
    assert throttle.in_flight("c") == 0


async def test_a_waiter_that_gives_up_leaves_no_slot_behind() -> None:
    throttle = ConsumerThrottle()
    release = await throttle.acquire("c", limit=1, wait_s=0)
    assert release is not None
    assert await throttle.acquire("c", limit=1, wait_s=0.01) is None

    cancelled = asyncio.create_task(throttle.acquire("c", limit=1, wait_s=5))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled

    release()
    assert throttle.in_flight("c") == 0
    again = await throttle.acquire("c", limit=1, wait_s=0)
    assert again is not None


async def test_with_redis_the_cap_holds_across_gateway_processes(
    settings: Settings, platform: Platform
) -> None:
    async with prefixed_redis() as redis:
        shared = settings.model_copy(
            update={
                "redis_url": redis.url,
                "redis_prefix": redis.prefix,
                "rate_limit": RateLimitSettings(in_flight_wait_s=0),
            }
        )
        async with running_gateway(shared) as first:
            partner = await create_partner(first.client, plan={"max_in_flight": 2})
            # The second gateway reads the partner from the store as it starts.
            async with running_gateway(shared) as second:
                await _slow_quotes(platform, 800)
                responses = await asyncio.gather(
                    *(_concurrently(gateway, 3, partner.headers) for gateway in (first, second))
                )
                await _slow_quotes(platform, 0)
                after = await second.client.get(QUOTES, headers=partner.headers)

    statuses = [r.status_code for both in responses for r in both]
    # Per process each gateway would have let two through; shared, two in all.
    assert sorted(statuses) == [200, 200, 429, 429, 429, 429]
    # The finished requests gave their slots back.
    assert after.status_code == 200
