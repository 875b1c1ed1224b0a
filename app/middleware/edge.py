"""The gateway's edge: what every request gets before routing, and every response after it.

One ASGI layer, since each layer costs every request another coroutine frame and another
`send` closure. In one pass over the request headers it names the request (request id),
starts its deadline, finds the client's address (`app.middleware.forwarded`), refuses a
declared body over the limit and traffic above the gateway-wide in-flight cap, and creates
the request's one typed context (`app.policy.context.RequestContext`), the only thing it
puts in the scope. Through one `send` wrapper it adds the request id, the security headers,
the rate-limit headers the policy chain decided and, for a caller with credentials,
`Cache-Control: private, no-store` to every response; at the end it gives back the
in-flight slot the chain claimed and writes the access log line. A client that accepts a
content coding (gzip, Brotli, zstd) gets the compression responder for it around the app
(`app.middleware.compression`). The early answers (400, 413, 503) and the
500 for an exception nothing handled carry the same headers as any other.
"""

import time
from contextvars import Token

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cache.codings import encodable
from app.errors import (
    PROBLEM_MEDIA_TYPE,
    GatewayError,
    ServiceUnavailable,
    problem_body,
    unexpected_error,
)
from app.middleware.compression import VARY_ENCODING, CompressionResponder, coding_for
from app.middleware.forwarded import FORWARDED_FOR_HEADER, TrustedProxies
from app.observability.access_log import (
    AccessRecord,
    access_logged,
    access_record_var,
    write_access_record,
)
from app.observability.metrics import ServerMetrics
from app.observability.request_id import REQUEST_ID_HEADER, request_id_for, request_id_var
from app.observability.tracing import (
    TRACEPARENT_HEADER,
    TRACESTATE_HEADER,
    RequestTrace,
    Tracing,
    trace_var,
)
from app.policy.context import CONTEXT_SCOPE_KEY, RequestContext, peer_address
from app.security.usage import UsageMeter
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
# The gateway's traffic: the admin API, health checks and docs stay reachable under overload.
# Not `/mcp`: an MCP tool call is a partner request made in process through this edge
# (`app.frontends.mcp`), which takes the slot, so the call holds one, not two.
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
    compression."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        settings: Settings,
        tracing: Tracing | None = None,
        passthrough: ASGIApp | None = None,
        usage: UsageMeter | None = None,
    ) -> None:
        self.app = app
        # Counts each partner consumer's requests for the developer portal (no I/O here).
        self.usage = usage
        self.max_body_bytes = settings.http.max_body_bytes
        # Requests under the pass-through prefix go to its plain ASGI handler, not FastAPI;
        # their bodies stream, so they may be larger.
        self.passthrough = passthrough
        self.passthrough_prefix = settings.passthrough.prefix
        self.passthrough_body_bytes = settings.passthrough.max_body_bytes
        compression = settings.compression
        self.codings = tuple(compression.codings) if compression.enabled else ()
        self.compression_minimum_bytes = compression.minimum_bytes
        self.default_deadline_ms = settings.resilience.default_deadline_ms
        self.route_deadlines_ms = dict(settings.resilience.route_deadlines_ms)
        self.optional_section_s = settings.resilience.optional_section_ms / 1000
        self.load = GatewayLoad(settings.rate_limit.gateway_max_in_flight)
        production = settings.environment == "production"
        self.security_headers = (*_SECURITY_HEADERS, _HSTS) if production else _SECURITY_HEADERS
        self.access_log = settings.access_log
        self.server_metrics = ServerMetrics() if settings.metrics.enabled else None
        self.tracing = tracing if tracing is not None else Tracing(enabled=False)
        self.proxies = TrustedProxies(settings.http.trusted_proxies)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A WebSocket session: its context (request id, the client's address as trusted
        proxies name it, so its limits key on the client, not on the proxy in front) and,
        with the access log on, one record when the session ends: status 101 for an accepted
        socket (its duration the session's), the refusal's status otherwise (403 for a close
        before accepting, as the server answers it), the messages' bytes each way. The
        socket route sets its own connect deadline and answers for itself."""
        sent_id: bytes | None = None
        forwarded_for: list[bytes] = []
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                sent_id = value
            elif name == FORWARDED_FOR_HEADER:
                forwarded_for.append(value)
        request_id = request_id_for(sent_id)
        client_address = self.proxies.client_address(peer_address(scope), forwarded_for)
        context = RequestContext.of_scope(
            scope,
            deadline=Deadline.after_ms(self.default_deadline_ms),
            request_id=request_id,
            client_address=client_address,
        )
        scope[CONTEXT_SCOPE_KEY] = context
        if not (self.access_log and access_logged()):
            await self.app(scope, receive, send)
            return
        record = AccessRecord(
            request_id=request_id, method="GET", path=scope["path"], client=client_address
        )
        context.access = record
        status = 500

        async def receive_counted() -> Message:
            message = await receive()
            if message["type"] == "websocket.receive":
                record.bytes_in += _message_size(message)
            return message

        async def send_counted(message: Message) -> None:
            nonlocal status
            kind = message["type"]
            if kind == "websocket.send":
                record.bytes_out += _message_size(message)
            elif kind == "websocket.accept":
                status = 101
            elif kind == "websocket.http.response.start":
                status = message["status"]
            elif kind == "websocket.close" and status == 500:
                status = 403
            await send(message)

        record_token = access_record_var.set(record)
        try:
            await self.app(scope, receive_counted, send_counted)
        finally:
            access_record_var.reset(record_token)
            _write_record(record, context, route=_route_template(scope, context), status=status)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "websocket":
                await self._websocket(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        sent_id: bytes | None = None
        asked_deadline: bytes | None = None
        declared_length: bytes | None = None
        accept_encoding: bytes | None = None
        authorized = False
        forwarded_for: list[bytes] = []
        traceparent: bytes | None = None
        tracestate: bytes | None = None
        for name, value in scope["headers"]:
            if name == REQUEST_ID_HEADER:
                sent_id = value
            elif name == DEADLINE_HEADER_BYTES:
                asked_deadline = value
            elif name == b"content-length":
                declared_length = value
            elif name == b"accept-encoding":
                accept_encoding = value
            elif name == b"authorization":
                authorized = True
            elif name == FORWARDED_FOR_HEADER:
                forwarded_for.append(value)
            elif name == TRACEPARENT_HEADER:
                traceparent = value
            elif name == TRACESTATE_HEADER:
                tracestate = value

        request_id = request_id_for(sent_id)
        coding = (
            coding_for(accept_encoding, self.codings)
            if accept_encoding is not None and self.codings
            else None
        )
        client_address = self.proxies.client_address(peer_address(scope), forwarded_for)
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        method = scope["method"]
        logged = self.access_log and access_logged()
        metrics = self.server_metrics
        usage = self.usage
        started = time.perf_counter() if logged or metrics is not None or usage is not None else 0.0
        request_trace: RequestTrace | None = None
        if self.tracing.enabled:
            request_trace = self.tracing.start_request(
                method=method, traceparent=traceparent, tracestate=tracestate
            )
        trace_token = trace_var.set(request_trace)
        record: AccessRecord | None = None
        if logged:
            record = AccessRecord(
                request_id=request_id,
                method=method,
                path=scope["path"],
                client=client_address,
                started=started,
                trace_id=request_trace.trace_id if request_trace is not None else None,
            )
        record_token = access_record_var.set(record)
        if metrics is not None:
            active = metrics.active(method)
            active.inc()
        status = 500
        started_response = False
        holds_slot = False
        context: RequestContext | None = None
        deadline_token: Token[Deadline | None] | None = None
        id_token = request_id_var.set(request_id)
        try:
            try:
                path = scope["path"]
                passthrough = self.passthrough is not None and path.startswith(
                    self.passthrough_prefix
                )
                body_limit = self.passthrough_body_bytes if passthrough else self.max_body_bytes
                budget = route_budget_ms(
                    path, default_ms=self.default_deadline_ms, route_ms=self.route_deadlines_ms
                )
                if asked_deadline is not None:
                    budget = min(budget, client_budget_ms(asked_deadline))
                if declared_length is not None:
                    _check_declared_length(declared_length, limit=body_limit)
                if passthrough or path.startswith(TRAFFIC_PREFIXES):
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
            context.access = record
            scope[CONTEXT_SCOPE_KEY] = context

            async def send_edge(message: Message) -> None:
                nonlocal status, started_response, holds_slot
                if message["type"] == "http.response.start":
                    status = message["status"]
                    started_response = True
                    if holds_slot and _is_event_stream(message):
                        # An open stream is no request in flight: the stream hub caps them.
                        self.load.leave()
                        holds_slot = False
                    # One pass over the app's headers for what the edge adds below.
                    headers = []
                    cache_control = False
                    length: int | None = None
                    for header in message.get("headers", ()):
                        name = header[0]
                        if name == REQUEST_ID_HEADER:
                            continue
                        if name == b"cache-control":
                            cache_control = True
                        elif name == b"content-length":
                            length = int(header[1]) if header[1].isdigit() else None
                        headers.append(header)
                    vary = coding is None and encodable(
                        status=status,
                        headers=headers,
                        size=length,
                        minimum=self.compression_minimum_bytes,
                    )
                    headers.append(id_header)
                    headers += self.security_headers
                    admission = context.admission
                    if admission is not None and admission.headers:
                        headers += admission.headers
                    if not cache_control and (authorized or context.principal is not None):
                        headers.append(_PRIVATE)
                    if vary:
                        headers.append(VARY_ENCODING)
                    message["headers"] = headers
                elif record is not None and message["type"] == "http.response.body":
                    record.bytes_out += len(message.get("body", b""))
                await send(message)

            app = self.app
            if passthrough:
                assert self.passthrough is not None
                app = self.passthrough
            if coding is not None:
                app = CompressionResponder(
                    app, coding=coding, minimum_bytes=self.compression_minimum_bytes
                )
            try:
                await app(
                    scope,
                    _limited_receive(receive, limit=body_limit, record=record),
                    send_edge,
                )
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
            route = _route_template(scope, context)
            if metrics is not None:
                active.dec()
                metrics.observe(
                    method=method,
                    route=route,
                    status=status,
                    seconds=time.perf_counter() - started,
                )
            if request_trace is not None:
                request_trace.end(method=method, route=route, status=status)
            if record is not None:
                _write_record(record, context, route=route, status=status)
            if usage is not None and context is not None and context.principal is not None:
                consumer_id = context.principal.consumer_id
                if consumer_id is not None:
                    usage.record(
                        consumer_id,
                        method=method,
                        route=route or "unmatched",
                        status=status,
                        seconds=time.perf_counter() - started,
                    )
            access_record_var.reset(record_token)
            trace_var.reset(trace_token)
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


def _limited_receive(receive: Receive, *, limit: int, record: AccessRecord | None) -> Receive:
    """`receive` that raises PayloadTooLarge once the body it has delivered passes `limit`
    (and counts the body's bytes into the access record)."""
    received = 0

    async def receive_limited() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if record is not None:
                record.bytes_in = received
            if received > limit:
                # Raised inside the handler's read, so the error handler answers it.
                raise PayloadTooLarge(_body_limit_detail(limit))
        return message

    return receive_limited


def _message_size(message: Message) -> int:
    """A WebSocket message's payload in bytes (text as UTF-8)."""
    data = message.get("bytes")
    if data is not None:
        return len(data)
    text = message.get("text")
    return len(text.encode()) if text is not None else 0


def _route_template(scope: Scope, context: RequestContext | None) -> str | None:
    """The route the request matched, as a template: the one its entry recorded on the
    context (FastAPI routes with an access rule, pass-through routes, streams...), else the
    FastAPI route the router put in the scope (admin, health, login); None when none
    matched."""
    if context is not None and context.route is not None:
        return context.route
    # FastAPI keeps the matched route's full template (its routers' prefixes included) in
    # its own part of the scope; the route object alone knows only its path in its router.
    selected = scope.get("fastapi")
    effective = selected.get("effective_route_context") if isinstance(selected, dict) else None
    template = getattr(effective, "path_format", None) or getattr(scope.get("route"), "path", None)
    return template if isinstance(template, str) else None


def _write_record(
    record: AccessRecord, context: RequestContext | None, *, route: str | None, status: int
) -> None:
    """Complete the request's record from what the request decided, and write it."""
    record.route = route
    record.status = status
    principal = key_prefix = None
    if context is not None:
        if context.principal is not None:
            principal = context.principal.subject
            if context.principal.credential == "api_key":
                key_prefix = context.principal.extra.get("key_prefix")
        if record.rate_limit is None and context.admission is not None:
            record.rate_limit = "admitted" if context.admission.headers else "unlimited"
    write_access_record(
        record,
        principal=principal,
        key_prefix=key_prefix,
        duration_s=time.perf_counter() - record.started,
    )


def _is_event_stream(start: Message) -> bool:
    """Whether a response is a Server-Sent Events stream (never compressed: each event
    must reach the client when it is written)."""
    for name, value in start.get("headers", ()):
        if name == b"content-type":
            return value.startswith(b"text/event-stream")
    return False
