"""Proxying through pass-through routes: what the upstream receives (path, query, hop-by-hop
and forwarding headers, its own Host), what the client receives (the upstream's own errors,
redirects pointed at the gateway, no hop-by-hop headers), and requests refused before
anything is forwarded (SSRF attempts, unknown paths, wrong methods)."""

import asyncio
from typing import Any

import httpx

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.problems import assert_problem
from tests.passthrough.conftest import add_route
from tests.passthrough.echo import EchoUpstream


def _headers(echoed: dict[str, Any]) -> dict[str, str]:
    return {k.lower(): v for k, v in echoed["headers"]}


async def test_prefix_route_forwards_path_query_and_forwarding_headers(
    gateway: RunningGateway, echo: EchoUpstream
) -> None:
    await add_route(
        gateway.client,
        name="echo-files",
        match={"path_prefix": "/files"},
        upstream={"service": "echo", "path": "/store"},
    )
    response = await gateway.client.get(
        "/api/files/a/b%20c?x=1&y=two",
        headers={
            "Host": "gateway.example",
            "X-Forwarded-For": "203.0.113.9",
            "Via": "1.1 edge-proxy",
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "never forwarded",
            "Keep-Alive": "timeout=5",
            "TE": "trailers",
            "Upgrade": "websocket",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "X-Custom": "end-to-end",
        },
    )
    assert response.status_code == 200, response.text
    echoed = response.json()
    assert echoed["path"] == "/store/a/b%20c"
    assert echoed["query"] == "x=1&y=two"
    headers = _headers(echoed)
    # The upstream's own address, never the client's Host.
    assert echoed["host"] == echo.url.removeprefix("http://")
    for hop in ("x-secret-hop", "keep-alive", "te", "upgrade", "proxy-authorization"):
        assert hop not in headers, hop
    assert headers.get("connection", "keep-alive").lower() in {"keep-alive", "close"}
    assert headers["x-custom"] == "end-to-end"
    assert headers["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == "gateway.example"
    assert headers["forwarded"] == 'for=127.0.0.1;proto=http;host="gateway.example"'
    assert headers["via"] == "1.1 edge-proxy, 1.1 stock-bot-gateway"
    assert headers["x-request-id"] == response.headers["x-request-id"]
    assert response.headers["via"].endswith("1.1 stock-bot-gateway")


async def test_hop_by_hop_response_headers_are_removed(gateway: RunningGateway) -> None:
    await add_route(
        gateway.client,
        name="echo-hop",
        match={"path": "/hop"},
        upstream={"service": "echo", "path": "/hop"},
    )
    response = await gateway.client.get("/api/hop")
    assert response.status_code == 200
    assert response.text == "ok"
    assert response.headers["x-end-to-end"] == "keep me"
    assert "x-hop-custom" not in response.headers
    assert "keep-alive" not in response.headers


async def test_upstream_errors_pass_through_as_they_are(gateway: RunningGateway) -> None:
    await add_route(
        gateway.client,
        name="echo-fail",
        match={"path": "/fail/{status}"},
        upstream={"service": "echo", "path": "/fail/{status}"},
        retries=0,
    )
    for status in (404, 409, 500, 503):
        response = await gateway.client.get(f"/api/fail/{status}")
        assert response.status_code == status
        assert response.headers["content-type"] == "application/json; charset=utf-8"
        assert response.json() == {"detail": f"the upstream's own {status}"}


async def test_gateway_failures_are_problems(gateway: RunningGateway) -> None:
    await add_route(
        gateway.client,
        name="nowhere",
        match={"path": "/nowhere"},
        upstream={"service": "echo", "path": "/x"},
    )
    # No route: the gateway's own 404, as a problem.
    assert_problem(await gateway.client.get("/api/no/such/route"), 404)
    # A method the route does not take: 405 naming what it does.
    await add_route(
        gateway.client,
        name="only-get",
        match={"path": "/only-get", "methods": ["GET"]},
        upstream={"service": "echo", "path": "/x"},
    )
    problem = assert_problem(await gateway.client.post("/api/only-get", json={}), 405)
    assert problem["status"] == 405
    response = await gateway.client.post("/api/only-get", json={})
    assert response.headers["allow"] == "GET, HEAD"


async def test_upstream_redirects_point_at_the_gateway(gateway: RunningGateway) -> None:
    await add_route(
        gateway.client,
        name="echo-redirect",
        match={"path_prefix": "/docs-files"},
        upstream={"service": "echo", "path": "/files"},
    )
    response = await gateway.client.get(
        "/api/docs-files/redirect", headers={"Host": "gw.example:8443"}
    )
    assert response.status_code == 302
    assert response.headers["location"] == "http://gw.example:8443/api/docs-files/moved?x=1"
    elsewhere = await gateway.client.get("/api/docs-files/elsewhere")
    assert elsewhere.status_code == 302
    assert elsewhere.headers["location"] == "https://example.org/away"


async def _raw(gateway: RunningGateway, request_line: bytes, host: bytes = b"gw") -> bytes:
    url = httpx.URL(gateway.url)
    reader, writer = await asyncio.open_connection(url.host, url.port)
    writer.write(request_line + b"\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n")
    await writer.drain()
    answer = await reader.read()
    writer.close()
    return answer


async def test_ssrf_attempts_are_refused_and_nothing_is_forwarded(
    gateway: RunningGateway, echo: EchoUpstream
) -> None:
    await add_route(
        gateway.client,
        name="echo-public",
        match={"path_prefix": "/public"},
        upstream={"service": "echo", "path": "/public"},
    )
    before = len(echo.received)
    for target in (
        b"/api/public/..%2f..%2fadmin",
        b"/api/public/%2e%2e/%2e%2e/admin",
        b"/api/public/%2E%2E/secret",
        b"/api/public/a%252e%252e/b",
        b"/api/public/..%5cadmin",
        b"/api/public/@evil.example/x",
        b"/api/public/x%40evil.example",
    ):
        answer = await _raw(gateway, b"GET " + target + b" HTTP/1.1")
        assert answer.startswith(b"HTTP/1.1 400") or answer.startswith(b"HTTP/1.1 404"), (
            target,
            answer[:200],
        )
    assert len(echo.received) == before
    # An absolute URI and a foreign Host reach only the route's own service and path.
    answer = await _raw(
        gateway, b"GET http://169.254.169.254/api/public/meta HTTP/1.1", host=b"169.254.169.254"
    )
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert echo.received[-1] == ("GET", "/public/meta")
    assert b'"host": "' + echo.url.removeprefix("http://").encode() + b'"' in answer


async def test_prefix_is_the_only_place_routes_live(gateway: RunningGateway) -> None:
    """A route can only ever be served under the prefix: /web, /admin, /docs keep theirs."""
    await add_route(
        gateway.client,
        name="web-lookalike",
        match={"path_prefix": "/web"},
        upstream={"service": "echo", "path": "/x"},
    )
    assert (await gateway.client.get("/healthz")).status_code == 200
    assert (await gateway.client.get("/api/web/v1/dashboard")).json()["path"] == "/x/v1/dashboard"
    assert_problem(await gateway.client.get("/web/v1/dashboard"), 401)


async def test_an_answer_that_stalls_after_its_head_is_cut_at_the_route_timeout(
    gateway: RunningGateway,
) -> None:
    await add_route(
        gateway.client,
        name="echo-stall",
        match={"path": "/stall"},
        upstream={"service": "echo", "path": "/stall"},
        timeout_ms=500,
    )
    started = asyncio.get_running_loop().time()
    received = 0
    async with gateway.client.stream(
        "GET", "/api/stall?s=4", headers={"Accept-Encoding": "identity"}
    ) as response:
        # The head and the first chunk came in time: they are the client's.
        assert response.status_code == 200
        assert response.headers["content-length"] == str(2 * 64 * 1024)
        try:
            async for chunk in response.aiter_bytes():
                received += len(chunk)
        except httpx.TransportError:
            pass
    waited = asyncio.get_running_loop().time() - started
    # The stalled body is given up within the route's bound, not after the upstream's 4 s,
    # and the client never gets a complete-looking answer.
    assert received == 64 * 1024
    assert waited < 3
