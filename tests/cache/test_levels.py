"""The cache's two levels: memory within a byte budget (least recently used out first), and
Redis shared by processes, with one origin fetch per key across them and invalidations that
reach every process's memory. Each "process" here is a cache of its own with its own memory
and its own proxy; they share only Redis, as gateway processes do."""

import asyncio
import time

import httpx

from app.cache.entry import CachedResponse, dump, load
from app.cache.policy import CachePolicy
from app.cache.stores import MemoryCache
from app.shared.redis import SharedRedis
from tests.cache.conftest import Answer, Origin, caching_proxy, make_cache
from tests.fixtures.redis import PrefixedRedis

POLICY = CachePolicy(ttl_s=30)
IDENTITY = {"Accept-Encoding": "identity"}


def _entry(body: bytes) -> CachedResponse:
    return CachedResponse(
        status=200, headers=[], body=body, stored_at=time.time(), initial_age=0, fresh_s=60
    )


def test_memory_keeps_to_its_budget_least_recently_used_out_first() -> None:
    memory = MemoryCache(max_bytes=3 * _entry(b"x" * 1000).size())
    for key in ["a", "b", "c"]:
        memory.put(key, _entry(b"x" * 1000), keep_s=60)
    assert memory.get("a") is not None  # a is now the most recently used
    memory.put("d", _entry(b"x" * 1000), keep_s=60)
    assert memory.get("b") is None
    assert [memory.get(k) is not None for k in ["a", "c", "d"]] == [True, True, True]
    assert memory.used_bytes <= memory.max_bytes
    # Larger than the whole budget: not kept at all, nothing else evicted for it.
    memory.put("huge", _entry(b"x" * 10_000), keep_s=60)
    assert memory.get("huge") is None and len(memory) == 3


def test_entries_are_json_and_bytes_never_pickle() -> None:
    entry = _entry(b"\x00\xffbinary")
    entry.headers = [("content-type", "application/octet-stream"), ("etag", '"1"')]
    data = dump(entry)
    assert data.startswith(b"GWC1")
    assert b'"content-type"' in data and data.endswith(b"\x00\xffbinary")
    loaded = load(data)
    assert isinstance(loaded, CachedResponse)
    assert (loaded.body, loaded.headers) == (entry.body, entry.headers)
    assert load(b"\x80\x04garbage") is None


async def test_redis_level_is_shared_between_processes(
    origin: Origin, redis: PrefixedRedis
) -> None:
    origin.answer = Answer(headers={"Content-Type": "application/json"})
    first = make_cache(redis.shared, redis.prefix)
    second = make_cache(redis.shared, redis.prefix)
    async with (
        caching_proxy(origin, first, POLICY) as one,
        caching_proxy(origin, second, POLICY) as two,
        httpx.AsyncClient(headers=IDENTITY) as client,
    ):
        stored = await client.get(one.url + "/quotes?symbols=AAPL")
        shared = await client.get(two.url + "/quotes?symbols=AAPL")
        assert "stored" in stored.headers["cache-status"]
        assert shared.headers["cache-status"].startswith("gateway; hit")
        assert shared.content == stored.content
        assert origin.calls == 1
        # The Redis hit is now in the second process's memory too.
        assert second.memory.get("/quotes?symbols=AAPL#s") is not None
        keys = [key async for key in redis.client.scan_iter(match=redis.prefix + "cache:*")]
        assert keys == [f"{redis.prefix}cache:{{/quotes?symbols=AAPL#s}}".encode()]


async def test_concurrent_misses_in_two_processes_make_one_origin_call(
    origin: Origin, redis: PrefixedRedis
) -> None:
    origin.answer = Answer(delay_s=0.3)
    caches = [make_cache(redis.shared, redis.prefix) for _ in range(2)]
    async with (
        caching_proxy(origin, caches[0], POLICY) as one,
        caching_proxy(origin, caches[1], POLICY) as two,
        httpx.AsyncClient(headers=IDENTITY, timeout=10) as client,
    ):
        answers = await asyncio.gather(
            *(client.get(proxy.url + "/hot") for proxy in [one, two] * 10)
        )
    assert origin.calls == 1
    assert {a.status_code for a in answers} == {200}
    assert {a.content for a in answers} == {origin.answer.body}
    # The lock is released once the entry is stored.
    assert not [k async for k in redis.client.scan_iter(match=redis.prefix + "cache-lock:*")]


async def test_a_waiting_process_fetches_itself_after_the_bounded_wait(
    origin: Origin, redis: PrefixedRedis
) -> None:
    origin.answer = Answer()
    cache = make_cache(redis.shared, redis.prefix, fetch_lock_wait_ms=100)
    # Another process holds the lock and never stores anything.
    await redis.client.set(f"{redis.prefix}cache-lock:{{/held#s}}", "other", px=5000)
    async with (
        caching_proxy(origin, cache, POLICY) as proxy,
        httpx.AsyncClient(headers=IDENTITY) as client,
    ):
        answer = await client.get(proxy.url + "/held")
    assert answer.status_code == 200 and origin.calls == 1
    # The other process's lock was waited on, never taken over.
    assert await redis.client.get(f"{redis.prefix}cache-lock:{{/held#s}}") == b"other"


async def test_invalidation_reaches_every_process_memory(
    origin: Origin, redis: PrefixedRedis
) -> None:
    origin.answer = Answer()
    first = make_cache(redis.shared, redis.prefix)
    second = make_cache(redis.shared, redis.prefix)
    async with (
        caching_proxy(origin, first, POLICY) as one,
        caching_proxy(origin, second, POLICY) as two,
        httpx.AsyncClient(headers=IDENTITY) as client,
    ):
        await client.get(one.url + "/news")
        await client.get(two.url + "/news")
        assert second.memory.get("/news#s") is not None
        await asyncio.sleep(0.2)  # both listeners subscribed
        assert await first.invalidate(["/news*"]) >= 1
        for _ in range(50):
            if second.memory.get("/news#s") is None:
                break
            await asyncio.sleep(0.02)
        assert second.memory.get("/news#s") is None
        again = await client.get(two.url + "/news")
    assert "fwd=uri-miss" in again.headers["cache-status"]
    assert origin.calls == 2


async def test_without_redis_the_cache_serves_from_memory(
    origin: Origin, redis: PrefixedRedis
) -> None:
    """Redis that does not answer: every request still answered, memory still caching."""
    from redis.asyncio import Redis

    dead = Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2, socket_timeout=0.2)
    cache = make_cache(SharedRedis(dead, retry_s=30), redis.prefix)
    origin.answer = Answer()
    try:
        async with (
            caching_proxy(origin, cache, POLICY) as proxy,
            httpx.AsyncClient(headers=IDENTITY) as client,
        ):
            first = await client.get(proxy.url + "/p")
            second = await client.get(proxy.url + "/p")
    finally:
        await dead.aclose()
    assert first.status_code == second.status_code == 200
    assert "hit" in second.headers["cache-status"]
    assert origin.calls == 1
