"""The response cache as a shared HTTP cache (RFC 9111) in front of an origin whose headers
each test sets: hit, miss, stale, 304, no-store, private, Vary, per-user entries, one fetch
per key, invalidation, stale-while-revalidate, stale-if-error, Cache-Status (RFC 9211)."""

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import brotli
import httpx
import pytest
import zstandard
from aiohttp import web

from app.cache.cache import ResponseCache
from app.cache.policy import CachePolicy
from tests.cache.conftest import USER_HEADER, Answer, Origin, Proxy, caching_proxy, make_cache

HTTP_CACHE = CachePolicy(ttl_s=0, follow_origin=True)
IDENTITY = {"Accept-Encoding": "identity"}


@asynccontextmanager
async def client_of(
    origin: Origin, policy: CachePolicy = HTTP_CACHE, cache: ResponseCache | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, Proxy]]:
    async with (
        caching_proxy(origin, cache or make_cache(), policy) as proxy,
        httpx.AsyncClient(base_url=proxy.url, headers=IDENTITY, timeout=10) as client,
    ):
        yield client, proxy


def status_of(response: httpx.Response) -> str:
    return response.headers["cache-status"]


async def test_miss_then_hit_with_age_and_ttl(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60"})
    async with client_of(origin) as (client, _):
        first = await client.get("/prices?symbols=AAPL")
        second = await client.get("/prices?symbols=AAPL")
    assert first.status_code == second.status_code == 200
    assert status_of(first) == "gateway; fwd=uri-miss; fwd-status=200; ttl=60; stored"
    assert status_of(second).startswith("gateway; hit; ttl=")
    assert second.headers["age"] == "0"
    assert second.content == first.content == origin.answer.body
    assert origin.calls == 1


async def test_query_order_does_not_split_the_key_but_values_do(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60"})
    async with client_of(origin) as (client, _):
        await client.get("/prices?a=1&b=2")
        same = await client.get("/prices?b=2&a=1")
        other = await client.get("/prices?a=1&b=3")
    assert "hit" in status_of(same)
    assert "fwd=uri-miss" in status_of(other)
    assert origin.calls == 2


async def test_stale_entry_goes_forward(origin: Origin) -> None:
    # With a validator the stale entry is kept, to be revalidated.
    origin.answer = Answer(headers={"Cache-Control": "max-age=1", "ETag": '"1"'})
    async with client_of(origin) as (client, _):
        await client.get("/prices")
        await asyncio.sleep(1.1)
        origin.answer = Answer(headers={"Cache-Control": "max-age=60"}, body=b"new")
        stale = await client.get("/prices")
        fresh = await client.get("/prices")
    assert status_of(stale).startswith("gateway; fwd=stale; fwd-status=200")
    assert stale.content == b"new"
    assert "hit" in status_of(fresh)
    assert origin.calls == 2


async def test_origin_age_and_s_maxage_and_expires(origin: Origin) -> None:
    async with client_of(origin) as (client, _):
        origin.answer = Answer(headers={"Cache-Control": "max-age=100, s-maxage=30", "Age": "10"})
        first = await client.get("/a")
        origin.answer = Answer(
            headers={
                "Date": "Tue, 01 Dec 2026 10:00:00 GMT",
                "Expires": "Tue, 01 Dec 2026 10:00:40 GMT",
            }
        )
        second = await client.get("/b")
        origin.answer = Answer(headers={"Expires": "0"})
        third = await client.get("/c")
        again = await client.get("/c")
    # s-maxage wins for a shared cache; the origin's Age counts against it.
    assert "ttl=20" in status_of(first)
    assert "ttl=40" in status_of(second)
    # An invalid Expires is already expired: nothing to store without a validator.
    assert "stored" not in status_of(third)
    assert "fwd=uri-miss" in status_of(again)


async def test_304_from_etag_and_from_last_modified(origin: Origin) -> None:
    origin.answer = Answer(
        headers={
            "Cache-Control": "max-age=60",
            "ETag": '"v1"',
            "Last-Modified": "Tue, 01 Dec 2026 10:00:00 GMT",
        }
    )
    async with client_of(origin) as (client, _):
        await client.get("/doc")
        by_tag = await client.get("/doc", headers={"If-None-Match": 'W/"v0", "v1"'})
        changed = await client.get("/doc", headers={"If-None-Match": '"v0"'})
        by_date = await client.get(
            "/doc", headers={"If-Modified-Since": "Tue, 01 Dec 2026 11:00:00 GMT"}
        )
        older = await client.get(
            "/doc", headers={"If-Modified-Since": "Tue, 01 Dec 2026 09:00:00 GMT"}
        )
    assert by_tag.status_code == 304 and by_tag.content == b""
    assert by_tag.headers["etag"] == '"v1"'
    assert "hit" in status_of(by_tag)
    assert changed.status_code == 200 and changed.content == origin.answer.body
    assert by_date.status_code == 304
    assert older.status_code == 200
    # The client's conditionals never went upstream: the cache answered them.
    assert origin.calls == 1


async def test_revalidation_sends_the_validator_and_a_304_refreshes_the_entry(
    origin: Origin,
) -> None:
    origin.answer = Answer(headers={"Cache-Control": "no-cache", "ETag": '"v1"'}, body=b"body")

    async def respond(request: web.Request) -> Answer:
        if request.headers.get("If-None-Match") == '"v1"':
            return Answer(
                status=304, headers={"Cache-Control": "no-cache", "ETag": '"v1"'}, body=b""
            )
        return origin.answer

    origin.respond = respond
    async with client_of(origin) as (client, _):
        first = await client.get("/doc")
        second = await client.get("/doc")
    assert first.content == second.content == b"body"
    assert second.status_code == 200
    assert status_of(second).startswith("gateway; fwd=stale; fwd-status=304")
    assert origin.seen[1].get("If-None-Match") == '"v1"'
    assert origin.calls == 2


async def test_client_no_store_no_cache_and_max_age(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60"})
    async with client_of(origin) as (client, _):
        not_kept = await client.get("/p", headers={"Cache-Control": "no-store"})
        miss = await client.get("/p")
        assert "fwd=uri-miss" in status_of(not_kept) and "stored" not in status_of(not_kept)
        assert "stored" in status_of(miss)
        assert origin.calls == 2
        forced = await client.get("/p", headers={"Cache-Control": "no-cache"})
        assert "fwd=request" in status_of(forced)
        pragma = await client.get("/p", headers={"Pragma": "no-cache"})
        assert "fwd=request" in status_of(pragma)
        too_old = await client.get("/p", headers={"Cache-Control": "max-age=0"})
        assert "fwd=request" in status_of(too_old)
        assert origin.calls == 5
        cached_only = await client.get("/other", headers={"Cache-Control": "only-if-cached"})
        assert cached_only.status_code == 504
        assert origin.calls == 5


@pytest.mark.parametrize(
    "cache_control", ["no-store", "private", "private, max-age=60", "max-age=60, no-store"]
)
async def test_origin_no_store_and_private_are_not_stored_shared(
    origin: Origin, cache_control: str
) -> None:
    origin.answer = Answer(headers={"Cache-Control": cache_control})
    async with client_of(origin) as (client, _):
        await client.get("/p")
        again = await client.get("/p")
    assert "fwd=uri-miss" in status_of(again)
    assert origin.calls == 2


async def test_set_cookie_responses_are_not_shared(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60", "Set-Cookie": "s=1"})
    async with client_of(origin) as (client, _):
        await client.get("/p")
        again = await client.get("/p")
    assert "fwd=uri-miss" in status_of(again)


async def test_vary_selects_the_variant(origin: Origin) -> None:
    async def respond(request: web.Request) -> Answer:
        language = request.headers.get("Accept-Language", "en")
        return Answer(
            headers={"Cache-Control": "max-age=60", "Vary": "Accept-Language"},
            body=language.encode(),
        )

    origin.respond = respond
    async with client_of(origin) as (client, _):
        en = await client.get("/news", headers={"Accept-Language": "en"})
        fr = await client.get("/news", headers={"Accept-Language": "fr"})
        en_again = await client.get("/news", headers={"Accept-Language": "en"})
        fr_again = await client.get("/news", headers={"Accept-Language": "fr"})
    assert (en.content, fr.content) == (b"en", b"fr")
    assert "fwd=vary-miss" in status_of(fr)
    assert en_again.content == b"en" and "hit" in status_of(en_again)
    assert fr_again.content == b"fr" and "hit" in status_of(fr_again)
    assert origin.calls == 2


async def test_vary_star_is_never_stored(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60", "Vary": "*"})
    async with client_of(origin) as (client, _):
        await client.get("/p")
        await client.get("/p")
    assert origin.calls == 2


async def test_policy_vary_headers_make_the_key(origin: Origin) -> None:
    policy = CachePolicy(ttl_s=60, vary_headers=("X-Region",))
    origin.answer = Answer()
    async with client_of(origin, policy) as (client, _):
        await client.get("/p", headers={"X-Region": "eu"})
        other = await client.get("/p", headers={"X-Region": "us"})
        same = await client.get("/p", headers={"X-Region": "eu"})
    assert "fwd=uri-miss" in status_of(other)
    assert "hit" in status_of(same)
    assert origin.calls == 2


async def test_per_user_entries_never_reach_another_user(origin: Origin) -> None:
    async def respond(request: web.Request) -> Answer:
        return Answer(body=f"account of {request.headers[USER_HEADER]}".encode())

    origin.respond = respond
    policy = CachePolicy(ttl_s=60, scope="per-caller")
    async with client_of(origin, policy) as (client, _):
        alice = await client.get("/account", headers={USER_HEADER: "alice"})
        bob = await client.get("/account", headers={USER_HEADER: "bob"})
        alice_again = await client.get("/account", headers={USER_HEADER: "alice"})
        bob_again = await client.get("/account", headers={USER_HEADER: "bob"})
        nobody = await client.get("/account", headers={USER_HEADER: "carol"})
    assert alice.content == alice_again.content == b"account of alice"
    assert bob.content == bob_again.content == b"account of bob"
    assert "fwd=uri-miss" in status_of(bob)
    assert "hit" in status_of(alice_again) and "hit" in status_of(bob_again)
    assert nobody.content == b"account of carol"
    assert origin.calls == 3


async def test_credentialed_requests_bypass_a_shared_entry_unless_the_route_shares(
    origin: Origin,
) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60"}, body=b"secret")
    async with client_of(origin) as (client, _):
        signed_in = await client.get("/me", headers={"Authorization": "Bearer t1"})
        anonymous = await client.get("/me")
    assert status_of(signed_in) == "gateway; fwd=bypass"
    # The credentialed answer was not stored for anyone.
    assert "fwd=uri-miss" in status_of(anonymous)

    shared = CachePolicy(ttl_s=0, follow_origin=True, share_credentialed=True)
    async with client_of(origin, shared) as (client, _):
        await client.get("/quotes", headers={"Authorization": "Bearer t1"})
        other = await client.get("/quotes", headers={"Authorization": "Bearer t2"})
    assert "hit" in status_of(other)


async def test_concurrent_misses_make_one_origin_call(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60"}, delay_s=0.3)
    async with client_of(origin) as (client, _):
        answers = await asyncio.gather(*(client.get("/hot") for _ in range(25)))
    assert origin.calls == 1
    assert {a.status_code for a in answers} == {200}
    assert {a.content for a in answers} == {origin.answer.body}
    assert sum("collapsed" in status_of(a) for a in answers) == 24


async def test_unsafe_method_invalidates_the_url(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60"})
    async with client_of(origin) as (client, _):
        await client.get("/orders?account=1")
        await client.get("/watchlist")
        assert "hit" in status_of(await client.get("/orders?account=1"))
        origin.answer = Answer(status=201, headers={"Location": "/watchlist"}, body=b"{}")
        created = await client.post("/orders?account=1", json={"symbol": "AAPL"})
        assert created.status_code == 201
        origin.answer = Answer(headers={"Cache-Control": "max-age=60"}, body=b"after")
        after = await client.get("/orders?account=1")
        located = await client.get("/watchlist")
    assert "fwd=uri-miss" in status_of(after) and after.content == b"after"
    assert "fwd=uri-miss" in status_of(located)


async def test_a_failed_unsafe_method_leaves_the_entry(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60"})
    async with client_of(origin) as (client, _):
        await client.get("/orders")
        origin.answer = Answer(status=409, body=b"{}")
        await client.post("/orders", json={})
        again = await client.get("/orders")
    assert "hit" in status_of(again)


async def test_invalidation_by_pattern_and_by_route(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60"})
    async with client_of(origin) as (client, proxy):
        for path in ["/candles/AAPL?range=1d", "/candles/MSFT", "/quotes?symbols=AAPL"]:
            await client.get(path)
        assert await proxy.cache.invalidate([proxy.cache.route_pattern("/candles/{symbol}")]) == 2
        assert "fwd=uri-miss" in status_of(await client.get("/candles/AAPL?range=1d"))
        assert "hit" in status_of(await client.get("/quotes?symbols=AAPL"))
        assert await proxy.cache.invalidate(["/quotes*"]) == 1
        assert "fwd=uri-miss" in status_of(await client.get("/quotes?symbols=AAPL"))


async def test_a_policy_change_makes_older_entries_a_miss(origin: Origin) -> None:
    origin.answer = Answer()
    async with client_of(origin, CachePolicy(ttl_s=60, revision="3")) as (client, proxy):
        await client.get("/p")
        assert "hit" in status_of(await client.get("/p"))
        proxy.policy = CachePolicy(ttl_s=60, revision="4")
        changed = await client.get("/p")
    assert status_of(changed).startswith("gateway; fwd=miss")
    assert origin.calls == 2


async def test_stale_while_revalidate_serves_stale_and_refreshes_once(origin: Origin) -> None:
    origin.answer = Answer(
        headers={"Cache-Control": "max-age=1, stale-while-revalidate=30"}, body=b"old"
    )
    async with client_of(origin) as (client, _):
        await client.get("/p")
        await asyncio.sleep(1.1)
        origin.answer = Answer(headers={"Cache-Control": "max-age=60"}, body=b"new", delay_s=0.2)
        stale = await asyncio.gather(*(client.get("/p") for _ in range(5)))
        assert {a.content for a in stale} == {b"old"}
        assert all("detail=stale-while-revalidate" in status_of(a) for a in stale)
        for _ in range(100):
            refreshed = await client.get("/p")
            if "detail" not in status_of(refreshed):
                break
            await asyncio.sleep(0.05)
    assert status_of(refreshed).startswith("gateway; hit; ttl=")
    assert refreshed.content == b"new"
    assert origin.calls == 2


async def test_stale_if_error_on_5xx_and_on_failure(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=1, stale-if-error=30"}, body=b"ok")
    async with client_of(origin) as (client, _):
        await client.get("/p")
        await asyncio.sleep(1.1)
        origin.answer = Answer(status=503, body=b"down")
        served = await client.get("/p")
        assert served.status_code == 200 and served.content == b"ok"
        assert status_of(served).startswith("gateway; fwd=stale; fwd-status=503")
        assert "detail=stale-if-error" in status_of(served)

        async def unreachable(request: web.Request) -> Answer:
            raise ConnectionResetError

        origin.respond = unreachable
        failed = await client.get("/p")
        assert failed.status_code == 200 and failed.content == b"ok"


async def test_must_revalidate_is_never_served_stale(origin: Origin) -> None:
    origin.answer = Answer(
        headers={"Cache-Control": "max-age=1, must-revalidate, stale-if-error=30"}
    )
    async with client_of(origin) as (client, _):
        await client.get("/p")
        await asyncio.sleep(1.1)
        origin.answer = Answer(status=503, body=b"down")
        answer = await client.get("/p")
    assert answer.status_code == 503 and answer.content == b"down"


@pytest.mark.parametrize("coding", ["gzip", "br", "zstd"])
async def test_stored_body_is_encoded_once_per_coding(origin: Origin, coding: str) -> None:
    body = b'{"quotes": [' + b",".join(b'{"s": "AAPL", "p": 101.5}' for _ in range(200)) + b"]}"
    origin.answer = Answer(
        headers={"Cache-Control": "max-age=60", "Content-Type": "application/json"}, body=body
    )
    async with client_of(origin) as (client, proxy):
        raw = []
        for _ in range(2):
            async with client.stream("GET", "/q", headers={"Accept-Encoding": coding}) as reply:
                assert reply.headers["content-encoding"] == coding
                assert "accept-encoding" in reply.headers["vary"].lower()
                raw.append(b"".join([chunk async for chunk in reply.aiter_raw()]))
        plain = await client.get("/q")
        entry = proxy.cache.memory.get("/q#s")
    assert raw[0] == raw[1]
    decoded = {
        "gzip": gzip.decompress,
        "br": brotli.decompress,
        "zstd": lambda data: zstandard.ZstdDecompressor().decompressobj().decompress(data),
    }[coding](raw[0])
    assert decoded == body == plain.content
    assert "content-encoding" not in plain.headers
    assert entry is not None and set(entry.encoded) == {coding}  # type: ignore[union-attr]
    assert origin.calls == 1


async def test_oversized_responses_are_not_stored(origin: Origin) -> None:
    origin.answer = Answer(headers={"Cache-Control": "max-age=60"}, body=b"x" * 5000)
    async with client_of(origin, cache=make_cache(max_entry_bytes=4000)) as (client, _):
        await client.get("/big")
        again = await client.get("/big")
    assert "fwd=uri-miss" in status_of(again)
    assert origin.calls == 2
