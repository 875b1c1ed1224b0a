"""The edge middleware: body-size limit, request ids, early answers, compression, security
headers, CORS around it all, the access log."""

import asyncio
import gzip
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from app.observability.logging import JsonFormatter
from app.settings import CompressionSettings, HttpSettings, RateLimitSettings, Settings
from backends.launcher import Platform
from tests.fixtures.consumers import linked_client_partner
from tests.fixtures.gateway import RunningGateway, running_gateway

LIMIT = 1024
ORDER = {
    "account_id": "ACC-2001",
    "symbol": "MSFT",
    "side": "buy",
    "type": "limit",
    "quantity": 1,
    "limit_price": 300.0,
}


@pytest.fixture
async def control(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    """A client for the simulated services' own control endpoints."""
    async with httpx.AsyncClient(timeout=5) as client:
        yield client


async def partner_token(platform: Platform, control: httpx.AsyncClient) -> str:
    url = platform.urls["identity"][0] + "/__dev/token"
    response = await control.post(url, json={"client_id": "partner-acme"})
    response.raise_for_status()
    token: str = response.json()["access_token"]
    return token


async def backend_stats(
    platform: Platform, control: httpx.AsyncClient, service: str
) -> list[dict[str, Any]]:
    return [(await control.get(f"{url}/__stats")).json() for url in platform.urls[service]]


async def reset_stats(platform: Platform, control: httpx.AsyncClient, service: str) -> None:
    for url in platform.urls[service]:
        (await control.delete(f"{url}/__stats")).raise_for_status()


async def placed_orders(platform: Platform, control: httpx.AsyncClient) -> int:
    return sum(
        count
        for stats in await backend_stats(platform, control, "orders")
        for route, count in stats["requests"].items()
        if route.startswith("POST ")
    )


@pytest.fixture
async def small_limit_gateway(
    settings: Settings, platform: Platform, control: httpx.AsyncClient
) -> AsyncIterator[RunningGateway]:
    limited = settings.model_copy(update={"http": HttpSettings(max_body_bytes=LIMIT)})
    async with running_gateway(limited) as gw:
        await linked_client_partner(gw.client)
        gw.client.headers["Authorization"] = f"Bearer {await partner_token(platform, control)}"
        yield gw


def padded_order(size: int) -> bytes:
    """A valid order, padded with JSON whitespace to `size` bytes."""
    body = json.dumps(ORDER).encode()
    return body[:-1] + b" " * (size - len(body)) + b"}"


async def test_small_body_passes_the_limit(
    small_limit_gateway: RunningGateway, platform: Platform, control: httpx.AsyncClient
) -> None:
    # The control case: the same order under the limit does reach the orders service.
    before = await placed_orders(platform, control)
    response = await small_limit_gateway.client.post(
        "/partner/v1/orders",
        content=padded_order(LIMIT - 10),
        headers={"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 201, response.text
    assert await placed_orders(platform, control) == before + 1


async def test_declared_body_over_the_limit_is_413(
    small_limit_gateway: RunningGateway, platform: Platform, control: httpx.AsyncClient
) -> None:
    before = await placed_orders(platform, control)
    response = await small_limit_gateway.client.post(
        "/partner/v1/orders",
        content=padded_order(LIMIT + 1),
        headers={"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == 413
    assert problem["instance"] == "/partner/v1/orders"
    assert str(LIMIT) in problem["detail"]
    # The early answer still carries the headers every response carries.
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"] == problem["request_id"]
    assert await placed_orders(platform, control) == before


async def test_streamed_body_over_the_limit_is_413(
    small_limit_gateway: RunningGateway, platform: Platform, control: httpx.AsyncClient
) -> None:
    before = await placed_orders(platform, control)
    body = padded_order(4 * LIMIT)

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(body), 256):
            yield body[start : start + 256]

    request = small_limit_gateway.client.build_request(
        "POST",
        "/partner/v1/orders",
        content=chunks(),
        headers={"Content-Type": "application/json", "Idempotency-Key": uuid.uuid4().hex},
    )
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"
    response = await small_limit_gateway.client.send(request)
    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["request_id"] == response.headers["x-request-id"]
    assert await placed_orders(platform, control) == before


async def test_sane_request_id_is_echoed(gateway: RunningGateway) -> None:
    for sane in ["abc-123", "trace.id:42_x", "A" * 128]:
        response = await gateway.client.get("/healthz", headers={"X-Request-ID": sane})
        assert response.headers["x-request-id"] == sane


async def test_insane_request_id_is_replaced(gateway: RunningGateway) -> None:
    for insane in ["A" * 129, "has space", "semi;colon", "<script>", "ünïcode"]:
        response = await gateway.client.get(
            "/healthz", headers={"X-Request-ID": insane.encode("utf-8")}
        )
        replaced = response.headers["x-request-id"]
        assert replaced != insane
        assert re.fullmatch(r"[0-9a-f]{32}", replaced), replaced


async def test_request_id_is_generated_when_absent(gateway: RunningGateway) -> None:
    ids = {(await gateway.client.get("/healthz")).headers["x-request-id"] for _ in range(3)}
    assert len(ids) == 3
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)


async def test_request_id_reaches_the_upstream(
    gateway: RunningGateway, platform: Platform, control: httpx.AsyncClient
) -> None:
    await linked_client_partner(gateway.client)
    token = await partner_token(platform, control)
    auth = {"Authorization": f"Bearer {token}"}
    # A symbol each: the second answer must not come from the response cache.
    for sent, symbol in [("quote-trace-7", "AAPL"), (None, "MSFT")]:
        await reset_stats(platform, control, "market-data")
        headers = dict(auth) if sent is None else {**auth, "X-Request-ID": sent}
        response = await gateway.client.get(
            "/partner/v1/quotes", params={"symbols": symbol}, headers=headers
        )
        assert response.status_code == 200, response.text
        request_id = response.headers["x-request-id"]
        if sent is not None:
            assert request_id == sent
        forwarded = [
            stats["last_headers"]["GET /quotes"].get("x-request-id")
            for stats in await backend_stats(platform, control, "market-data")
            if "GET /quotes" in stats["last_headers"]
        ]
        assert forwarded == [request_id]


async def test_large_responses_are_gzipped_on_request(gateway: RunningGateway) -> None:
    response = await gateway.client.get("/web/v1/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert response.status_code == 200
    assert response.headers["content-encoding"] == "gzip"
    assert "accept-encoding" in response.headers["vary"].lower()
    assert response.json()["info"]["title"]

    async with gateway.client.stream(
        "GET", "/web/v1/openapi.json", headers={"Accept-Encoding": "gzip"}
    ) as raw:
        compressed = b"".join([chunk async for chunk in raw.aiter_raw()])
    assert json.loads(gzip.decompress(compressed)) == response.json()
    assert len(compressed) < len(gzip.decompress(compressed))

    plain = await gateway.client.get(
        "/web/v1/openapi.json", headers={"Accept-Encoding": "identity"}
    )
    assert "content-encoding" not in plain.headers
    # As Starlette's gzip middleware did: a cache must not serve this copy to every client.
    assert "accept-encoding" in plain.headers["vary"].lower()
    assert plain.json() == response.json()


async def test_small_responses_are_not_compressed(gateway: RunningGateway) -> None:
    for accept in ["gzip", "identity"]:
        response = await gateway.client.get("/healthz", headers={"Accept-Encoding": accept})
        assert response.status_code == 200
        assert int(response.headers["content-length"]) < CompressionSettings().minimum_bytes
        assert "content-encoding" not in response.headers
        assert "vary" not in response.headers


def _security_headers() -> Iterator[tuple[str, str]]:
    yield "x-content-type-options", "nosniff"
    yield "x-frame-options", "DENY"
    yield "referrer-policy", "no-referrer"


async def test_security_headers_on_every_kind_of_response(gateway: RunningGateway) -> None:
    for response in [
        await gateway.client.get("/healthz"),
        await gateway.client.get("/no-such-page"),
        await gateway.client.get("/admin/v1/services"),
    ]:
        for name, value in _security_headers():
            assert response.headers.get(name) == value, (response.url, name)
        # HSTS is for production, behind TLS.
        assert "strict-transport-security" not in response.headers


async def test_hsts_in_production(settings: Settings) -> None:
    production = settings.model_copy(update={"environment": "production"})
    async with running_gateway(production) as gw:
        response = await gw.client.get("/healthz")
    assert response.headers["strict-transport-security"] == "max-age=31536000"
    assert response.headers["x-frame-options"] == "DENY"


def assert_edge_headers(response: httpx.Response, request_id: str) -> None:
    """The headers every answer carries, early ones included."""
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == request_id
    assert response.json()["request_id"] == request_id
    for name, value in _security_headers():
        assert response.headers.get(name) == value, (response.status_code, name)


async def test_early_413_carries_the_request_id_and_security_headers(
    small_limit_gateway: RunningGateway,
) -> None:
    response = await small_limit_gateway.client.post(
        "/partner/v1/orders",
        content=padded_order(LIMIT + 1),
        headers={"Content-Type": "application/json", "X-Request-ID": "big-order-1"},
    )
    assert response.status_code == 413, response.text
    assert_edge_headers(response, "big-order-1")
    # The client may still be sending the body; the connection is not reused.
    assert response.headers["connection"] == "close"


async def test_malformed_deadline_400_carries_the_request_id_and_security_headers(
    gateway: RunningGateway,
) -> None:
    for malformed in ["soon", "-5", "600001", "1" * 5000]:
        response = await gateway.client.get(
            "/web/v1/dashboard",
            headers={"X-Request-Deadline": malformed, "X-Request-ID": "late-1"},
        )
        assert response.status_code == 400, (malformed, response.text)
        assert_edge_headers(response, "late-1")
        assert "X-Request-Deadline" in response.json()["detail"]


async def test_overload_503_carries_the_request_id_and_security_headers(
    settings: Settings,
) -> None:
    one_at_a_time = settings.model_copy(
        update={"rate_limit": RateLimitSettings(gateway_max_in_flight=1)}
    )
    body_started, finish_body = asyncio.Event(), asyncio.Event()

    async def slow_body() -> AsyncIterator[bytes]:
        yield b'{"symbol": '
        body_started.set()
        await finish_body.wait()
        yield b'"MSFT"}'

    async with running_gateway(one_at_a_time) as gw:
        # A request whose body is still arriving holds the gateway's only slot.
        held = asyncio.create_task(
            gw.client.post(
                "/partner/v1/orders",
                content=slow_body(),
                headers={"Content-Type": "application/json"},
            )
        )
        await body_started.wait()
        for _ in range(100):
            shed = await gw.client.get("/partner/v1/quotes", headers={"X-Request-ID": "shed-1"})
            if shed.status_code == 503:
                break
            await asyncio.sleep(0.02)
        finish_body.set()
        admitted = await held
        health = await gw.client.get("/healthz")

    assert shed.status_code == 503, shed.text
    assert_edge_headers(shed, "shed-1")
    assert shed.headers["retry-after"] == "1"
    assert admitted.status_code != 503
    assert health.status_code == 200


async def test_cors_headers_reach_the_edges_early_answers(
    settings: Settings, platform: Platform, control: httpx.AsyncClient
) -> None:
    origin = "https://app.example"
    http = HttpSettings(max_body_bytes=LIMIT, cors_origins=[origin])
    async with running_gateway(settings.model_copy(update={"http": http})) as gw:
        await linked_client_partner(gw.client)
        token = await partner_token(platform, control)
        too_large = await gw.client.post(
            "/partner/v1/orders",
            content=padded_order(LIMIT + 1),
            headers={
                "Authorization": f"Bearer {token}",
                "Content-Type": "application/json",
                "Origin": origin,
                "X-Request-ID": "cors-413",
            },
        )
        quotes = await gw.client.get(
            "/partner/v1/quotes",
            params={"symbols": "AAPL"},
            headers={"Authorization": f"Bearer {token}", "Origin": origin},
        )
        stranger = await gw.client.get("/healthz", headers={"Origin": "https://evil.example"})

    assert too_large.status_code == 413, too_large.text
    assert too_large.headers["access-control-allow-origin"] == origin
    assert_edge_headers(too_large, "cors-413")
    assert quotes.status_code == 200, quotes.text
    assert quotes.headers["access-control-allow-origin"] == origin
    exposed = quotes.headers["access-control-expose-headers"].lower()
    assert "x-request-id" in exposed
    assert "ratelimit" in quotes.headers
    assert "access-control-allow-origin" not in stranger.headers


async def test_access_log_has_one_line_per_request_early_answers_included(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    async with running_gateway(settings.model_copy(update={"access_log": True})) as gw:
        await gw.client.get("/healthz?token=do-not-log", headers={"X-Request-ID": "log-ok"})
        await gw.client.get(
            "/healthz", headers={"X-Request-ID": "log-late", "X-Request-Deadline": "soon"}
        )
    lines = {
        line["request_id"]: line
        for line in (
            json.loads(JsonFormatter().format(record))
            for record in caplog.records
            if record.name == "gateway.access"
        )
    }
    ok, late = lines["log-ok"], lines["log-late"]
    assert (ok["method"], ok["route"], ok["status"]) == ("GET", "/healthz", 200)
    assert ok["duration_ms"] >= 0
    assert ok["client"] == "127.0.0.1"
    # Answered by the edge before routing: no template, the path without its query.
    assert (late["route"], late["path"], late["status"]) == (None, "/healthz", 400)
    assert "do-not-log" not in caplog.text


async def test_access_log_off_writes_nothing(
    gateway: RunningGateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="gateway.access")
    response = await gateway.client.get("/healthz")
    assert response.status_code == 200
    assert not [r for r in caplog.records if r.name == "gateway.access"]
