"""Shed load when this process has too much in flight, and finish what `RateLimited` started.

The rate limit dependency decides, and leaves in the scope the `RateLimit` headers of an
admitted request and the in-flight slot it holds. A dependency cannot add headers to a
response a handler returns itself (pass-through bytes), nor hold a slot until the last body
byte is sent; this middleware does both.
"""

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import PROBLEM_MEDIA_TYPE, ServiceUnavailable, problem_body
from app.traffic.policies import HEADERS_SCOPE_KEY, RELEASE_SCOPE_KEY
from app.traffic.throttle import GatewayLoad

# The gateway's traffic: the admin API, health checks and docs stay reachable under overload.
TRAFFIC_PREFIXES = ("/web/", "/mobile/", "/partner/", "/api/")


class AdmissionMiddleware:
    """Gateway-wide in-flight cap (503) and the rate-limit response headers."""

    def __init__(self, app: ASGIApp, *, max_in_flight: int) -> None:
        self.app = app
        self.load = GatewayLoad(max_in_flight)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(TRAFFIC_PREFIXES):
            await self.app(scope, receive, send)
            return
        if not self.load.enter():
            await self._overloaded(scope, send)
            return

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = scope.get(HEADERS_SCOPE_KEY)
                if headers:
                    message["headers"] = [*message.get("headers", ()), *headers]
            await send(message)

        try:
            await self.app(scope, receive, send_with_limits)
        finally:
            self.load.leave()
            release = scope.get(RELEASE_SCOPE_KEY)
            if release is not None:
                release()

    async def _overloaded(self, scope: Scope, send: Send) -> None:
        error = ServiceUnavailable(
            "The gateway has too many requests in flight; try again shortly."
        )
        body = problem_body(error, instance=scope["path"])
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
                    (b"content-length", str(len(body)).encode()),
                    (b"retry-after", b"1"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
