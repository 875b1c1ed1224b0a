"""The admin guard: only the configured bootstrap token gets through."""

import httpx

from app.settings import Settings
from tests.fixtures.gateway import RunningGateway, running_gateway

ADMIN_PATHS = [
    ("GET", "/admin/v1/services"),
    ("POST", "/admin/v1/services"),
    ("GET", "/admin/v1/services/market-data"),
    ("PATCH", "/admin/v1/services/market-data"),
    ("DELETE", "/admin/v1/services/market-data"),
    ("GET", "/admin/v1/services/market-data/instances"),
    ("POST", "/admin/v1/services/market-data/instances"),
    ("PATCH", "/admin/v1/services/market-data/instances/1"),
    ("DELETE", "/admin/v1/services/market-data/instances/1"),
]


def assert_unauthorized(response: httpx.Response) -> str:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["type"] == "/problems/unauthorized"
    detail: str = response.json()["detail"]
    return detail


async def test_every_admin_operation_needs_the_token(gateway: RunningGateway) -> None:
    for method, path in ADMIN_PATHS:
        # An invalid body must not get a 422 out of an unauthenticated caller.
        response = await gateway.client.request(method, path, json={"name": "?"})
        assert_unauthorized(response)
        assert response.headers["www-authenticate"] == "Bearer"
    # Nothing was deleted along the way.
    listed = await gateway.client.get(
        "/admin/v1/services", headers={"Authorization": "Bearer test-admin-token"}
    )
    assert listed.status_code == 200
    assert "market-data" in [s["name"] for s in listed.json()["services"]]


async def test_wrong_token_or_scheme_is_refused(gateway: RunningGateway) -> None:
    for header in [
        "Bearer test-admin-token-not",
        "Bearer test-admin-toke",
        "Bearer",
        "Basic dGVzdC1hZG1pbi10b2tlbg==",
        "test-admin-token",
    ]:
        response = await gateway.client.get("/admin/v1/services", headers={"Authorization": header})
        assert_unauthorized(response)
    deleted = await gateway.client.delete(
        "/admin/v1/services/market-data", headers={"Authorization": "Bearer wrong"}
    )
    assert_unauthorized(deleted)
    assert deleted.headers["www-authenticate"] == 'Bearer error="invalid_token"'


async def test_the_right_token_is_let_through(gateway: RunningGateway) -> None:
    response = await gateway.client.get(
        "/admin/v1/services/market-data", headers={"Authorization": "Bearer test-admin-token"}
    )
    assert response.status_code == 200
    assert response.json()["name"] == "market-data"


async def test_without_a_configured_token_the_admin_api_is_off(settings: Settings) -> None:
    async with running_gateway(settings.model_copy(update={"admin_token": None})) as gw:
        for token in ["test-admin-token", "None"]:
            response = await gw.client.get(
                "/admin/v1/services", headers={"Authorization": f"Bearer {token}"}
            )
            assert_unauthorized(response)
        assert "disabled" in assert_unauthorized(
            await gw.client.get("/admin/v1/services", headers={"Authorization": "Bearer x"})
        )
    async with running_gateway(settings.model_copy(update={"admin_token": ""})) as gw:
        response = await gw.client.get("/admin/v1/services", headers={"Authorization": "Bearer x"})
        assert_unauthorized(response)
