"""One structured log line per request: what was asked, what was answered, how long it took.

Only the path is logged, never the query string or headers, so that keys and tokens a
client puts there never reach the logs.
"""

import logging
import time

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.observability.context import current_request_id

logger = logging.getLogger("gateway.access")


class AccessLogMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not logger.isEnabledFor(logging.INFO):
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_recording(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_recording)
        finally:
            client = scope.get("client")
            line = {
                "request_id": current_request_id(),
                "method": scope["method"],
                "path": scope["path"],
                "status": status,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "client": client[0] if client else None,
            }
            logger.info(orjson.dumps(line).decode())
