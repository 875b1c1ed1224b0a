"""Self-registration: register, heartbeat, and expiry removes an instance that went quiet;
shared between processes through Redis, in process without it."""

import asyncio
from collections.abc import AsyncIterator

import pytest

from app.discovery.selfreg import SelfRegistry
from backends.launcher import Platform
from tests.fixtures.redis import PrefixedRedis, prefixed_redis
from tests.fixtures.upstream_caller import upstream_caller


@pytest.fixture
async def shared_redis() -> AsyncIterator[PrefixedRedis]:
    async with prefixed_redis() as redis:
        yield redis


async def test_in_process_registration_expires_without_heartbeats() -> None:
    registry = SelfRegistry(redis=None, prefix="", default_ttl_s=0.3)
    await registry.register("news", "http://10.0.0.1:80", weight=2)
    assert [(r.url, r.weight) for r in registry.live("news")] == [("http://10.0.0.1:80", 2)]
    await asyncio.sleep(0.2)
    assert await registry.heartbeat("news", "http://10.0.0.1:80") is not None
    await asyncio.sleep(0.2)
    assert registry.live("news"), "the heartbeat extended the registration"
    await asyncio.sleep(0.35)
    assert registry.live("news") == ()
    assert await registry.heartbeat("news", "http://10.0.0.1:80") is None


async def test_registrations_in_redis_are_seen_by_another_process_and_expire(
    shared_redis: PrefixedRedis,
) -> None:
    first = SelfRegistry(
        redis=shared_redis.shared,
        prefix=shared_redis.prefix,
        default_ttl_s=15,
    )
    second = SelfRegistry(
        redis=shared_redis.shared,
        prefix=shared_redis.prefix,
        default_ttl_s=15,
    )
    await first.register("news", "http://10.0.0.2:80", ttl_s=0.4)
    await second.refresh(["news"])
    assert [r.url for r in second.live("news")] == ["http://10.0.0.2:80"]
    await asyncio.sleep(0.25)
    renewed = await second.heartbeat("news", "http://10.0.0.2:80")
    assert renewed is not None and renewed.ttl_s == 0.4
    await asyncio.sleep(0.25)
    await first.refresh(["news"])
    assert [r.url for r in first.live("news")] == ["http://10.0.0.2:80"]
    await asyncio.sleep(0.3)
    await first.refresh(["news"])
    assert first.live("news") == ()
    # The expired entry was cleaned out of Redis too.
    assert await shared_redis.client.zcard(f"{shared_redis.prefix}discovery:{{news}}:expiry") == 0
    assert await second.heartbeat("news", "http://10.0.0.2:80") is None


async def test_deregistration_removes_at_once_and_a_heartbeat_does_not_resurrect(
    shared_redis: PrefixedRedis,
) -> None:
    registry = SelfRegistry(
        redis=shared_redis.shared,
        prefix=shared_redis.prefix,
        default_ttl_s=5,
    )
    await registry.register("bots", "http://10.0.0.3:80")
    assert await registry.deregister("bots", "http://10.0.0.3:80")
    assert registry.live("bots") == ()
    assert await registry.heartbeat("bots", "http://10.0.0.3:80") is None
    assert not await registry.deregister("bots", "http://10.0.0.3:80")


async def test_a_registered_instance_takes_traffic_and_leaves_when_it_stops_heartbeating(
    platform: Platform, database_url: str, shared_redis: PrefixedRedis
) -> None:
    configured, extra = platform.instances("market-data")
    for backend in (configured, extra):
        backend.reset_stats()
    async with upstream_caller(
        database_url,
        {"market-data": [configured.url]},
        redis=shared_redis.shared,
        redis_prefix=shared_redis.prefix,
    ) as caller:
        registry = caller.registry
        await registry.self_registry.register("market-data", extra.url, ttl_s=0.5)
        assert [(i.url, i.source) for i in registry.instances("market-data")] == [
            (configured.url, "config"),
            (extra.url, "registered"),
        ]
        for symbol in ("AAPL", "MSFT", "NVDA", "TSLA"):
            await caller.request("market-data", "GET", "/quotes", params={"symbols": symbol})
        assert extra.stats()["total"] == 2
        await asyncio.sleep(0.7)
        assert [i.url for i in registry.instances("market-data")] == [configured.url]
        extra.reset_stats()
        for symbol in ("AAPL", "MSFT"):
            await caller.request("market-data", "GET", "/quotes", params={"symbols": symbol})
    assert extra.stats()["total"] == 0
