"""Admin CRUD over plans, consumers and their API keys, on SQLite and on PostgreSQL."""

from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.settings import Settings
from app.store.database import create_engine
from app.store.models import ApiKey
from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN, create_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    return body


async def test_plan_crud(admin: RunningGateway) -> None:
    body = {"name": "gold", "rate_per_second": 20, "quota_per_day": 5000, "scopes": ["quotes:read"]}
    created = await admin.client.post("/admin/v1/plans", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["quota_per_month"] is None
    problem(await admin.client.post("/admin/v1/plans", json=body), 409)

    changed = await admin.client.patch(
        "/admin/v1/plans/gold", json={"quota_per_day": None, "quota_per_month": 90000}
    )
    assert changed.status_code == 200
    assert (changed.json()["quota_per_day"], changed.json()["quota_per_month"]) == (None, 90000)
    assert changed.json()["rate_per_second"] == 20

    names = [p["name"] for p in (await admin.client.get("/admin/v1/plans")).json()["plans"]]
    assert names == ["gold"]
    assert (await admin.client.delete("/admin/v1/plans/gold")).status_code == 204
    problem(await admin.client.get("/admin/v1/plans/gold"), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"name": "Bad Name"}, "body.name"),
        ({"name": "silver", "scopes": ["admin"]}, "body.scopes.0"),
        ({"name": "silver", "quota_per_day": 0}, "body.quota_per_day"),
        ({"name": "silver", "extra": 1}, "body.extra"),
    ],
)
async def test_plan_validation_names_the_field(
    admin: RunningGateway, body: dict[str, Any], field: str
) -> None:
    response = problem(await admin.client.post("/admin/v1/plans", json=body), 422)
    assert field in [e["field"] for e in response["errors"]]


async def test_consumer_crud_and_plan_in_use(admin: RunningGateway) -> None:
    assert (await admin.client.post("/admin/v1/plans", json={"name": "basic"})).status_code == 201
    missing_plan = {"name": "acme", "plan": "nope", "account_ids": ["ACC-2001"]}
    problem(await admin.client.post("/admin/v1/consumers", json=missing_plan), 404)
    body = {"name": "acme", "plan": "basic", "account_ids": ["ACC-2001", "ACC-2001"]}
    created = await admin.client.post("/admin/v1/consumers", json=body)
    assert created.status_code == 201, created.text
    consumer = created.json()
    assert consumer["account_ids"] == ["ACC-2001"] and consumer["plan"] == "basic"
    problem(await admin.client.post("/admin/v1/consumers", json=body), 409)
    bad_account = {"name": "other", "account_ids": ["acc 1"]}
    problem(await admin.client.post("/admin/v1/consumers", json=bad_account), 422)

    in_use = problem(await admin.client.delete("/admin/v1/plans/basic"), 409)
    assert in_use["consumers"] == 1

    path = f"/admin/v1/consumers/{consumer['consumer_id']}"
    changed = await admin.client.patch(path, json={"plan": None, "account_ids": ["ACC-2002"]})
    assert changed.status_code == 200
    assert (changed.json()["plan"], changed.json()["account_ids"]) == (None, ["ACC-2002"])
    assert (await admin.client.delete("/admin/v1/plans/basic")).status_code == 204
    assert (await admin.client.delete(path)).status_code == 204
    problem(await admin.client.get(path), 404)


async def test_keys_of_a_deleted_consumer_stop_working(
    admin: RunningGateway, store_url: str
) -> None:
    partner = await create_partner(admin.client)
    # Without the admin client's Authorization header, which would be checked first.
    async with httpx.AsyncClient(base_url=admin.url, headers=partner.headers) as client:
        assert (await client.get("/partner/v1/usage")).status_code == 200
        deleted = await admin.client.delete(f"/admin/v1/consumers/{partner.consumer_id}")
        assert deleted.status_code == 204
        assert (await client.get("/partner/v1/usage")).status_code == 401
    engine = create_engine(store_url)
    try:
        async with engine.connect() as connection:
            remaining = (await connection.execute(select(ApiKey.key_id))).all()
    finally:
        await engine.dispose()
    assert remaining == []


async def test_key_operations_on_unknown_things_are_404(admin: RunningGateway) -> None:
    problem(await admin.client.get("/admin/v1/consumers/999/keys"), 404)
    problem(await admin.client.post("/admin/v1/consumers/999/keys", json={}), 404)
    partner = await create_partner(admin.client)
    problem(await admin.client.delete(f"/admin/v1/consumers/{partner.consumer_id}/keys/999"), 404)
    revoke = f"/admin/v1/consumers/{partner.consumer_id}/keys/{partner.key_id}"
    assert (await admin.client.delete(revoke)).status_code == 204
    # Revoking twice is harmless; the first revocation time stays.
    first = (await admin.client.get(f"/admin/v1/consumers/{partner.consumer_id}/keys")).json()
    assert (await admin.client.delete(revoke)).status_code == 204
    second = (await admin.client.get(f"/admin/v1/consumers/{partner.consumer_id}/keys")).json()
    assert first == second and first["keys"][0]["revoked_at"] is not None


async def test_admin_role_user_may_manage_consumers(
    settings: Settings, platform: Platform, store_url: str
) -> None:
    # The bootstrap token is off: only an admin's access token opens the admin API.
    no_token = settings.model_copy(update={"database_url": store_url, "admin_token": None})
    async with running_gateway(no_token) as gw:
        carol = await bearer_headers(platform, username="carol")
        created = await gw.client.post("/admin/v1/plans", json={"name": "p1"}, headers=carol)
        assert created.status_code == 201, created.text
        alice = await bearer_headers(platform, username="alice")
        refused = problem(await gw.client.get("/admin/v1/plans", headers=alice), 403)
        assert refused["missing_roles"] == ["admin"]
        problem(await gw.client.get("/admin/v1/plans", headers=ADMIN), 401)
