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
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from app.cache.cache import ResponseCache
from app.cache.policy import CachePolicy, CacheRequest, OriginResponse
from app.deps import RouteAccess, context_of
from app.frontends.formats import ListFormat, NotAcceptable, negotiate
from app.security.rbac import AccessRule
from app.state import GatewayState

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


class CachedRoutes:
    """Answers a fresh cache hit of a cached route before FastAPI's routing and dependency
    solving, its most expensive part on such a request; everything else goes on to the app.

    Only for routes whose answer depends on nothing but their access rule and the cached key
    (`SHORTCUT_PATHS`, exact paths): the rule (the route's one `RouteAccess`, read from the
    FastAPI route itself) runs through the policy chain exactly as on the full path, then
    the stored answer is sent. A stored key was validated when it was stored (only a 200 is
    stored, and the key is the query as sent), so a hit needs no validation again. A miss,
    a stale entry, a client's `no-cache` or an `Accept` that asks for CSV take the full path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # path -> (policy chooser, access rule); built from the app's routes on first use.
        self._routes: dict[str, tuple[Callable[[BffPolicies], CachePolicy], AccessRule]] | None
        self._routes = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "GET":
            await self.app(scope, receive, send)
            return
        routes = self._routes
        if routes is None:
            routes = self._routes = _shortcut_routes(scope["app"])
        found = routes.get(scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        # The lifespan's state, read without a Request: nothing else is needed when the cache
        # is off.
        state: GatewayState = scope["state"]["gateway"]
        if not state.cache.settings.enabled:
            # Nothing stored to answer with: no headers parsed, no format negotiated here.
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        choose, rule = found
        headers = request.headers
        try:
            json_asked = negotiate(headers.get("accept")) is ListFormat.json
        except NotAcceptable:
            json_asked = False
        if not json_asked:
            await self.app(scope, receive, send)
            return
        context = context_of(request)
        cache_request = CacheRequest(
            method="GET",
            path=scope["path"],
            query=scope["query_string"].decode("latin-1"),
            headers=headers,
            credentialed=True,
        )
        answer = await state.cache.fresh_answer(cache_request, choose(policies(state.cache)))
        if answer is None:
            await self.app(scope, receive, send)
            return
        context.route = scope["path"]
        await state.chain.run(context, rule)
        raw = [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.headers]
        raw.append((b"vary", b"Accept"))
        if answer.status != 304:
            raw.append((b"content-length", str(len(answer.body)).encode()))
        await send({"type": "http.response.start", "status": answer.status, "headers": raw})
        await send({"type": "http.response.body", "body": answer.body})


# The routes a hit may answer before routing: their answers are the same for every caller
# their rule admits, and they read nothing else of the request than the cached key.
SHORTCUT_PATHS: dict[str, Callable[[BffPolicies], CachePolicy]] = {
    "/partner/v1/quotes": lambda chosen: chosen.quotes,
    "/mobile/v1/quotes": lambda chosen: chosen.quotes,
}


def _shortcut_routes(
    app: Starlette,
) -> dict[str, tuple[Callable[[BffPolicies], CachePolicy], AccessRule]]:
    """`SHORTCUT_PATHS` with the access rule each route declares (exactly one, or the route
    is left to the full path). Included routers stay nested (FastAPI >= 0.160): their routes
    are found through the route contexts, as the OpenAPI documents find them."""
    found = {}
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        path = context.path or ""
        if (
            isinstance(route, APIRoute)
            and path in SHORTCUT_PATHS
            and "GET" in (context.methods or ())
        ):
            rules = _access_rules(route.dependant)
            if len(rules) == 1:
                found[path] = (SHORTCUT_PATHS[path], rules[0])
    return found


def _access_rules(dependant: Dependant) -> list[AccessRule]:
    rules = []
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, RouteAccess):
            rules.append(dependency.call.rule)
        rules += _access_rules(dependency)
    return rules


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
