"""Tracing: the span tree of a request, the trace context each backend received, the trace id
in the access log; retries visible as client spans; W3C parsing."""

from collections.abc import Iterator

import pytest
from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from app.observability.tracing import otlp_requested, parse_traceparent
from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.platform_control import platform_control
from tests.fixtures.web_server import serving
from tests.observability.conftest import CapturedLog

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN_ID = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{CLIENT_SPAN_ID}-01"
SERVICES = ("market-data", "portfolio", "orders", "news", "bots")


@pytest.fixture
def exporter() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    yield provider, spans
    provider.shutdown()


def _hex(value: int, width: int) -> str:
    return f"{value:0{width}x}"


def _parse(traceparent: str) -> tuple[str, str, str]:
    version, trace_id, span_id, flags = traceparent.split("-")
    assert version == "00"
    return trace_id, span_id, flags


async def test_a_dashboard_request_is_one_trace_the_backends_and_the_log_share(
    settings: Settings,
    platform: Platform,
    exporter: tuple[TracerProvider, InMemorySpanExporter],
    captured_log: CapturedLog,
) -> None:
    provider, spans = exporter
    logged = settings.model_copy(update={"access_log": True})
    async with (
        platform_control(platform) as control,
        running_gateway(logged, tracer_provider=provider) as gw,
    ):
        headers = await bearer_headers(platform, username="alice")
        await control.reset_stats(*SERVICES)
        spans.clear()
        response = await gw.client.get(
            "/web/v1/dashboard",
            headers={**headers, "traceparent": TRACEPARENT, "X-Request-ID": "traced-dashboard"},
        )
        assert response.status_code == 200, response.text
        received: dict[str, list[str]] = {}
        for service in SERVICES:
            for route in await control.requests(service):
                if route.startswith("GET /health"):
                    continue
                sent = await control.last_headers(service, route)
                received.setdefault(service, []).append(sent["traceparent"])
    finished: tuple[ReadableSpan, ...] = spans.get_finished_spans()

    # One server span, named by the route template, continuing the client's trace.
    (server,) = [span for span in finished if span.kind is SpanKind.SERVER]
    assert server.name == "GET /web/v1/dashboard"
    assert server.context is not None and server.parent is not None
    assert _hex(server.context.trace_id, 32) == TRACE_ID
    assert _hex(server.parent.span_id, 16) == CLIENT_SPAN_ID
    assert server.attributes is not None
    assert server.attributes["http.route"] == "/web/v1/dashboard"
    assert server.attributes["http.response.status_code"] == 200

    # Every other span is a client span of one upstream try, a child of the server span.
    clients = [span for span in finished if span.kind is SpanKind.CLIENT]
    assert len(clients) == len(finished) - 1
    client_ids: dict[str, str] = {}
    for span in clients:
        assert span.parent is not None and span.context is not None
        assert span.parent.span_id == server.context.span_id
        assert span.context.trace_id == server.context.trace_id
        assert span.attributes is not None
        assert span.attributes["http.response.status_code"] == 200
        assert span.name == "GET"
        client_ids[_hex(span.context.span_id, 16)] = str(span.attributes["peer.service"])

    # Each backend got the trace id and, as its parent, the client span of its own call.
    assert {"market-data", "portfolio", "orders"} <= set(received)
    for service, traceparents in received.items():
        for traceparent in traceparents:
            trace_id, parent_id, flags = _parse(traceparent)
            assert trace_id == TRACE_ID
            assert flags == "01"
            assert client_ids[parent_id] == service

    # The access record names the trace and one entry per upstream call.
    line = captured_log.access_of("traced-dashboard")
    assert line["trace_id"] == TRACE_ID
    assert line["route"] == "/web/v1/dashboard"
    assert {call["service"] for call in line["upstream"]} == set(client_ids.values())
    assert len(line["upstream"]) == len(clients)


async def test_each_try_of_a_retried_call_is_a_client_span_with_its_resend_count(
    settings: Settings,
    platform: Platform,
    exporter: tuple[TracerProvider, InMemorySpanExporter],
    captured_log: CapturedLog,
) -> None:
    provider, spans = exporter
    logged = settings.model_copy(update={"access_log": True})
    async with (
        platform_control(platform) as control,
        running_gateway(logged, tracer_provider=provider) as gw,
    ):
        partner = await create_partner(gw.client)
        await control.fault("market-data", error_rate=1.0, error_status=503, paths=["/quotes"])
        spans.clear()
        response = await gw.client.get(
            "/partner/v1/quotes",
            params={"symbols": "AAPL"},
            headers={**partner.headers, "X-Request-ID": "retried-quotes"},
        )
    assert response.status_code == 503
    finished = spans.get_finished_spans()
    (server,) = [span for span in finished if span.kind is SpanKind.SERVER]
    assert server.name == "GET /partner/v1/quotes"
    assert server.status.status_code is StatusCode.ERROR
    tries = sorted(
        (span for span in finished if span.kind is SpanKind.CLIENT),
        key=lambda span: span.start_time or 0,
    )
    assert len(tries) >= 2
    for number, span in enumerate(tries):
        assert span.attributes is not None
        assert span.attributes["http.response.status_code"] == 503
        assert span.attributes.get("http.request.resend_count", 0) == number
        assert span.status.status_code is StatusCode.ERROR
    # A retry goes to the other instance.
    assert tries[0].attributes is not None and tries[1].attributes is not None
    assert tries[0].attributes["server.port"] != tries[1].attributes["server.port"]

    line = captured_log.access_of("retried-quotes")
    (call,) = line["upstream"]
    assert call["service"] == "market-data"
    assert call["status"] == 503
    assert call["retries"] == len(tries) - 1
    assert call["error"] == "upstream-unavailable"
    (event,) = [
        entry
        for entry in captured_log.lines()
        if entry["event"] == "upstream_failure" and entry.get("request_id") == "retried-quotes"
    ]
    assert event["trace_id"] == line["trace_id"]
    assert (event["service"], event["retries"]) == ("market-data", len(tries) - 1)


async def test_without_a_recording_tracer_the_trace_context_still_reaches_backend_and_log(
    settings: Settings, platform: Platform, captured_log: CapturedLog
) -> None:
    logged = settings.model_copy(update={"access_log": True})
    async with platform_control(platform) as control, running_gateway(logged) as gw:
        partner = await create_partner(gw.client)
        await control.reset_stats("market-data")
        response = await gw.client.get(
            "/partner/v1/quotes",
            params={"symbols": "MSFT"},
            headers={**partner.headers, "traceparent": TRACEPARENT, "X-Request-ID": "untraced"},
        )
        assert response.status_code == 200
        sent = await control.last_headers("market-data", "GET /quotes")
    trace_id, parent_id, flags = _parse(sent["traceparent"])
    assert (trace_id, flags) == (TRACE_ID, "01")
    # Not the client's span: the gateway's try is the backend's parent.
    assert parent_id != CLIENT_SPAN_ID
    assert captured_log.access_of("untraced")["trace_id"] == TRACE_ID


@pytest.mark.parametrize(
    "value",
    [
        b"",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
    ],
)
def test_an_invalid_traceparent_starts_a_new_trace(value: bytes) -> None:
    assert parse_traceparent(value) is None


def test_a_valid_traceparent_is_continued() -> None:
    parent = parse_traceparent(TRACEPARENT.encode())
    assert parent is not None
    assert (parent.trace_id, parent.span_id, parent.sampled) == (TRACE_ID, CLIENT_SPAN_ID, True)
    # A later version may append fields; its first four are read as version 00's.
    later = parse_traceparent(f"01-{TRACE_ID}-{CLIENT_SPAN_ID}-00-more".encode())
    assert later is not None and not later.sampled


@pytest.mark.parametrize(
    ("environ", "on"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, False),
    ],
)
def test_otlp_export_is_off_unless_the_standard_variables_ask(
    environ: dict[str, str], on: bool
) -> None:
    assert otlp_requested(environ) is on


async def test_the_standard_otel_variables_switch_otlp_export_on(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OTLP/HTTP receiver of the test's own gets the gateway's spans when
    OTEL_EXPORTER_OTLP_ENDPOINT names it; the exporter is flushed as the gateway stops."""
    received: list[ExportTraceServiceRequest] = []

    async def collect(request: web.Request) -> web.Response:
        message = ExportTraceServiceRequest()
        message.ParseFromString(await request.read())
        received.append(message)
        return web.Response(body=b"", content_type="application/x-protobuf")

    receiver = web.Application()
    receiver.router.add_post("/v1/traces", collect)
    async with serving(receiver) as receiver_url:
        monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", receiver_url)
        monkeypatch.setenv("OTEL_SERVICE_NAME", "gateway-under-test")
        async with running_gateway(settings) as gw:
            response = await gw.client.get("/healthz", headers={"traceparent": TRACEPARENT})
            assert response.status_code == 200
    spans = [
        (resource_spans.resource, span)
        for message in received
        for resource_spans in message.resource_spans
        for scope_spans in resource_spans.scope_spans
        for span in scope_spans.spans
    ]
    (resource, span), *_ = [(r, s) for r, s in spans if s.name == "GET /healthz"]
    assert span.trace_id.hex() == TRACE_ID
    assert span.parent_span_id.hex() == CLIENT_SPAN_ID
    names = {a.key: a.value.string_value for a in resource.attributes}
    assert names["service.name"] == "gateway-under-test"
