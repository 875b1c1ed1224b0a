"""The outer middleware, in one place so that its order is written down once."""

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from app.frontends.caching import CachedRoutes
from app.frontends.direct import DirectRoutes
from app.middleware.edge import EdgeMiddleware
from app.observability.tracing import Tracing
from app.passthrough.handler import PassthroughHandler
from app.security.usage import UsageMeter
from app.settings import Settings


def install_middleware(
    app: FastAPI,
    settings: Settings,
    *,
    tracing: Tracing | None = None,
    usage: UsageMeter | None = None,
) -> None:
    """Outermost first: CORS (when origins are configured) -> the edge.

    The edge is one layer for request id, deadline, access log, security and rate-limit
    headers, body limit, the gateway-wide in-flight cap and gzip (see `app.middleware.edge`).
    CORS is outside it, so that every answer the edge gives, an early 413 or 503 included,
    carries the CORS headers a browser needs to read it.

    Starlette wraps in reverse order of `add_middleware`, so they are added innermost first.
    """
    # Innermost: the simplest hot read routes (partner quotes) answered by their endpoints
    # without FastAPI's routing and dependency solving (`app.frontends.direct.DirectRoutes`).
    app.add_middleware(DirectRoutes)
    # Then a fresh cache hit of a cached BFF route answered before FastAPI's routing,
    # after its access rule ran (`app.frontends.caching.CachedRoutes`).
    app.add_middleware(CachedRoutes)
    # The config-driven routes under `passthrough.prefix`: dispatched by the edge to their
    # plain ASGI handler, past FastAPI's routing (`app.passthrough`).
    app.add_middleware(
        EdgeMiddleware,
        settings=settings,
        tracing=tracing,
        passthrough=PassthroughHandler(settings),
        usage=usage,
    )
    if settings.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "RateLimit", "RateLimit-Policy", "Retry-After"],
        )
