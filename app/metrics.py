"""`GET /metrics`: the gateway's Prometheus metrics (`app.observability.metrics`).

With several worker processes it answers every worker's figures added up, read from the
directory they share (`PROMETHEUS_MULTIPROC_DIR`), whichever worker the scrape reaches.
Protected by a bearer token when `GATEWAY_METRICS__TOKEN` is set; absent (404) when
`GATEWAY_METRICS__ENABLED=false`.
"""

import asyncio
import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.errors import NotFound, Unauthorized
from app.observability.metrics import exposition, multiprocess_directory
from app.state import GatewayState

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Prometheus text exposition of the gateway's metrics."""
    state: GatewayState = request.state.gateway
    settings = state.settings.metrics
    if not settings.enabled:
        raise NotFound("Metrics are switched off (GATEWAY_METRICS__ENABLED=false).")
    if settings.token is not None and not _bearer_matches(
        request.headers.get("authorization"), settings.token.get_secret_value()
    ):
        raise Unauthorized(
            "The metrics need the scrape token: Authorization: Bearer <token>.",
            headers={"WWW-Authenticate": 'Bearer realm="metrics"'},
        )
    if multiprocess_directory() is None:
        body = exposition()
    else:
        # Every worker's files are read: off the event loop.
        body = await asyncio.to_thread(exposition)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


def _bearer_matches(header: str | None, token: str) -> bool:
    if header is None:
        return False
    scheme, _, credential = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        credential.strip().encode(), token.encode()
    )
