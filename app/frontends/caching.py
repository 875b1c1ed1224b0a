"""The BFF routes' response caching: their policies, a handler's answer through the cache, and
a cached section of a composed view.

What is cached, all shared by every caller (the same market data whoever asks; each request
still passes its route's access rule, rate limits and quota first):

- partner and mobile quotes, `cache.quotes_ttl_s` (1 s);
- partner candles, `cache.candles_ttl_s` (5 s);
- the web dashboard's sparklines and latest news sections, `cache.sparklines_ttl_s` (5 s),
  `cache.news_ttl_s` (10 s).

Account sections (positions, orders, the account summary, bots) are never cached: they
change with the caller's own orders, and a user's data must never reach another user.
"""

import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from fastapi import Request, Response
from pydantic import TypeAdapter

from app.cache.cache import ResponseCache
from app.cache.policy import CachePolicy, CacheRequest, OriginResponse
from app.deps import context_of

T = TypeVar("T")

_JSON = [("content-type", "application/json")]


@dataclass(frozen=True, slots=True)
class BffPolicies:
    quotes: CachePolicy
    candles: CachePolicy
    sparklines: CachePolicy
    news: CachePolicy


_POLICIES: "weakref.WeakKeyDictionary[ResponseCache, BffPolicies]" = weakref.WeakKeyDictionary()


def policies(cache: ResponseCache) -> BffPolicies:
    """The BFF routes' policies from the cache's settings, built once per cache."""
    found = _POLICIES.get(cache)
    if found is None:
        settings = cache.settings
        found = BffPolicies(
            quotes=CachePolicy(
                ttl_s=settings.quotes_ttl_s, vary_query=("symbols",), share_credentialed=True
            ),
            candles=CachePolicy(
                ttl_s=settings.candles_ttl_s,
                vary_query=("interval", "range"),
                share_credentialed=True,
            ),
            sparklines=CachePolicy(ttl_s=settings.sparklines_ttl_s, share_credentialed=True),
            news=CachePolicy(ttl_s=settings.news_ttl_s, share_credentialed=True),
        )
        _POLICIES[cache] = found
    return found


async def cached_json(
    request: Request, policy: CachePolicy, produce: Callable[[], Awaitable[bytes]]
) -> Response:
    """The route's JSON answer from the cache, or from `produce` (once per key however many
    requests miss together); its errors propagate as they are. With the cache switched off
    (`cache.enabled`), `produce`'s answer as it is, without `Cache-Status`."""
    cache: ResponseCache = request.state.gateway.cache
    if not cache.settings.enabled:
        return Response(await produce(), media_type="application/json")
    context = context_of(request)
    principal = context.principal
    headers = request.headers
    cache_request = CacheRequest(
        method=request.method,
        path=request.url.path,
        query=request.scope["query_string"].decode("latin-1"),
        headers=headers,
        principal=principal.subject if principal is not None else None,
        credentialed=principal is not None or "authorization" in headers or "cookie" in headers,
    )

    async def fetch(_validators: dict[str, str]) -> OriginResponse:
        return OriginResponse(200, list(_JSON), await produce())

    answer = await cache.serve(cache_request, policy, fetch)
    response = Response(content=answer.body, status_code=answer.status)
    response.raw_headers += [
        (name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers
    ]
    return response


async def cached_section(
    cache: ResponseCache,
    policy: CachePolicy,
    *,
    path: str,
    query: str,
    adapter: TypeAdapter[T],
    produce: Callable[[], Awaitable[T]],
) -> T:
    """A view's section shared by every caller (e.g. the latest news) from the cache, under
    `path?query` (e.g. `/upstream/news/latest?limit=10`), or from `produce`."""
    request = CacheRequest(method="GET", path=path, query=query, headers={})

    async def fetch(_validators: dict[str, str]) -> OriginResponse:
        return OriginResponse(200, list(_JSON), adapter.dump_json(await produce()))

    answer = await cache.serve(request, policy, fetch, section=True)
    return adapter.validate_json(answer.body)
