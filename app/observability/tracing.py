"""Distributed tracing: OpenTelemetry spans and W3C Trace Context.

Every request takes part in a trace: the client's `traceparent` when it sent a valid one,
otherwise a new trace. The edge starts the request's `RequestTrace` (its server span
`{method} {route}`); the upstream caller starts a client span for each try of a call
(`http.request.resend_count` on a retry) and sends its `traceparent` upstream; the access
record and every log line of the request carry the trace id.

Spans are recorded only where somebody reads them: with an exporter configured through the
standard `OTEL_*` variables (OTLP when `OTEL_EXPORTER_OTLP_ENDPOINT`,
`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` or `OTEL_TRACES_EXPORTER=otlp` is set; off by default,
and off with `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`), or a tracer provider
handed to `create_app` (tests: an in-memory exporter). Without one the gateway still
accepts, continues and propagates the W3C context, so the backends' traces and the logs
join up, at the cost of two random ids per request instead of the SDK's span objects.

The spans are the gateway's own, made here, not by the ASGI or aiohttp instrumentations:
one server span per request at the edge and one client span per try, never two of either.
"""

import os
import re
from contextvars import ContextVar, Token
from dataclasses import dataclass
from random import getrandbits
from urllib.parse import urlsplit

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    Tracer,
    TraceState,
)

TRACEPARENT_HEADER = b"traceparent"
TRACESTATE_HEADER = b"tracestate"
_TRACEPARENT = re.compile(rb"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(?:-|$)")
_INVALID_TRACE_ID = "0" * 32
_INVALID_SPAN_ID = "0" * 16
DEFAULT_SERVICE_NAME = "stock-bot-gateway"
INSTRUMENTATION_NAME = "app.gateway"


def _new_trace_id() -> str:
    # As the SDK's own id generator: random, not secret (ids are sent in the clear anyway).
    return f"{getrandbits(128) or 1:032x}"


def _new_span_id() -> str:
    return f"{getrandbits(64) or 1:016x}"


@dataclass(frozen=True, slots=True)
class TraceParent:
    """A valid W3C `traceparent` (version 00 semantics)."""

    trace_id: str
    span_id: str
    flags: int

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)


def parse_traceparent(value: bytes | None) -> TraceParent | None:
    """The client's trace context, or None when it sent none or an invalid one (which W3C
    says to ignore: the request starts a new trace)."""
    if value is None:
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None:
        return None
    version, trace_id, span_id, flags = match.groups()
    if version == b"ff" or (version == b"00" and len(value.strip()) != 55):
        return None
    parent = TraceParent(trace_id.decode(), span_id.decode(), int(flags, 16))
    if parent.trace_id == _INVALID_TRACE_ID or parent.span_id == _INVALID_SPAN_ID:
        return None
    return parent


class ClientTry:
    """One try of an upstream call: its `traceparent`, and its span when recorded."""

    __slots__ = ("span", "traceparent")

    def __init__(self, traceparent: str, span: Span | None) -> None:
        self.traceparent = traceparent
        self.span = span

    def end(self, *, status: int | None, error_type: str | None = None) -> None:
        span = self.span
        if span is None:
            return
        if status is not None:
            span.set_attribute("http.response.status_code", status)
        if error_type is not None or (status is not None and status >= 500):
            span.set_attribute("error.type", error_type or str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()


class RequestTrace:
    """The trace of one request: its ids, and its server span when spans are recorded."""

    __slots__ = ("_flags", "_token", "_tracer", "span", "span_id", "trace_id", "tracestate")

    def __init__(
        self,
        *,
        trace_id: str,
        span_id: str,
        flags: int,
        tracestate: str | None,
        span: Span | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.trace_id = trace_id
        self.span_id = span_id
        self._flags = flags
        self.tracestate = tracestate
        self.span = span
        self._tracer = tracer
        self._token: Token[otel_context.Context] | None = None

    def start_try(self, *, service: str, method: str, url: str, resend_count: int) -> ClientTry:
        """The client span of one try of an upstream call (the `retry`-th retry)."""
        span = self.span
        tracer = self._tracer
        if span is None or tracer is None:
            return ClientTry(f"00-{self.trace_id}-{_new_span_id()}-{self._flags:02x}", None)
        parts = urlsplit(url)
        attributes: dict[str, str | int] = {
            "http.request.method": method,
            "url.full": url,
            "server.address": parts.hostname or "",
            "peer.service": service,
        }
        if parts.port is not None:
            attributes["server.port"] = parts.port
        if resend_count:
            attributes["http.request.resend_count"] = resend_count
        child = tracer.start_span(
            method,
            context=trace.set_span_in_context(span),
            kind=SpanKind.CLIENT,
            attributes=attributes,
        )
        context = child.get_span_context()
        traceparent = f"00-{context.trace_id:032x}-{context.span_id:016x}-{context.trace_flags:02x}"
        return ClientTry(traceparent, child)

    def end(self, *, method: str, route: str | None, status: int) -> None:
        """End the server span, named by the route template once it is known."""
        span = self.span
        if span is None:
            return
        if self._token is not None:
            otel_context.detach(self._token)
            self._token = None
        if route is not None:
            span.update_name(f"{method} {route}")
            span.set_attribute("http.route", route)
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_attribute("error.type", str(status))
            span.set_status(Status(StatusCode.ERROR))
        span.end()


trace_var: ContextVar[RequestTrace | None] = ContextVar("request_trace", default=None)


def current_trace() -> RequestTrace | None:
    """The trace of the request being handled, or None outside a request."""
    return trace_var.get()


def current_trace_id() -> str | None:
    request_trace = trace_var.get()
    return request_trace.trace_id if request_trace is not None else None


class Tracing:
    """The process's tracing: a tracer when spans are recorded, W3C context either way
    (`enabled` false, as with `OTEL_SDK_DISABLED=true`: neither)."""

    def __init__(self, provider: TracerProvider | None = None, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self._given = provider
        self._provider: TracerProvider | None = None
        self._tracer: Tracer | None = None
        if provider is not None and enabled:
            self._use(provider)

    def _use(self, provider: TracerProvider) -> None:
        self._provider = provider
        self._tracer = provider.get_tracer(INSTRUMENTATION_NAME)

    def start(self) -> None:
        """In the lifespan: OTLP over HTTP when the standard variables ask for it (unless a
        provider was given); no recording otherwise."""
        if not self.enabled or self._given is not None or not otlp_requested(os.environ):
            return
        # Imported only when asked for: the exporter pulls in protobuf.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        # OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the default name.
        resource = Resource.create({"service.name": DEFAULT_SERVICE_NAME}).merge(Resource.create())
        provider = TracerProvider(resource=resource)
        # Endpoint, headers, timeout, compression: the exporter reads the OTEL_* variables.
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        self._use(provider)

    def shutdown(self) -> None:
        """Flush and stop the exporter `start` built (not a provider this was given)."""
        provider = self._provider
        if provider is not None and self._given is None:
            self._provider = self._tracer = None
            provider.shutdown()

    @property
    def recording(self) -> bool:
        return self._tracer is not None

    def start_request(
        self, *, method: str, traceparent: bytes | None, tracestate: bytes | None
    ) -> RequestTrace:
        """The trace of a request that sent these headers; its server span is current until
        `RequestTrace.end`."""
        parent = parse_traceparent(traceparent)
        state = tracestate.decode("latin-1") if parent is not None and tracestate else None
        tracer = self._tracer
        if tracer is None:
            if parent is None:
                return RequestTrace(
                    trace_id=_new_trace_id(),
                    span_id=_new_span_id(),
                    flags=0,
                    tracestate=None,
                )
            return RequestTrace(
                trace_id=parent.trace_id,
                span_id=_new_span_id(),
                flags=parent.flags,
                tracestate=state,
            )
        parent_context = None
        if parent is not None:
            remote = SpanContext(
                trace_id=int(parent.trace_id, 16),
                span_id=int(parent.span_id, 16),
                is_remote=True,
                trace_flags=TraceFlags(parent.flags),
                trace_state=TraceState.from_header([state]) if state else TraceState(),
            )
            parent_context = trace.set_span_in_context(NonRecordingSpan(remote))
        span = tracer.start_span(
            method,
            context=parent_context,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
        )
        context = span.get_span_context()
        request_trace = RequestTrace(
            trace_id=f"{context.trace_id:032x}",
            span_id=f"{context.span_id:016x}",
            flags=int(context.trace_flags),
            tracestate=state,
            span=span,
            tracer=tracer,
        )
        # Current for any OpenTelemetry-instrumented code the request runs.
        request_trace._token = otel_context.attach(trace.set_span_in_context(span))
        return request_trace


def sdk_disabled() -> bool:
    """`OTEL_SDK_DISABLED=true`: no tracing at all, not even the W3C context."""
    return os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true"


def otlp_requested(environ: "os._Environ[str] | dict[str, str]") -> bool:
    """Whether the standard variables switch OTLP trace export on."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporters = {
        name.strip().lower() for name in environ.get("OTEL_TRACES_EXPORTER", "").split(",")
    }
    if "none" in exporters:
        return False
    return "otlp" in exporters or bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )
