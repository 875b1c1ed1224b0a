"""The outer middleware, in one place so that its order is written down once."""

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from app.middleware.access_log import AccessLogMiddleware
from app.middleware.admission import AdmissionMiddleware
from app.middleware.body_limit import BodyLimitMiddleware
from app.middleware.deadline import DeadlineMiddleware
from app.middleware.request_id import RequestIdMiddleware
from app.middleware.security_headers import SecurityHeadersMiddleware
from app.settings import Settings


def install_middleware(app: FastAPI, settings: Settings) -> None:
    """Outermost first: request id -> deadline -> access log -> compression -> headers/CORS
    -> body limit -> admission (gateway-wide in-flight cap, rate-limit headers).

    The body limit sits inside the headers and CORS, so its early 413 carries them too.

    Starlette wraps in reverse order of `add_middleware`, so they are added innermost first.
    """
    # Innermost, so its 503s and headers still pass CORS and the access log.
    app.add_middleware(AdmissionMiddleware, max_in_flight=settings.rate_limit.gateway_max_in_flight)
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.http.max_body_bytes)
    if settings.http.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.http.cors_origins,
            allow_credentials=True,
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["*"],
            expose_headers=["X-Request-ID", "RateLimit", "RateLimit-Policy", "Retry-After"],
        )
    app.add_middleware(SecurityHeadersMiddleware, hsts=settings.environment == "production")
    app.add_middleware(GZipMiddleware, minimum_size=settings.http.gzip_minimum_bytes)
    if settings.access_log:
        app.add_middleware(AccessLogMiddleware)
    # Right inside the request id: the deadline clock starts before any other work.
    app.add_middleware(
        DeadlineMiddleware,
        default_ms=settings.resilience.default_deadline_ms,
        route_ms=settings.resilience.route_deadlines_ms,
    )
    app.add_middleware(RequestIdMiddleware)
