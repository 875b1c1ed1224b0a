"""The gateway's edge: what every request gets before routing, and every response after it.

One ASGI layer, since each layer costs every request another coroutine frame and another
`send` closure. In one pass over the request headers it names the request (request id),
starts its deadline, finds the client's address (`app.middleware.forwarded`), refuses a
declared body over the limit and traffic above the gateway-wide in-flight cap, and creates
the request's one typed context (`app.policy.context.RequestContext`), the only thing it
puts in the scope. Through one `send` wrapper it adds the request id, the security headers,
the rate-limit headers the policy chain decided and, for a caller with credentials,
`Cache-Control: private, no-store` to every response; at the end it gives back the
in-flight slot the chain claimed and writes the access log line. A client that accepts gzip
gets Starlette's gzip responder around the app. The early answers (400, 413, 503) and the
500 for an exception nothing handled carry the same headers as any other.
"""

import time
from contextvars import Token

from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipResponder
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import (
    PROBLEM_MEDIA_TYPE,
    GatewayError,
    ServiceUnavailable,
    problem_body,
    unexpected_error,
)
from app.middleware.forwarded import FORWARDED_FOR_HEADER, TrustedProxies
from app.observability.access_log import access_logged, log_request
from app.observability.request_id import REQUEST_ID_HEADER, request_id_for, request_id_var
from app.policy.context import CONTEXT_SCOPE_KEY, RequestContext, peer_address
from app.settings import Settings
from app.traffic.deadline import (
    DEADLINE_HEADER_BYTES,
    Deadline,
    client_budget_ms,
    deadline_var,
    route_budget_ms,
)
from app.traffic.throttle import GatewayLoad

_PROBLEM_TYPE = (b"content-type", PROBLEM_MEDIA_TYPE.encode())
_VARY_ENCODING = (b"vary", b"Accept-Encoding")
_UNCOMPRESSED = frozenset(media.encode() for media in DEFAULT_EXCLUDED_CONTENT_TYPES)
# The gateway's traffic: the admin API, health checks and docs stay reachable under overload.
TRAFFIC_PREFIXES = ("/web/", "/mobile/", "/partner/", "/api/")

# Headers every response carries, whatever produced it.
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
# Only where the gateway is reached over TLS, as in production.
_HSTS = (b"strict-transport-security", b"max-age=31536000")
# What a caller with credentials is answered is theirs alone: no cache, shared or the
# browser's, keeps it (unless the route chose its own Cache-Control).
_PRIVATE = (b"cache-control", b"private, no-store")


class PayloadTooLarge(GatewayError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class EdgeMiddleware:
    """Request id, deadline, context, body limit, in-flight cap, response headers, access log,
    gzip."""

    def __init__(self, app: ASGIApp, *, settings: Settings) -> None:
        self.app = app
        self.max_body_bytes = settings.http.max_body_bytes
        self.gzip_minimum_bytes = settings.http.gzip_minimum_bytes
        self.default_deadline_ms = settings.resilience.default_deadline_ms
        self.route_deadlines_ms = dict(settings.resilience.route_deadlines_ms)
        self.optional_section_s = settings.resilience.optional_section_ms / 1000
        self.load = GatewayLoad(settings.rate_limit.gateway_max_in_flight)
        production = settings.environment == "production"
        self.security_headers = (*_SECURITY_HEADERS, _HSTS) if production else _SECURITY_HEADERS
        self.access_log = settings.access_log
        self.proxies = TrustedProxies(settings.http.trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent_id: bytes | None = None
        asked_deadline: bytes | None = None
        declared_length: bytes | None = None
        accepts_gzip = False
        authorized = False
        forwarded_for: list[bytes] = []
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                sent_id = value
            elif name == DEADLINE_HEADER_BYTES:
                asked_deadline = value
            elif name == b"content-length":
                declared_length = value
            elif name == b"accept-encoding" and b"gzip" in value:
                accepts_gzip = True
            elif name == b"authorization":
                authorized = True
            elif name == FORWARDED_FOR_HEADER:
                forwarded_for.append(value)

        request_id = request_id_for(sent_id)
        client_address = self.proxies.client_address(peer_address(scope), forwarded_for)
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        logged = self.access_log and access_logged()
        started = time.perf_counter() if logged else 0.0
        status = 500
        started_response = False
        holds_slot = False
        context: RequestContext | None = None
        deadline_token: Token[Deadline | None] | None = None
        id_token = request_id_var.set(request_id)
        try:
            try:
                path = scope["path"]
                budget = route_budget_ms(
                    path, default_ms=self.default_deadline_ms, route_ms=self.route_deadlines_ms
                )
                if asked_deadline is not None:
                    budget = min(budget, client_budget_ms(asked_deadline))
                if declared_length is not None:
                    _check_declared_length(declared_length, limit=self.max_body_bytes)
                if path.startswith(TRAFFIC_PREFIXES):
                    if not self.load.enter():
                        raise _overloaded()
                    holds_slot = True
            except GatewayError as refusal:
                status = refusal.status
                await self._refuse(scope, send, refusal, id_header)
                return
            deadline = Deadline.after_ms(budget, optional_s=self.optional_section_s)
            deadline_token = deadline_var.set(deadline)
            context = RequestContext.of_scope(
                scope, deadline=deadline, request_id=request_id, client_address=client_address
            )
            scope[CONTEXT_SCOPE_KEY] = context

            async def send_edge(message: Message) -> None:
                nonlocal status, started_response
                if message["type"] == "http.response.start":
                    status = message["status"]
                    started_response = True
                    headers = [h for h in message.get("headers", ()) if h[0] != REQUEST_ID_HEADER]
                    headers.append(id_header)
                    headers += self.security_headers
                    admission = context.admission
                    if admission is not None and admission.headers:
                        headers += admission.headers
                    if (authorized or context.principal is not None) and not any(
                        name == b"cache-control" for name, _ in headers
                    ):
                        headers.append(_PRIVATE)
                    if not accepts_gzip and _would_compress(message, self.gzip_minimum_bytes):
                        headers.append(_VARY_ENCODING)
                    message["headers"] = headers
                await send(message)

            app = GZipResponder(self.app, self.gzip_minimum_bytes) if accepts_gzip else self.app
            try:
                await app(scope, _limited_receive(receive, limit=self.max_body_bytes), send_edge)
            except Exception as exc:
                # Answered here rather than by a catch-all handler, which Starlette runs
                # outside every middleware: the 500 keeps the request's id and headers.
                if isinstance(exc, GatewayError):
                    error = exc
                else:
                    error = unexpected_error(exc, method=scope["method"], path=scope["path"])
                if started_response:
                    # Too late for a problem: the server cuts the connection short.
                    raise
                status = error.status
                await self._refuse(scope, send, error, id_header)
        finally:
            if deadline_token is not None:
                deadline_var.reset(deadline_token)
            if holds_slot:
                self.load.leave()
            if context is not None:
                context.release()
            if logged:
                log_request(
                    request_id=request_id,
                    method=scope["method"],
                    path=scope["path"],
                    client=client_address,
                    status=status,
                    started=started,
                )
            request_id_var.reset(id_token)

    async def _refuse(
        self, scope: Scope, send: Send, error: GatewayError, id_header: tuple[bytes, bytes]
    ) -> None:
        """Answer with the problem where the app did not: before it saw the request, or
        after it failed without starting a response."""
        body = problem_body(error, instance=scope["path"])
        headers = [
            _PROBLEM_TYPE,
            (b"content-length", str(len(body)).encode()),
            *((name.lower().encode(), value.encode()) for name, value in error.headers.items()),
            id_header,
            *self.security_headers,
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _overloaded() -> ServiceUnavailable:
    """The answer above the gateway-wide in-flight cap."""
    return ServiceUnavailable(
        "The gateway has too many requests in flight; try again shortly.",
        headers={"Retry-After": "1"},
    )


def _body_limit_detail(limit: int) -> str:
    return f"The request body exceeds {limit} bytes."


def _check_declared_length(value: bytes, *, limit: int) -> None:
    """Raise PayloadTooLarge when a request's Content-Length is over `limit` or not a number."""
    if not value.isdigit() or int(value) > limit:
        # Nobody will read the body the client is still sending: no keep-alive after it.
        raise PayloadTooLarge(_body_limit_detail(limit), headers={"Connection": "close"})


def _limited_receive(receive: Receive, *, limit: int) -> Receive:
    """`receive` that raises PayloadTooLarge once the body it has delivered passes `limit`."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                # Raised inside the handler's read, so the error handler answers it.
                raise PayloadTooLarge(_body_limit_detail(limit))
        return message

    return receive_limited


def _would_compress(start: Message, minimum_bytes: int) -> bool:
    """Whether the gzip responder would have compressed this response had the client asked.

    Starlette marks such a response `Vary: Accept-Encoding` whichever encoding it sends. It
    judges by the first body chunk; here the headers go out before any body, so the declared
    length stands in for it (no length: a streamed body, which Starlette marks too).
    """
    if start["status"] in (204, 206, 304):
        return False
    length = None
    for name, value in start.get("headers", ()):
        if name == b"content-encoding":
            return False
        if name == b"content-length":
            length = value
        elif name == b"content-type":
            media = value.partition(b";")[0].strip().lower()
            if media in _UNCOMPRESSED or media.partition(b"/")[0] + b"/*" in _UNCOMPRESSED:
                return False
    return length is None or not length.isdigit() or int(length) >= minimum_bytes
