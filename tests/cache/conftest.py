"""An origin whose answers each test sets, and a small caching proxy in front of it that uses
the response cache exactly as a pass-through route does: both real aiohttp servers on
ephemeral ports, spoken to over real sockets."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import aiohttp
import pytest
from aiohttp import web

from app.cache.cache import ResponseCache
from app.cache.policy import CachePolicy, CacheRequest, OriginResponse
from app.settings import CacheSettings, CompressionSettings
from app.shared.redis import SharedRedis
from tests.fixtures.redis import PrefixedRedis, prefixed_redis
from tests.fixtures.web_server import serving

# The header the proxy takes as the caller's identity (a signed-in user, in a real route).
USER_HEADER = "X-Test-User"


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b'{"price": 101.5}'
    delay_s: float = 0.0


@dataclass
class Origin:
    """Answers every request with `answer` (or `respond(request)`), counting them."""

    url: str = ""
    answer: Answer = field(default_factory=Answer)
    respond: Callable[[web.Request], Awaitable[Answer]] | None = None
    calls: int = 0
    seen: list[dict[str, str]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        self.calls += 1
        self.seen.append(dict(request.headers))
        answer = await self.respond(request) if self.respond is not None else self.answer
        if answer.delay_s:
            await asyncio.sleep(answer.delay_s)
        return web.Response(status=answer.status, headers=answer.headers, body=answer.body)


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    found = Origin()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", found.handle)
    async with serving(app) as url:
        found.url = url
        yield found


# The client's own conditional headers stay with the cache; these never go upstream.
_NOT_FORWARDED = {"if-none-match", "if-modified-since", "host", "content-length"}


@dataclass
class Proxy:
    """A pass-through route with `policy`, in front of the origin, through `cache`."""

    url: str
    cache: ResponseCache
    policy: CachePolicy


def make_cache(
    redis: SharedRedis | None = None, prefix: str = "test:", **settings: object
) -> ResponseCache:
    return ResponseCache(
        CacheSettings(**settings),  # type: ignore[arg-type]
        redis=redis,
        prefix=prefix,
        compression=CompressionSettings(),
    )


@asynccontextmanager
async def caching_proxy(
    origin: Origin, cache: ResponseCache, policy: CachePolicy
) -> AsyncIterator[Proxy]:
    proxy = Proxy(url="", cache=cache, policy=policy)
    async with aiohttp.ClientSession() as session:

        async def handle(request: web.Request) -> web.Response:
            cache_request = CacheRequest(
                method=request.method,
                path=request.path,
                query=request.query_string,
                headers=request.headers,
                principal=request.headers.get(USER_HEADER),
                credentialed="Authorization" in request.headers,
            )
            forwarded = {
                name: value
                for name, value in request.headers.items()
                if name.lower() not in _NOT_FORWARDED
            }
            body = await request.read()

            async def fetch(validators: dict[str, str]) -> OriginResponse:
                async with session.request(
                    request.method,
                    origin.url + request.path_qs,
                    headers={**forwarded, **validators},
                    data=body or None,
                    timeout=aiohttp.ClientTimeout(total=5),
                ) as upstream:
                    return OriginResponse(
                        upstream.status, list(upstream.headers.items()), await upstream.read()
                    )

            if request.method == "GET":
                answer = await proxy.cache.serve(cache_request, proxy.policy, fetch)
                status, headers, content = answer.status, answer.headers, answer.body
            else:
                response = await fetch({})
                await proxy.cache.invalidate_after_unsafe(
                    cache_request, status=response.status, headers=response.headers
                )
                status, headers, content = response.status, response.headers, response.body
            out = web.Response(status=status, body=content)
            for name, value in headers:
                if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                    out.headers.add(name, value)
            return out

        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handle)
        async with serving(app) as url:
            proxy.url = url
            await cache.start()
            try:
                yield proxy
            finally:
                await cache.stop()


@pytest.fixture
async def redis() -> AsyncIterator[PrefixedRedis]:
    async with prefixed_redis() as found:
        yield found
