"""Token introspection on the routes that place or cancel orders
(`GATEWAY_IDENTITY__INTROSPECT_ORDERS`): a token revoked at the provider stops moving money
once the cached answer ages out; the provider's silence stops orders too (503); reads and
API keys are never introspected; with the setting off (the default) a revoked token keeps
working until it expires."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from app.errors import ServiceUnavailable, Unauthorized
from app.security.introspection import TokenIntrospection
from app.security.jwt import TrustedIssuer
from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.consumers import linked_client_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import dev_token, identity_settings
from tests.fixtures.platform_control import PlatformControl, platform_control
from tests.fixtures.problems import assert_problem

WEB_CLIENT = ("stockbot-web", "web-secret")
PARTNER_CLIENT = ("partner-acme", "acme-secret")
# A buy limit far below the market rests on the book.
RESTING_BUY = {"symbol": "AAPL", "side": "buy", "type": "limit", "quantity": 1, "limit_price": 1.0}
INTROSPECT = "POST /introspect"


def introspecting(settings: Settings, **identity: Any) -> Settings:
    changed = settings.identity.model_copy(update={"introspect_orders": True, **identity})
    return settings.model_copy(update={"identity": changed})


@pytest.fixture
async def control(platform: Platform) -> AsyncIterator[PlatformControl]:
    async with platform_control(platform) as steering:
        yield steering


async def user_token(platform: Platform) -> str:
    return await dev_token(platform.urls["identity"][0], username="alice")


async def revoke(platform: Platform, token: str, client: tuple[str, str] = WEB_CLIENT) -> None:
    """Revoke the access token at the provider, as a logout or an admin there would."""
    async with httpx.AsyncClient(base_url=platform.urls["identity"][0], timeout=5) as provider:
        response = await provider.post("/revoke", data={"token": token}, auth=client)
    assert response.status_code == 200, response.text


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex}


async def orders_sent(control: PlatformControl) -> int:
    """Order placements and cancels that reached the orders service."""
    counts = await control.requests("orders")
    return sum(n for route, n in counts.items() if route.split()[0] in {"POST", "DELETE"})


async def introspections(control: PlatformControl) -> int:
    return (await control.requests("identity")).get(INTROSPECT, 0)


async def money_call(gateway: RunningGateway, route: str, token: str) -> httpx.Response:
    client, headers = gateway.client, bearer(token)
    if route == "web order":
        return await client.post("/web/v1/orders", json=RESTING_BUY, headers=headers)
    if route == "web cancel":
        return await client.delete("/web/v1/orders/ord_none", headers=headers)
    if route == "mobile order":
        return await client.post("/mobile/v1/orders", json=RESTING_BUY, headers=headers)
    order = {**RESTING_BUY, "account_id": "ACC-2001"}
    return await client.post("/partner/v1/orders", json=order, headers=headers)


async def test_a_revoked_token_stops_placing_orders_once_the_cached_answer_ages_out(
    settings: Settings, platform: Platform, control: PlatformControl
) -> None:
    token = await user_token(platform)
    await control.reset_stats("orders", "identity")
    async with running_gateway(introspecting(settings, introspection_cache_s=1.0)) as gateway:
        first = await money_call(gateway, "web order", token)
        await revoke(platform, token)
        cached = await money_call(gateway, "web order", token)
        asked = await introspections(control)
        await asyncio.sleep(1.2)
        refused = await money_call(gateway, "web order", token)

    assert (first.status_code, cached.status_code) == (201, 201), cached.text
    # The trade-off: within the cache's seconds the provider is not asked again.
    assert asked == 1
    problem = assert_problem(refused, 401)
    assert "no longer active" in problem["detail"]
    assert refused.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert token not in refused.text
    assert await orders_sent(control) == 2
    assert await introspections(control) == 2


@pytest.mark.parametrize("route", ["web order", "web cancel", "mobile order", "partner order"])
async def test_every_route_that_moves_money_refuses_a_revoked_token(
    settings: Settings, platform: Platform, control: PlatformControl, route: str
) -> None:
    identity = platform.urls["identity"][0]
    partner = route == "partner order"
    async with running_gateway(introspecting(settings)) as gateway:
        if partner:
            await linked_client_partner(gateway.client)
        mint = {"client_id": "partner-acme"} if partner else {"username": "alice"}
        live, revoked = [await dev_token(identity, **mint) for _ in range(2)]
        await revoke(platform, revoked, PARTNER_CLIENT if partner else WEB_CLIENT)
        await control.reset_stats("orders")

        refused = await money_call(gateway, route, revoked)
        sent_before_live = await orders_sent(control)
        accepted = await money_call(gateway, route, live)

    assert assert_problem(refused, 401)["detail"].endswith(
        "no longer active at the identity provider."
    )
    assert sent_before_live == 0
    # The same call with a live token goes through (a cancel of no such order is the
    # service's 404): the refusal was the revocation's.
    assert accepted.status_code == (404 if route == "web cancel" else 201), accepted.text
    assert await orders_sent(control) == 1


async def test_off_by_default_a_revoked_token_keeps_placing_orders(
    gateway: RunningGateway, platform: Platform, control: PlatformControl
) -> None:
    token = await user_token(platform)
    await revoke(platform, token)
    await control.reset_stats("identity")

    placed = await money_call(gateway, "web order", token)

    assert placed.status_code == 201, placed.text
    assert await introspections(control) == 0


async def test_reads_and_api_keys_are_not_introspected(
    settings: Settings, platform: Platform, control: PlatformControl
) -> None:
    token = await user_token(platform)
    await revoke(platform, token)
    async with running_gateway(introspecting(settings)) as gateway:
        partner = await linked_client_partner(gateway.client)
        await control.reset_stats("identity")
        read = await gateway.client.get("/web/v1/orders", headers=bearer(token))
        order = {**RESTING_BUY, "account_id": "ACC-2001"}
        by_key = await gateway.client.post(
            "/partner/v1/orders",
            json=order,
            headers={**partner.headers, "Idempotency-Key": uuid.uuid4().hex},
        )

    assert read.status_code == 200, read.text
    assert by_key.status_code == 201, by_key.text
    assert await introspections(control) == 0


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"error_rate": 1.0, "error_status": 500}, id="provider errors"),
        pytest.param({"latency_ms": 3000}, id="provider hangs"),
    ],
)
async def test_orders_fail_closed_when_the_provider_cannot_say(
    settings: Settings,
    platform: Platform,
    control: PlatformControl,
    fault: dict[str, Any],
) -> None:
    token = await user_token(platform)
    quick = introspecting(settings, provider_timeout_s=0.5)
    async with running_gateway(quick) as gateway:
        # The token's keys are known; only the introspection endpoint is in trouble.
        assert (await gateway.client.get("/web/v1/orders", headers=bearer(token))).is_success
        await control.fault("identity", paths=["/introspect"], **fault)
        await control.reset_stats("orders")
        refused = await money_call(gateway, "web order", token)
        await control.clear_faults()
        recovered = await money_call(gateway, "web order", token)

    problem = assert_problem(refused, 503)
    assert "identity provider" in problem["detail"]
    assert refused.headers["retry-after"] == "1"
    assert recovered.status_code == 201, recovered.text
    assert await orders_sent(control) == 1


@dataclass
class Presented:
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    cookies: dict[str, str] = field(default_factory=dict)


async def test_the_cache_is_bounded_and_forgets_the_oldest_answer(
    platform: Platform, control: PlatformControl
) -> None:
    identity_url = platform.urls["identity"][0]
    settings = identity_settings(identity_url, introspect_orders=True)
    tokens = [await dev_token(identity_url, username="bob") for _ in range(3)]
    await revoke(platform, tokens[2])
    async with httpx.AsyncClient() as http:
        issuer = TrustedIssuer(settings=settings, http=http)
        introspection = TokenIntrospection(
            issuer=issuer, settings=settings, http=http, max_cached=2
        )

        async def confirm(token: str) -> type[Exception] | None:
            try:
                await introspection.confirm_active(
                    Presented(headers={"authorization": f"Bearer {token}"}), deadline=None
                )
            except (Unauthorized, ServiceUnavailable) as refusal:
                return type(refusal)
            return None

        await control.reset_stats("identity")
        first = [await confirm(token) for token in tokens]
        # Two answers fit: the third pushed out the first, which is asked again.
        again = [await confirm(tokens[2]), await confirm(tokens[0])]

    assert first == [None, None, Unauthorized]
    assert again == [Unauthorized, None]
    assert await introspections(control) == 4
