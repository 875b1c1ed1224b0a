"""Live quote streams end to end: gateway on a real socket, the market-data stream behind it."""

import asyncio
from collections.abc import AsyncIterator
from ipaddress import ip_network
from typing import Any

import httpx
import orjson
import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from app.settings import Settings, StreamSettings
from app.state import Drain
from backends.launcher import Platform
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers, browser_login, dev_token
from tests.streams.clients import (
    eventually,
    sse,
    upstream_outage,
    upstream_subscriptions,
)

# A short heartbeat and credential check, so tests see both within a tick or two.
STREAMS = StreamSettings(
    heartbeat_s=0.5,
    credential_check_s=0.5,
    max_per_principal=3,
    reconnect_first_s=0.2,
    reconnect_max_s=0.5,
    write_stall_s=2.0,
)


@pytest.fixture
def stream_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"streams": STREAMS})


@pytest.fixture
async def gateway(stream_settings: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(stream_settings) as running:
        yield running


@pytest.fixture
async def alice(platform: Platform) -> dict[str, str]:
    return await bearer_headers(platform, username="alice")


def ws_url(gateway: RunningGateway) -> str:
    return gateway.url.replace("http://", "ws://") + "/web/v1/ws/quotes"


async def receive(socket: ClientConnection, kind: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """The next message of type `kind` (others are skipped)."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = orjson.loads(await socket.recv())
            if message["type"] == kind:
                return message


@pytest.mark.parametrize("frontend", ["web", "mobile"])
async def test_sse_clients_receive_quotes_that_move(
    gateway: RunningGateway, alice: dict[str, str], frontend: str
) -> None:
    path = f"/{frontend}/v1/stream/quotes?symbols=AAPL,MSFT"
    async with sse(gateway.client, path, **alice, **{"accept-encoding": "gzip"}) as stream:
        quotes = await stream.quotes(8)
        headers = stream.response.headers

    assert headers["content-type"].startswith("text/event-stream")
    assert "content-encoding" not in headers
    assert headers["cache-control"] == "no-store"
    assert stream.retry == STREAMS.client_retry_ms
    assert {quote.data["symbol"] for quote in quotes} == {"AAPL", "MSFT"}
    aapl = [quote for quote in quotes if quote.data["symbol"] == "AAPL"]
    assert all(quote.id == str(_step(quote.data["timestamp"])) for quote in quotes)
    ids = [int(quote.id or 0) for quote in aapl]
    assert ids == sorted(ids) and len(set(ids)) >= 3, ids
    first, last = aapl[0].data, aapl[-1].data
    moved = {key for key in ("price", "bid", "ask", "volume") if first[key] != last[key]}
    assert moved, f"AAPL did not move over {len(aapl)} ticks"
    assert set(first) == {
        "symbol",
        "price",
        "change",
        "change_pct",
        "bid",
        "ask",
        "volume",
        "timestamp",
    }


async def test_heartbeat_comments_keep_the_stream_open(
    gateway: RunningGateway, alice: dict[str, str]
) -> None:
    async with sse(gateway.client, "/web/v1/stream/quotes?symbols=KO", **alice) as stream:
        await stream.quotes(3)

    assert "heartbeat" in stream.comments


async def test_last_event_id_resumes_with_the_latest_quote_per_symbol(
    gateway: RunningGateway, alice: dict[str, str]
) -> None:
    path = "/web/v1/stream/quotes?symbols=JPM,XOM"
    # Another client keeps the symbols followed, so the hub holds their latest quotes.
    async with sse(gateway.client, path, **alice) as holder:
        async with sse(gateway.client, path, **alice) as first:
            seen = await first.quotes(2)
        last_seen = max(int(quote.id or 0) for quote in seen)
        # A newer tick arrives while the client is away.
        while max(int(q.id or 0) for q in await holder.quotes(1)) <= last_seen:
            pass
        async with sse(gateway.client, path, **alice, **{"last-event-id": str(last_seen)}) as back:
            resumed = await back.quotes(2, timeout_s=0.9)
        latest = max(int(q.id or 0) for q in await holder.quotes(2))
        async with sse(
            gateway.client, path, **alice, **{"last-event-id": str(latest + 5)}
        ) as ahead:
            with pytest.raises(TimeoutError):
                await ahead.quotes(1, timeout_s=0.3)

    assert {quote.data["symbol"] for quote in resumed} == {"JPM", "XOM"}
    assert all(int(quote.id or 0) > last_seen for quote in resumed)


async def test_two_clients_on_one_symbol_share_one_upstream_subscription(
    gateway: RunningGateway, alice: dict[str, str], platform: Platform
) -> None:
    symbol = "PFE"

    async def active() -> int:
        return (await upstream_subscriptions(platform))["active"].get(symbol, 0)

    async with httpx.AsyncClient(timeout=5) as control:
        for url in platform.urls["market-data"]:
            await control.delete(f"{url}/stream/subscriptions")
    async with (
        sse(gateway.client, f"/web/v1/stream/quotes?symbols={symbol}", **alice) as sse_client,
        connect(ws_url(gateway), additional_headers=alice) as socket,
    ):
        await socket.send(orjson.dumps({"type": "subscribe", "symbols": [symbol]}).decode())
        subscribed = await receive(socket, "subscribed")
        ws_quote = await receive(socket, "quote")
        sse_quote = (await sse_client.quotes(1))[0]
        during = await upstream_subscriptions(platform)
    await eventually(lambda: _is(active(), 0))

    assert subscribed["symbols"] == [symbol]
    assert ws_quote["quote"]["symbol"] == sse_quote.data["symbol"] == symbol
    assert during["subscribes"].get(symbol) == 1
    assert during["active"].get(symbol) == 1


async def test_websocket_subscribe_unsubscribe_and_typed_errors(
    gateway: RunningGateway, alice: dict[str, str]
) -> None:
    async with connect(ws_url(gateway), additional_headers=alice) as socket:
        await socket.send('{"type": "subscribe", "symbols": ["AAPL", "NVDA"]}')
        subscribed = await receive(socket, "subscribed")
        quotes = [await receive(socket, "quote") for _ in range(6)]
        await socket.send('{"type": "unsubscribe", "symbols": ["AAPL"]}')
        after = await receive(socket, "subscribed")
        await socket.send('{"type": "subscribe", "symbols": ["not a ticker"]}')
        bad_symbol = await receive(socket, "error")
        await socket.send('{"type": "buy", "symbols": ["AAPL"]}')
        bad_type = await receive(socket, "error")
        later = [await receive(socket, "quote") for _ in range(3)]

    assert subscribed["symbols"] == ["AAPL", "NVDA"]
    assert {quote["quote"]["symbol"] for quote in quotes} == {"AAPL", "NVDA"}
    nvda = [int(q["id"]) for q in quotes + later if q["quote"]["symbol"] == "NVDA"]
    assert len(set(nvda)) >= 3 and nvda == sorted(nvda)
    assert after["symbols"] == ["NVDA"]
    assert {quote["quote"]["symbol"] for quote in later} == {"NVDA"}
    assert "symbols.0" in bad_symbol["detail"]
    assert "subscribe or unsubscribe" in bad_type["detail"]


async def test_connects_need_a_signed_in_user(gateway: RunningGateway) -> None:
    anonymous = await gateway.client.get("/web/v1/stream/quotes?symbols=AAPL")
    bad_list = await gateway.client.get(
        "/web/v1/stream/quotes?symbols=aapl", headers={"authorization": "Bearer x.y.z"}
    )
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with connect(ws_url(gateway)):
            pass

    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == "application/problem+json"
    assert bad_list.status_code in (401, 422)
    assert refused.value.response.status_code == 401
    assert orjson.loads(refused.value.response.body)["status"] == 401


async def test_an_expired_token_closes_its_streams(
    gateway: RunningGateway, platform: Platform
) -> None:
    token = await dev_token(platform.urls["identity"][0], username="alice", ttl_s=2)
    headers = {"authorization": f"Bearer {token}"}
    async with (
        sse(gateway.client, "/web/v1/stream/quotes?symbols=AAPL", **headers) as stream,
        connect(ws_url(gateway), additional_headers=headers) as socket,
    ):
        await socket.send('{"type": "subscribe", "symbols": ["AAPL"]}')
        closing = await stream.until("status", timeout_s=8)
        with pytest.raises(EOFError):
            await stream.next_event(timeout_s=2)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(8):
                while True:
                    await socket.recv()
        close_code = socket.close_code

    assert closing.data == {
        "status": "closing",
        "detail": "The credential expired; reconnect with a fresh one.",
        "reason": "credential-expired",
    }
    assert close_code == 4401


async def test_a_revoked_session_closes_its_stream(gateway: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, follow_redirects=True) as browser:
        session = (await browser_login(browser, username="carol")).response.json()
        async with sse(browser, "/web/v1/stream/quotes?symbols=MSFT") as stream:
            await stream.quotes(1)
            logout = await browser.post(
                "/auth/logout", headers={"X-CSRF-Token": session["csrf_token"]}
            )
            closing = await stream.until("status", timeout_s=5)
            with pytest.raises(EOFError):
                await stream.next_event(timeout_s=2)

    assert logout.status_code == 204
    assert closing.data["reason"] == "credential-revoked"


async def test_streams_per_principal_are_capped(
    gateway: RunningGateway, alice: dict[str, str], platform: Platform
) -> None:
    path = "/web/v1/stream/quotes?symbols=AAPL"
    bob = await bearer_headers(platform, username="bob")
    async with sse(gateway.client, path, **alice), sse(gateway.client, path, **alice):
        async with sse(gateway.client, path, **alice):
            refused = await gateway.client.get(path, headers=alice)
            with pytest.raises(websockets.InvalidStatus) as socket_refused:
                async with connect(ws_url(gateway), additional_headers=alice):
                    pass
            async with sse(gateway.client, path, **bob) as other:
                other_quote = await other.quotes(1)
        # One closed: room for one again.
        async with sse(gateway.client, path, **alice) as again:
            again_quote = await again.quotes(1)

    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "5"
    assert "At most 3 open streams" in refused.json()["detail"]
    assert socket_refused.value.response.status_code == 429
    assert other_quote and again_quote


async def test_an_upstream_disconnect_is_a_status_event_then_recovery(
    gateway: RunningGateway, alice: dict[str, str], platform: Platform
) -> None:
    async with sse(gateway.client, "/web/v1/stream/quotes?symbols=CVX", **alice) as stream:
        before = await stream.quotes(1)
        await upstream_outage(platform, seconds=1.0)
        lost = await stream.until("status", timeout_s=5)
        back = await stream.until("status", timeout_s=10)
        after = await stream.quotes(2)

    assert lost.data["status"] == "reconnecting"
    assert back.data["status"] == "live"
    assert int(after[-1].id or 0) > int(before[0].id or 0)
    assert after[-1].data["symbol"] == "CVX"


async def _is(value: Any, expected: object) -> bool:
    return bool(await value == expected)


def _step(timestamp: str) -> int:
    from datetime import datetime

    return int(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp())


async def test_streams_end_cleanly_when_the_process_drains(
    stream_settings: Settings, alice: dict[str, str]
) -> None:
    drain = Drain()
    async with (
        running_gateway(stream_settings, drain=drain) as gateway,
        sse(gateway.client, "/web/v1/stream/quotes?symbols=AAPL", **alice) as stream,
        connect(ws_url(gateway), additional_headers=alice) as socket,
    ):
        await socket.send('{"type": "subscribe", "symbols": ["AAPL"]}')
        await stream.quotes(1)
        drain.begin()
        closing = await stream.until("status", timeout_s=5)
        with pytest.raises(EOFError):
            await stream.next_event(timeout_s=2)
        with pytest.raises(websockets.ConnectionClosed):
            async with asyncio.timeout(5):
                while True:
                    await socket.recv()
        refused = await gateway.client.get("/web/v1/stream/quotes?symbols=AAPL", headers=alice)

    assert closing.data["reason"] == "draining"
    assert socket.close_code == 1012
    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "1"


async def test_partner_api_keys_do_not_open_user_streams(gateway: RunningGateway) -> None:
    partner = await create_partner(gateway.client)

    refused = await gateway.client.get(
        "/web/v1/stream/quotes?symbols=AAPL", headers=partner.headers
    )
    with pytest.raises(websockets.InvalidStatus) as socket_refused:
        async with connect(ws_url(gateway), additional_headers=partner.headers):
            pass

    assert refused.status_code == 403
    assert refused.headers["content-type"] == "application/problem+json"
    assert socket_refused.value.response.status_code == 403


async def test_streams_per_process_are_capped(
    settings: Settings, alice: dict[str, str], platform: Platform
) -> None:
    one = StreamSettings(max_per_process=1)
    bob = await bearer_headers(platform, username="bob")
    path = "/mobile/v1/stream/quotes?symbols=AAPL"
    async with (
        running_gateway(settings.model_copy(update={"streams": one})) as gateway,
        sse(gateway.client, path, **alice),
    ):
        refused = await gateway.client.get(path, headers=bob)

    assert refused.status_code == 503
    assert refused.headers["retry-after"] == "5"


async def test_the_asyncapi_document_describes_every_message(gateway: RunningGateway) -> None:
    document = (await gateway.client.get("/asyncapi/quotes.json")).json()

    assert document["asyncapi"].startswith("3.")
    channels = document["channels"]
    assert {c["address"].split("?")[0] for c in channels.values()} == {
        "/web/v1/stream/quotes",
        "/mobile/v1/stream/quotes",
        "/web/v1/ws/quotes",
    }
    socket_messages = channels["webSocket"]["messages"]
    assert set(socket_messages) == {
        "quote",
        "status",
        "subscribed",
        "error",
        "subscribe",
        "unsubscribe",
    }
    subscribe = socket_messages["subscribe"]["payload"]
    assert subscribe["properties"]["symbols"]["maxItems"] == 50
    quote_ref = socket_messages["quote"]["payload"]["properties"]["quote"]["$ref"]
    assert quote_ref.removeprefix("#/components/schemas/") in document["components"]["schemas"]


async def test_connect_attempts_count_against_the_rate_limits(
    settings: Settings, platform: Platform
) -> None:
    limits = settings.rate_limit.model_copy(update={"user_limit": 2, "user_period_s": 60.0})
    limited = settings.model_copy(update={"streams": STREAMS, "rate_limit": limits})
    carol = await bearer_headers(platform, username="carol")
    path = "/web/v1/stream/quotes?symbols=AAPL"
    async with running_gateway(limited) as gateway:
        async with sse(gateway.client, path, **carol):
            pass
        # The second connect, a WebSocket, is the second of the two a minute allows.
        async with connect(ws_url(gateway), additional_headers=carol):
            pass
        refused = await gateway.client.get(path, headers=carol)
        with pytest.raises(websockets.InvalidStatus) as socket_refused:
            async with connect(ws_url(gateway), additional_headers=carol):
                pass

    assert refused.status_code == 429
    assert "retry-after" in refused.headers
    assert socket_refused.value.response.status_code == 429


async def test_a_session_cookie_opens_a_websocket_only_from_this_site(
    gateway: RunningGateway,
) -> None:
    async with httpx.AsyncClient(base_url=gateway.url, follow_redirects=True) as browser:
        await browser_login(browser, username="carol")
        cookie = "; ".join(f"{name}={value}" for name, value in browser.cookies.items())
    host = gateway.url.removeprefix("http://")

    with pytest.raises(websockets.InvalidStatus) as cross_site:
        async with connect(
            ws_url(gateway), additional_headers={"cookie": cookie}, origin="http://evil.example"
        ):
            pass
    async with connect(
        ws_url(gateway), additional_headers={"cookie": cookie}, origin=f"http://{host}"
    ) as socket:
        await socket.send('{"type": "subscribe", "symbols": ["AAPL"]}')
        subscribed = await receive(socket, "subscribed")

    assert cross_site.value.response.status_code == 403
    assert subscribed["symbols"] == ["AAPL"]


async def test_websocket_connects_are_limited_per_client_behind_a_trusted_proxy(
    settings: Settings,
) -> None:
    # The test client is the proxy: what it forwards names the client whose limits count.
    limits = settings.rate_limit.model_copy(update={"anonymous_limit": 2})
    http = settings.http.model_copy(update={"trusted_proxies": [ip_network("127.0.0.1/32")]})
    limited = settings.model_copy(update={"streams": STREAMS, "rate_limit": limits, "http": http})
    bad = {"authorization": "Bearer not-a-token"}

    async def connect_status(gateway: RunningGateway, client: str) -> int:
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with connect(
                ws_url(gateway), additional_headers={**bad, "x-forwarded-for": client}
            ):
                pass
        status: int = refused.value.response.status_code
        return status

    async with running_gateway(limited) as gateway:
        first = [await connect_status(gateway, "203.0.113.7") for _ in range(3)]
        other = await connect_status(gateway, "203.0.113.8")

    assert first == [401, 401, 429]
    assert other == 401
