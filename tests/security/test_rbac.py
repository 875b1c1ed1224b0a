"""Who may call what: every kind of caller against every class of route, isolation of
accounts, and the security requirements the OpenAPI documents declare."""

import uuid
from typing import Any

import httpx
import pytest

from app.security.principal import Principal
from app.security.rbac import granted_scopes
from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN, create_partner, link_client
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.identity import bearer_headers

ROUTES = ["web read", "web write", "mobile read", "partner quotes", "partner orders", "admin"]
OK = "ok"

# Expected outcome per caller and route class: OK, 401 or 403.
MATRIX: dict[str, dict[str, Any]] = {
    "anonymous": dict.fromkeys(ROUTES, 401),
    "viewer": {
        "web read": OK,
        "web write": 403,
        "mobile read": OK,
        "partner quotes": 403,
        "partner orders": 403,
        "admin": 403,
    },
    "trader": {
        "web read": OK,
        "web write": OK,
        "mobile read": OK,
        "partner quotes": 403,
        "partner orders": 403,
        "admin": 403,
    },
    "admin": {
        "web read": OK,
        "web write": 403,
        "mobile read": OK,
        "partner quotes": 403,
        "partner orders": 403,
        "admin": OK,
    },
    "partner key": {
        "web read": 403,
        "web write": 403,
        "mobile read": 403,
        "partner quotes": OK,
        "partner orders": OK,
        "admin": 403,
    },
    "partner key, quotes only": {
        "web read": 403,
        "web write": 403,
        "mobile read": 403,
        "partner quotes": OK,
        "partner orders": 403,
        "admin": 403,
    },
    # The client is linked to the "partner key" consumer (unlinked: test_linked_clients.py).
    "partner client token": {
        "web read": 403,
        "web write": 403,
        "mobile read": 403,
        "partner quotes": OK,
        "partner orders": OK,
        "admin": 403,
    },
    "partner client token, quotes only": {
        "web read": 403,
        "web write": 403,
        "mobile read": 403,
        "partner quotes": OK,
        "partner orders": 403,
        "admin": 403,
    },
    "bootstrap token": {
        # Not a JWT: the frontends refuse it as an invalid bearer token.
        "web read": 401,
        "web write": 401,
        "mobile read": 401,
        "partner quotes": 401,
        "partner orders": 401,
        "admin": OK,
    },
}


def order(**extra: Any) -> dict[str, Any]:
    return {"symbol": "MSFT", "side": "buy", "type": "market", "quantity": 1, **extra}


async def call(client: httpx.AsyncClient, route: str, headers: dict[str, str]) -> httpx.Response:
    keyed = {**headers, "Idempotency-Key": uuid.uuid4().hex}
    if route == "web read":
        return await client.get("/web/v1/orders", headers=headers)
    if route == "web write":
        # Cancelling an order that does not exist: past authorization, the answer is 404.
        return await client.delete("/web/v1/orders/ord_none", headers=headers)
    if route == "mobile read":
        return await client.get("/mobile/v1/quotes?symbols=AAPL", headers=headers)
    if route == "partner quotes":
        return await client.get("/partner/v1/quotes?symbols=AAPL", headers=headers)
    if route == "partner orders":
        body = order(account_id="ACC-2001")
        return await client.post("/partner/v1/orders", json=body, headers=keyed)
    return await client.get("/admin/v1/plans", headers=headers)


def allowed(route: str, response: httpx.Response) -> bool:
    expected = {"web write": 404, "partner orders": 201}.get(route, 200)
    return response.status_code == expected


async def credentials(gateway: RunningGateway, platform: Platform) -> dict[str, dict[str, str]]:
    full = await create_partner(gateway.client, account_ids=("ACC-2001",))
    await link_client(gateway.client, full.consumer_id)
    quotes_only = await create_partner(gateway.client, scopes=("quotes:read",))
    return {
        "anonymous": {},
        "viewer": await bearer_headers(platform, username="bob"),
        "trader": await bearer_headers(platform, username="alice"),
        "admin": await bearer_headers(platform, username="carol"),
        "partner key": full.headers,
        "partner key, quotes only": quotes_only.headers,
        "partner client token": await bearer_headers(platform, client_id="partner-acme"),
        "partner client token, quotes only": await bearer_headers(
            platform, client_id="partner-acme", scope="quotes:read"
        ),
        "bootstrap token": ADMIN,
    }


async def test_role_and_scope_matrix(gateway: RunningGateway, platform: Platform) -> None:
    callers = await credentials(gateway, platform)
    mismatches = []
    for caller, expectations in MATRIX.items():
        for route, expected in expectations.items():
            response = await call(gateway.client, route, callers[caller])
            if expected == OK:
                if not allowed(route, response):
                    mismatches.append((caller, route, response.status_code, response.text[:200]))
                continue
            if response.status_code != expected:
                mismatches.append((caller, route, response.status_code, response.text[:200]))
                continue
            assert response.headers["content-type"] == "application/problem+json"
            if expected == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
    assert mismatches == []


async def test_forbidden_names_the_missing_scope(
    gateway: RunningGateway, platform: Platform
) -> None:
    bob = await bearer_headers(platform, username="bob")
    response = await gateway.client.delete("/web/v1/orders/ord_none", headers=bob)
    assert response.status_code == 403
    assert response.json()["missing_scopes"] == ["orders"]
    assert "orders" in response.json()["detail"]

    quotes_only = await create_partner(gateway.client, scopes=("quotes:read",))
    response = await gateway.client.get("/partner/v1/candles/AAPL", headers=quotes_only.headers)
    assert response.status_code == 403
    assert response.json()["missing_scopes"] == ["candles:read"]


async def test_anonymous_gets_a_challenge_naming_the_credentials(gateway: RunningGateway) -> None:
    partner = await gateway.client.get("/partner/v1/quotes?symbols=AAPL")
    assert partner.status_code == 401
    assert 'ApiKey header="X-API-Key"' in partner.headers["www-authenticate"]
    web = await gateway.client.get("/web/v1/orders")
    assert web.status_code == 401
    assert web.headers["www-authenticate"] == 'Bearer realm="stock-bot"'


async def test_users_see_only_their_own_account(gateway: RunningGateway, platform: Platform):
    orders = platform.process("orders")
    orders.reset_stats()
    for username in ("alice", "bob"):
        headers = await bearer_headers(platform, username=username)
        assert (await gateway.client.get("/web/v1/orders", headers=headers)).status_code == 200
    requested = {path for path in orders.stats()["requests"] if "/accounts/" in path}
    assert requested == {"GET /accounts/ACC-1001/orders", "GET /accounts/ACC-1002/orders"}


async def test_partner_orders_only_in_linked_accounts(gateway: RunningGateway) -> None:
    partner = await create_partner(gateway.client, account_ids=("ACC-2001",))
    headers = {**partner.headers, "Idempotency-Key": uuid.uuid4().hex}
    response = await gateway.client.post(
        "/partner/v1/orders", json=order(account_id="ACC-2002"), headers=headers
    )
    assert response.status_code == 403
    assert "ACC-2002" in response.json()["detail"]
    linked = await gateway.client.post(
        "/partner/v1/orders",
        json=order(account_id="ACC-2001"),
        headers={**partner.headers, "Idempotency-Key": uuid.uuid4().hex},
    )
    assert linked.status_code == 201, linked.text


async def test_a_principal_without_an_account_is_403_on_account_routes(
    gateway: RunningGateway, platform: Platform
) -> None:
    # A client-credentials token is a consumer, not a user: the web API refuses it outright.
    token = await bearer_headers(platform, client_id="partner-acme")
    response = await gateway.client.get("/web/v1/orders", headers=token)
    assert response.status_code == 403


@pytest.mark.parametrize(
    ("roles", "scopes", "expected"),
    [
        ({"viewer"}, set(), {"read"}),
        ({"trader"}, {"openid"}, {"read", "orders", "bots", "openid"}),
        ({"admin", "viewer"}, set(), {"admin", "read"}),
        ({"partner"}, {"quotes:read"}, {"quotes:read"}),
    ],
)
def test_roles_grant_scopes(roles: set[str], scopes: set[str], expected: set[str]) -> None:
    principal = Principal(
        subject="s",
        kind="user",
        credential="bearer",
        roles=frozenset(roles),
        scopes=frozenset(scopes),
    )
    assert granted_scopes(principal) == expected


async def test_openapi_declares_schemes_and_scopes(gateway: RunningGateway) -> None:
    web = (await gateway.client.get("/web/v1/openapi.json")).json()
    assert {"BearerToken", "SessionCookie"} <= set(web["components"]["securitySchemes"])
    assert "ApiKey" not in web["components"]["securitySchemes"]
    place = web["paths"]["/web/v1/orders"]["post"]
    assert {"BearerToken": ["read", "orders"]} in place["security"]
    assert {"SessionCookie": ["read", "orders"]} in place["security"]
    assert {"401", "403"} <= set(place["responses"])
    listing = web["paths"]["/web/v1/orders"]["get"]
    assert {"BearerToken": ["read"]} in listing["security"]

    partner = (await gateway.client.get("/partner/v1/openapi.json")).json()
    schemes = partner["components"]["securitySchemes"]
    assert schemes["ApiKey"] == {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": schemes["ApiKey"]["description"],
    }
    quotes = partner["paths"]["/partner/v1/quotes"]["get"]
    assert {"ApiKey": ["quotes:read"]} in quotes["security"]
    orders = partner["paths"]["/partner/v1/orders"]["post"]
    assert {"ApiKey": ["orders:write"]} in orders["security"]

    # The admin document itself needs the admin role.
    admin = (await gateway.client.get("/admin/v1/openapi.json", headers=ADMIN)).json()
    plans = admin["paths"]["/admin/v1/plans"]["get"]
    assert {"AdminToken": ["admin"]} in plans["security"]
