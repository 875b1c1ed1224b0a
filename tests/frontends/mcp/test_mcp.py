"""The MCP endpoint at /mcp, with the official SDK's client over HTTP against a running
gateway and the simulated platform: the same keys, scopes, limits, quotas and idempotency as
the partner HTTP API."""

import itertools
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS, MODERN_PROTOCOL_VERSIONS
from prometheus_client import REGISTRY

from app.frontends.mcp.example import connect, run_example
from app.frontends.partner.v1.views import PartnerOrderRequest, PartnerQuotes
from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN, create_partner, linked_client_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.platform_control import PlatformControl, platform_control
from tests.fixtures.problems import assert_problem

QUOTES = "/partner/v1/quotes"
ORDERS = "/partner/v1/orders"
# What an MCP client posts: one JSON-RPC request, answered as JSON or as an SSE stream.
MCP_POST = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
HANDSHAKE_ERA = {"MCP-Protocol-Version": "2025-06-18"}


@pytest.fixture
async def backends(platform: Platform) -> AsyncIterator[PlatformControl]:
    async with platform_control(platform) as control:
        yield control


def mcp_url(gateway: RunningGateway) -> str:
    return f"{gateway.url}/mcp"


def an_order(**fields: Any) -> dict[str, Any]:
    return {
        "account_id": "ACC-2001",
        "symbol": "NVDA",
        "side": "buy",
        "type": "limit",
        "quantity": 3,
        "limit_price": 91.5,
        **fields,
    }


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_initialize_with_an_api_key(gateway: RunningGateway, mode: str) -> None:
    partner = await create_partner(gateway.client)

    async with connect(mcp_url(gateway), partner.headers, mode=mode) as client:
        eras = HANDSHAKE_PROTOCOL_VERSIONS if mode == "legacy" else MODERN_PROTOCOL_VERSIONS
        assert client.protocol_version in eras
        assert client.server_capabilities.tools is not None
        assert "idempotency_key" in (client.instructions or "")
        if mode == "legacy":
            assert client.server_info is not None and client.server_info.name == "stock-bot"
        listed = await client.list_tools()

    assert {tool.name for tool in listed.tools} == {"quotes", "candles", "place_order", "usage"}


async def test_client_credentials_token_authenticates(
    gateway: RunningGateway, platform: Platform
) -> None:
    await linked_client_partner(gateway.client)
    headers = await bearer_headers(platform, client_id="partner-acme")

    async with connect(mcp_url(gateway), headers) as client:
        usage = await client.call_tool("usage", {})

    assert not usage.is_error, usage.content
    http = await gateway.client.get("/partner/v1/usage", headers=headers)
    assert usage.structured_content["consumer"] == http.json()["consumer"]


async def test_tools_follow_the_callers_scopes(gateway: RunningGateway) -> None:
    reader = await create_partner(gateway.client, scopes=("quotes:read",))
    trader = await create_partner(gateway.client, scopes=("orders:write",))

    async with connect(mcp_url(gateway), reader.headers) as client:
        read_tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    async with connect(mcp_url(gateway), trader.headers) as client:
        trade_tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert set(read_tools) == {"quotes", "usage"}
    assert set(trade_tools) == {"place_order", "usage"}
    quotes, place = read_tools["quotes"], trade_tools["place_order"]
    assert quotes.title == "Level-1 quotes of up to 50 symbols"
    assert quotes.annotations is not None and quotes.annotations.read_only_hint is True
    assert place.annotations is not None
    assert place.annotations.read_only_hint is False
    assert place.annotations.destructive_hint is False
    assert place.annotations.idempotent_hint is True
    # The schemas are the partner API's models, as its OpenAPI document has them.
    assert quotes.output_schema is not None
    assert quotes.output_schema["title"] == "PartnerQuotes"
    assert set(quotes.output_schema["properties"]) == set(PartnerQuotes.model_fields)
    assert set(place.input_schema["properties"]) == {
        "idempotency_key",
        *PartnerOrderRequest.model_fields,
    }
    assert "idempotency_key" in place.input_schema["required"]
    assert "idempotency_key" in (place.description or "")


async def test_quotes_tool_answers_the_http_routes_body(gateway: RunningGateway) -> None:
    partner = await create_partner(gateway.client)
    symbols = "MSFT,AAPL,NOPE"

    async with connect(mcp_url(gateway), partner.headers) as client:
        # Prices move each second: compare within a second that the HTTP body held still.
        for _ in range(5):
            before = await gateway.client.get(
                QUOTES, params={"symbols": symbols}, headers=partner.headers
            )
            result = await client.call_tool("quotes", {"symbols": symbols})
            after = await gateway.client.get(
                QUOTES, params={"symbols": symbols}, headers=partner.headers
            )
            if before.json() == after.json():
                break

    assert not result.is_error, result.content
    assert before.status_code == 200
    assert result.structured_content == before.json() == after.json()
    assert [quote["symbol"] for quote in result.structured_content["quotes"]] == ["MSFT", "AAPL"]


async def test_place_order_repeated_with_one_key_is_one_order(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    partner = await create_partner(gateway.client, scopes=("orders:write",))
    arguments = {**an_order(), "idempotency_key": f"mcp-{uuid.uuid4().hex}"}
    await backends.reset_stats("orders")

    async with connect(mcp_url(gateway), partner.headers) as client:
        first = await client.call_tool("place_order", arguments)
        again = await client.call_tool("place_order", arguments)
    # The HTTP API shares the ledger: the same key there is the same order too.
    body = {name: value for name, value in arguments.items() if name != "idempotency_key"}
    over_http = await gateway.client.post(
        ORDERS,
        json=body,
        headers={**partner.headers, "Idempotency-Key": arguments["idempotency_key"]},
    )

    assert not first.is_error, first.content
    assert not again.is_error, again.content
    placed = first.structured_content
    assert again.structured_content == placed
    assert again.meta is not None
    assert again.meta["stock-bot/http"] == {"status": 201, "idempotent_replayed": True}
    assert over_http.status_code == 201 and over_http.json() == placed
    assert await backends.requests("orders") == {"POST /accounts/ACC-2001/orders": 1}
    held = await backends.get("orders", "/accounts/ACC-2001/orders")
    assert [o["order_id"] for o in held["orders"]].count(placed["order_id"]) == 1


async def test_rate_limited_key_gets_a_tool_error_with_the_retry_time(
    gateway: RunningGateway,
) -> None:
    partner = await create_partner(gateway.client, plan={"rate_per_minute": 1})

    async with connect(mcp_url(gateway), partner.headers) as client:
        first = await client.call_tool("quotes", {"symbols": "AAPL"})
        limited = await client.call_tool("quotes", {"symbols": "AAPL"})
    # The MCP calls used the key's limit: the HTTP API is refused too.
    over_http = await gateway.client.get(
        QUOTES, params={"symbols": "AAPL"}, headers=partner.headers
    )

    assert not first.is_error, first.content
    assert limited.is_error
    problem = limited.structured_content
    assert problem["status"] == 429
    assert problem["type"].endswith("/rate-limited")
    assert 1 <= problem["retry_after_s"] <= 60
    assert f"Retry after {problem['retry_after_s']} s." in limited.content[0].text
    assert_problem(over_http, 429)


async def test_refusals_and_failures_are_tool_errors(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    reader = await create_partner(gateway.client, scopes=("quotes:read",))

    async with connect(mcp_url(gateway), reader.headers) as client:
        invalid = await client.call_tool("quotes", {"symbols": "not a symbol"})
        unknown_argument = await client.call_tool("quotes", {"symbols": "AAPL", "limit": 3})
        forbidden = await client.call_tool(
            "place_order", {**an_order(), "idempotency_key": f"mcp-{uuid.uuid4().hex}"}
        )
        with pytest.raises(MCPError, match="Unknown tool: nope"):
            await client.call_tool("nope", {})
        await backends.fault("market-data", error_rate=1.0, error_status=500, paths=["/quotes"])
        upstream = await client.call_tool("quotes", {"symbols": "AAPL"})

    assert invalid.is_error and invalid.structured_content["status"] == 422
    assert invalid.structured_content["errors"][0]["field"].endswith("symbols")
    assert unknown_argument.is_error and unknown_argument.structured_content["errors"] == [
        {"field": "limit", "message": "Unknown argument"}
    ]
    assert unknown_argument.structured_content["request_id"] not in ("", "-")
    assert forbidden.is_error and forbidden.structured_content["status"] == 403
    assert forbidden.structured_content["missing_scopes"] == ["orders:write"]
    assert upstream.is_error and upstream.structured_content["status"] in (502, 503)
    assert upstream.structured_content["type"].startswith("/problems/")


async def test_revoked_key_is_refused(gateway: RunningGateway) -> None:
    partner = await create_partner(gateway.client)
    async with connect(mcp_url(gateway), partner.headers) as client:
        await client.list_tools()

    revoked = await gateway.client.delete(
        f"/admin/v1/consumers/{partner.consumer_id}/keys/{partner.key_id}", headers=ADMIN
    )
    assert revoked.status_code == 204
    refused = await gateway.client.post(
        "/mcp", json=LIST_TOOLS, headers={**MCP_POST, **HANDSHAKE_ERA, **partner.headers}
    )
    anonymous = await gateway.client.post(
        "/mcp", json=LIST_TOOLS, headers={**MCP_POST, **HANDSHAKE_ERA}
    )

    assert_problem(refused, 401)
    assert "revoked" in refused.json()["detail"]
    assert_problem(anonymous, 401)
    assert "ApiKey" in anonymous.headers["www-authenticate"]
    with pytest.raises(BaseException) as failed:
        async with connect(mcp_url(gateway), partner.headers) as client:
            await client.list_tools()
    assert (
        failed.group_contains(MCPError, depth=None)
        if isinstance(failed.value, BaseExceptionGroup)
        else isinstance(failed.value, MCPError)
    )


async def test_foreign_host_is_refused(gateway: RunningGateway) -> None:
    partner = await create_partner(gateway.client)
    headers = {**MCP_POST, **HANDSHAKE_ERA, **partner.headers}

    foreign = await gateway.client.post(
        "/mcp", json=LIST_TOOLS, headers={**headers, "Host": "evil.example"}
    )
    foreign_origin = await gateway.client.post(
        "/mcp", json=LIST_TOOLS, headers={**headers, "Origin": "http://evil.example"}
    )
    local = await gateway.client.post("/mcp", json=LIST_TOOLS, headers=headers)

    assert foreign.status_code == 421
    assert foreign_origin.status_code == 403
    assert local.status_code == 200, local.text


async def test_example_lists_tools_and_quotes(gateway: RunningGateway) -> None:
    partner = await create_partner(gateway.client, scopes=("quotes:read",))
    lines: list[str] = []

    await run_example(mcp_url(gateway), partner.headers, symbols="AAPL,MSFT", out=lines.append)

    assert lines[:3] == [
        "tools:",
        "  quotes: Level-1 quotes of up to 50 symbols",
        "  usage: The caller's plan, rate limits and day/month quota consumption",
    ]
    assert [line.partition(":")[0] for line in lines[3:5]] == ["AAPL", "MSFT"]
    assert lines[5].startswith('usage: {"consumer": "' + partner.consumer)


async def test_every_request_stands_alone(gateway: RunningGateway) -> None:
    """Stateless: no session to keep in one process, so any worker answers any request, a
    tool call included, with no initialize before it; an SSE answer is never compressed."""
    partner = await create_partner(gateway.client)
    call = {
        "jsonrpc": "2.0",
        "id": 7,
        "method": "tools/call",
        "params": {"name": "quotes", "arguments": {"symbols": "AAPL"}},
    }

    answer = await gateway.client.post(
        "/mcp",
        json=call,
        headers={**MCP_POST, **partner.headers, "Accept-Encoding": "gzip, br, zstd"},
    )

    assert answer.status_code == 200, answer.text
    assert "mcp-session-id" not in answer.headers
    assert answer.headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in answer.headers
    event = next(line for line in answer.text.splitlines() if line.startswith("data: "))
    result = json.loads(event.removeprefix("data: "))["result"]
    assert result["isError"] is False
    assert [quote["symbol"] for quote in result["structuredContent"]["quotes"]] == ["AAPL"]


async def test_json_replies_when_configured(settings: Settings) -> None:
    json_replies = settings.model_copy(
        update={"mcp": settings.mcp.model_copy(update={"json_response": True})}
    )
    async with running_gateway(json_replies) as gateway:
        partner = await create_partner(gateway.client, scopes=("candles:read",))
        async with connect(mcp_url(gateway), partner.headers) as client:
            candles = await client.call_tool(
                "candles", {"symbol": "MSFT", "interval": "1d", "range": "5d"}
            )
        listed = await gateway.client.post(
            "/mcp", json=LIST_TOOLS, headers={**MCP_POST, **HANDSHAKE_ERA, **partner.headers}
        )

    assert not candles.is_error, candles.content
    assert candles.structured_content["symbol"] == "MSFT"
    assert candles.structured_content["range"] == "5d"
    assert listed.headers["content-type"] == "application/json"
    assert [tool["name"] for tool in listed.json()["result"]["tools"]] == ["candles", "usage"]


async def test_access_log_names_the_tool(settings: Settings) -> None:
    logged: list[dict[str, Any]] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            logged.append(dict(getattr(record, "fields", {})))

    access = logging.getLogger("gateway.access")
    handler = Collect()
    access.addHandler(handler)
    try:
        async with running_gateway(settings.model_copy(update={"access_log": True})) as gateway:
            partner = await create_partner(gateway.client)
            async with connect(mcp_url(gateway), partner.headers) as client:
                await client.call_tool("quotes", {"symbols": "AAPL"})
    finally:
        access.removeHandler(handler)

    (tool_line,) = [line for line in logged if line.get("mcp_tool") == "quotes"]
    assert tool_line["route"] == "/mcp" and tool_line["status"] == 200
    assert tool_line["principal"] == f"consumer:{partner.consumer}"
    # The partner call it made: its own line, its id the MCP request's and the tool's.
    (partner_line,) = [
        line
        for line in logged
        if line.get("route") == QUOTES and line["request_id"] == f"{tool_line['request_id']}.quotes"
    ]
    assert partner_line["status"] == 200
    assert partner_line["upstream"][0]["service"] == "market-data"


class RoundRobin(httpx2.AsyncBaseTransport):
    """Each request to the next gateway in turn, as a load balancer in front of several
    gateway processes would send them."""

    def __init__(self, ports: list[int]) -> None:
        self._ports = itertools.cycle(ports)
        self._inner = httpx2.AsyncHTTPTransport()
        self.served: list[tuple[int, str]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        port = next(self._ports)
        request.url = request.url.copy_with(port=port)
        self.served.append((port, request.method))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_requests_spread_over_gateway_processes(settings: Settings) -> None:
    async with running_gateway(settings) as first:
        partner = await create_partner(first.client)
        # Started after the key exists, so its snapshot holds it without a change notice.
        async with running_gateway(settings) as second:
            ports = [httpx2.URL(gateway.url).port for gateway in (first, second)]
            transport = RoundRobin([port for port in ports if port is not None])
            async with (
                httpx2.AsyncClient(transport=transport, headers=partner.headers) as http,
                Client(
                    streamable_http_client(mcp_url(first), http_client=http), mode="legacy"
                ) as client,
            ):
                listed = await client.list_tools()
                quotes = await client.call_tool("quotes", {"symbols": "AAPL"})
                usage = await client.call_tool("usage", {})

    assert {tool.name for tool in listed.tools} >= {"quotes", "usage"}
    assert not quotes.is_error and not usage.is_error, (quotes.content, usage.content)
    posts = [port for port, method in transport.served if method == "POST"]
    # initialize, initialized, tools/list, two tool calls: each gateway answered some.
    assert len(posts) >= 5 and set(posts) == set(ports)


async def test_guessed_keys_are_limited_per_address(gateway: RunningGateway) -> None:
    rule = {"name": "per-address", "key_by": "address", "limit": 3, "period_s": 60}
    created = await gateway.client.post("/admin/v1/rate-limits", json=rule, headers=ADMIN)
    assert created.status_code == 201, created.text
    guess = {**MCP_POST, **HANDSHAKE_ERA, "X-API-Key": "sbk_000000000000_" + "x" * 43}

    answers = [await gateway.client.post("/mcp", json=LIST_TOOLS, headers=guess) for _ in range(4)]

    assert [answer.status_code for answer in answers] == [401, 401, 401, 429]
    assert assert_problem(answers[3], 429)["limit"] == "per-address"


def served(route: str, status: int) -> float:
    """How many requests the gateway's metrics have counted for `route` answered `status`."""
    labels = {
        "http_request_method": "GET",
        "http_route": route,
        "http_response_status_code": str(status),
    }
    count = REGISTRY.get_sample_value("http_server_request_duration_seconds_count", labels)
    return count or 0.0


async def test_tool_calls_count_once_against_the_quota(gateway: RunningGateway) -> None:
    partner = await create_partner(gateway.client, plan={"quota_per_day": 3})
    before = served(QUOTES, 200), served(QUOTES, 429)
    refusals_before = (
        REGISTRY.get_sample_value("gateway_quota_refusals_total", {"plan": partner.plan}) or 0.0
    )

    async with connect(mcp_url(gateway), partner.headers) as client:
        calls = [await client.call_tool("quotes", {"symbols": "AAPL"}) for _ in range(4)]
    usage = await gateway.client.get("/partner/v1/usage", headers=partner.headers)

    # The metrics saw the partner calls, as HTTP calls: three answered, one refused.
    assert (served(QUOTES, 200), served(QUOTES, 429)) == (before[0] + 3, before[1] + 1)
    refusals = REGISTRY.get_sample_value("gateway_quota_refusals_total", {"plan": partner.plan})
    assert refusals == refusals_before + 1

    assert [call.is_error for call in calls] == [False, False, False, True]
    exhausted = calls[3].structured_content
    assert exhausted["status"] == 429 and exhausted["quota"] == "daily"
    assert exhausted["retry_after_s"] > 0
    # Three tool calls, three partner calls: the MCP requests themselves are not metered.
    assert usage.json()["day"]["used"] == 3


async def test_place_order_without_an_idempotency_key_is_refused(
    gateway: RunningGateway, backends: PlatformControl
) -> None:
    partner = await create_partner(gateway.client, scopes=("orders:write",))
    await backends.reset_stats("orders")

    async with connect(mcp_url(gateway), partner.headers) as client:
        refused = await client.call_tool("place_order", an_order())

    assert refused.is_error
    problem = refused.structured_content
    assert problem["status"] == 422
    assert [error["field"] for error in problem["errors"]] == ["header.Idempotency-Key"]
    assert await backends.requests("orders") == {}


async def test_disabled_mcp_is_not_served(settings: Settings) -> None:
    off = settings.model_copy(update={"mcp": settings.mcp.model_copy(update={"enabled": False})})
    async with running_gateway(off) as gateway:
        partner = await create_partner(gateway.client)
        answer = await gateway.client.post(
            "/mcp", json=LIST_TOOLS, headers={**MCP_POST, **partner.headers}
        )

    assert_problem(answer, 404)
