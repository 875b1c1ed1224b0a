"""The gateway application: `create_app(settings)` wires routers, middleware and lifespan."""

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, nullcontext
from typing import Any

from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from starlette.routing import Route

from app.admin.router import router as admin_router
from app.auth.router import router as auth_router
from app.cache.cache import ResponseCache
from app.discovery.registry import ServiceRegistry
from app.errors import install_error_handlers, problem_responses
from app.frontends.mcp.server import MCP_PATH, McpFrontend
from app.frontends.mobile.v1.router import router as mobile_v1
from app.frontends.partner.v1.router import router as partner_v1
from app.frontends.streams import router as streams_router
from app.frontends.versions import router as versions_router
from app.frontends.web.v1.router import router as web_v1
from app.frontends.web.v2.router import router as web_v2
from app.health import router as health_router
from app.metrics import router as metrics_router
from app.middleware.stack import install_middleware
from app.observability.logging import configure_logging
from app.observability.tracing import Tracing, sdk_disabled
from app.openapi import ApiDocument, build_document, install_docs, stable_operation_id
from app.policy.admission import AdmissionControl
from app.policy.chain import PolicyChain
from app.policy.idempotency import IdempotencyLedger
from app.portal.router import router as portal_router
from app.security.apikeys import ApiKeyAuthenticator, revoked_keys_set
from app.security.quotas import QuotaCounter
from app.security.usage import UsageMeter
from app.security.web_identity import build_web_identity
from app.settings import Settings
from app.shared.redis import connect_redis
from app.state import Drain, GatewayState
from app.store.database import create_engine, session_factory
from app.store.notices import ChangeNotices
from app.store.snapshot import ConfigStore
from app.store.snapshot_file import SnapshotFile
from app.streams.hub import QuoteHub
from app.upstreams.caller import UpstreamCaller, create_session

DOCUMENTS = [
    ApiDocument(
        slug="web-v1",
        title="stock-bot web API",
        prefix="/web/v1",
        description="Backend for the trading dashboard: view-shaped, aggregated responses.",
    ),
    ApiDocument(
        slug="web-v2",
        title="stock-bot web API v2",
        prefix="/web/v2",
        version="2.0.0",
        description=(
            "Backend for the trading dashboard, version 2: the dashboard groups holdings by "
            "sector with the sector allocation; lists are pages with a link to the next one. "
            "Version 1 is deprecated (see `GET /versions` for its sunset date)."
        ),
    ),
    ApiDocument(
        slug="mobile-v1",
        title="stock-bot mobile API",
        prefix="/mobile/v1",
        description="Backend for the mobile app: compact payloads, cursor pagination.",
    ),
    ApiDocument(
        slug="partner-v1",
        title="stock-bot partner API",
        prefix="/partner/v1",
        description="Market data and order entry for partner systems.",
    ),
    ApiDocument(
        slug="admin-v1",
        title="stock-bot gateway admin API",
        prefix="/admin/v1",
        description="Configuration of the gateway: services, instances, consumers, plans.",
        admin_only=True,
    ),
    ApiDocument(
        slug="auth",
        title="stock-bot web login",
        prefix="/auth",
        description=(
            "Browser login through the gateway (OAuth 2 code flow with PKCE); the session "
            "lives server-side behind an HttpOnly cookie. Unsafe requests authenticated by "
            "the cookie send the session's CSRF token as `X-CSRF-Token`."
        ),
    ),
]


_SHUTDOWN_STEP_S = 5.0
# Allocations between two collections of the cyclic collector's youngest generation while
# the gateway serves (Python's default: 700); see the lifespan.
GC_YOUNG_THRESHOLD = 10_000


async def _bounded(what: str, step: Awaitable[object]) -> None:
    """One shutdown step, given up (and logged) after `_SHUTDOWN_STEP_S`."""
    try:
        async with asyncio.timeout(_SHUTDOWN_STEP_S):
            await step
    except TimeoutError:
        logging.getLogger("gateway").warning(
            "shutdown: closing the %s took over %.0f s; given up", what, _SHUTDOWN_STEP_S
        )


# The partner API's document, built once per process: it is made from the partner routes
# alone, the same module-level routers in every app a process creates, and building it costs
# more than the rest of a start-up.
_partner_documents: list[dict[str, Any]] = []


def _partner_document(app: FastAPI) -> dict[str, Any]:
    if not _partner_documents:
        partner = next(document for document in DOCUMENTS if document.slug == "partner-v1")
        _partner_documents.append(build_document(app, partner))
    return _partner_documents[0]


def _mount_mcp(app: FastAPI, settings: Settings) -> McpFrontend:
    """The MCP endpoint at `/mcp`, its tools made from the partner API's document."""
    mcp = McpFrontend(
        gateway=app,
        settings=settings.mcp,
        partner_document=lambda: _partner_document(app),
        max_body_bytes=settings.http.max_body_bytes,
        version=app.version,
    )
    # First: FastAPI would otherwise try every other route before it on each MCP request.
    app.router.routes.insert(0, Route(MCP_PATH, mcp, include_in_schema=False))
    return mcp


def create_app(
    settings: Settings | None = None,
    *,
    drain: Drain | None = None,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    """The gateway; `drain` is the flag a server that drains before stopping (`app.serve`)
    sets on SIGTERM, a fresh one (never set) otherwise."""
    settings = settings or Settings()
    drain = drain or Drain()
    # Spans recorded by `tracer_provider` (tests), else by OTLP when the OTEL_* variables
    # ask for it (built in the lifespan); W3C trace context either way.
    tracing = Tracing(tracer_provider, enabled=not sdk_disabled())
    # Counted by the edge from the first request; written out by the lifespan's task.
    usage = UsageMeter(settings.portal, prefix=settings.redis_prefix)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, GatewayState]]:
        tracing.start()
        engine = create_engine(
            settings.database_url,
            connect_timeout_s=settings.db_connect_timeout_s,
            statement_timeout_s=settings.db_statement_timeout_s,
        )
        sessions = session_factory(engine)
        snapshot_path = settings.config_snapshot_path
        config = ConfigStore(
            sessions, snapshot_file=SnapshotFile(snapshot_path) if snapshot_path else None
        )
        try:
            # From the database; while it is unavailable, from the snapshot file the last
            # load wrote; with neither, start-up fails within `startup_db_timeout_s`.
            await config.start(
                services=settings.services,
                timeout_ms=int(settings.upstream.default_timeout_s * 1000),
                within_s=settings.startup_db_timeout_s,
            )
        except BaseException:
            await engine.dispose()
            raise
        redis = connect_redis(settings)
        http = create_session(settings.upstream)
        registry = ServiceRegistry.from_settings(config, redis=redis, settings=settings)
        await registry.start(http=http, health_checks=settings.resilience.health_checks)
        caller = UpstreamCaller(session=http, registry=registry, settings=settings.upstream)
        notices = ChangeNotices(
            config,
            redis,
            prefix=settings.redis_prefix,
            refresh_s=settings.config_refresh_s,
            revision_check_s=settings.config_revision_check_s,
        )
        await notices.start()
        admission = AdmissionControl(settings, redis)
        identity = build_web_identity(settings, redis=redis, config=config)
        chain = PolicyChain(
            # Tried in order: session cookie, bearer token, API key.
            authenticators=[
                identity.sessions,
                identity.bearer,
                ApiKeyAuthenticator(config, settings),
            ],
            admission=admission,
            quotas=QuotaCounter(redis, prefix=settings.redis_prefix),
            config=config,
            revoked_keys_set=revoked_keys_set(settings) if redis is not None else None,
            redis_health=redis.health if redis is not None else None,
            introspection=identity.introspection,
        )
        cache = ResponseCache(
            settings.cache,
            redis=redis,
            prefix=settings.redis_prefix,
            compression=settings.compression,
            metrics=settings.metrics.enabled,
        )
        await cache.start()
        await usage.start(redis)
        state = GatewayState(
            settings=settings,
            engine=engine,
            sessions=sessions,
            config=config,
            registry=registry,
            http=http,
            caller=caller,
            redis=redis,
            identity=identity,
            notices=notices,
            chain=chain,
            idempotency=IdempotencyLedger(
                redis, prefix=settings.redis_prefix, settings=settings.access
            ),
            cache=cache,
            drain=drain,
            streams=QuoteHub(
                caller=caller,
                chain=chain,
                settings=settings.streams,
                draining=lambda: drain.draining,
            ),
            usage=usage,
        )
        # What start-up built lives as long as the process: freezing it keeps the cyclic
        # collector from walking it on every full collection, which took a third of a
        # pass-through request's CPU (`make bench`, partner quotes).
        gc.collect()
        gc.freeze()
        # A request allocates a few thousand objects and holds most of them only until it
        # ends; at the default threshold (700) the young generation is collected several
        # times per request, each pass walking the objects of every request in flight. At
        # this threshold a pass comes every few requests: about a sixth less CPU per
        # request (`make bench`, pass-through), for at most a few MB of garbage waiting.
        thresholds = gc.get_threshold()
        gc.set_threshold(GC_YOUNG_THRESHOLD, *thresholds[1:])
        try:
            # The MCP endpoint's SDK session manager runs inside the gateway's lifespan.
            async with mcp.running() if mcp is not None else nullcontext():
                yield {"gateway": state}
        finally:
            gc.set_threshold(*thresholds)
            gc.unfreeze()
            # Each step is bounded: a shutdown that hangs on one dependency would keep the
            # process from exiting until the orchestrator kills it.
            await _bounded("quote streams", state.streams.close())
            await _bounded("response cache", cache.stop())
            await _bounded("usage meter", usage.stop())
            await _bounded("service registry", registry.stop())
            await _bounded("change notices", notices.stop())
            await _bounded("identity provider client", identity.aclose())
            await _bounded("rate limiter", admission.aclose())
            if redis is not None:
                await _bounded("Redis client", redis.close())
            await _bounded("upstream HTTP session", http.close())
            await _bounded("config database", engine.dispose())
            await _bounded("trace exporter", asyncio.to_thread(tracing.shutdown))

    app = FastAPI(
        title="stock-bot API gateway",
        version="1.0.0",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        generate_unique_id_function=stable_operation_id,
        # The edge makes the one server span per request (`app.observability.tracing`) and
        # the metrics: FastAPI's own telemetry stays off even where a global OpenTelemetry
        # provider is configured, so nothing is produced twice.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
    )
    install_error_handlers(app)
    # Usage is counted for the portal to show; without the portal, not at all.
    install_middleware(
        app, settings, tracing=tracing, usage=usage if settings.portal.enabled else None
    )
    frontend_errors = problem_responses(404, 413, 422, 429, 502, 503, 504)
    # Every frontend route runs the policy chain through its access rule (`require_user`,
    # `require_partner`); 429 and 503 are in its documented responses.
    app.include_router(web_v1, tags=["web"], responses=frontend_errors)
    app.include_router(web_v2, tags=["web"], responses=frontend_errors)
    app.include_router(mobile_v1, tags=["mobile"], responses=frontend_errors)
    app.include_router(partner_v1, tags=["partner"], responses=frontend_errors)
    # The WebSocket quote stream and the streams' AsyncAPI document (the SSE routes are on
    # the web and mobile routers).
    app.include_router(streams_router, tags=["streams"])
    app.include_router(admin_router, prefix="/admin/v1", tags=["admin"])
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(versions_router)
    app.include_router(auth_router, prefix="/auth", tags=["auth"])
    if settings.portal.enabled:
        # The developer portal's HTML pages (`app.portal`); in no OpenAPI document.
        app.include_router(portal_router, prefix="/portal", include_in_schema=False)
    install_docs(
        app,
        DOCUMENTS,
        public_admin_docs=settings.http.public_admin_docs,
        connect_origins=[settings.identity.discovery_url],
    )
    mcp = _mount_mcp(app, settings) if settings.mcp.enabled else None
    configure_logging(settings.log_level, settings.log_format)
    return app
