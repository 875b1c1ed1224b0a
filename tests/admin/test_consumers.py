"""Admin CRUD over plans, consumers and their API keys, on SQLite and on PostgreSQL."""

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
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
from tests.fixtures.redis import PrefixedRedis, prefixed_redis

QUOTES = "/partner/v1/quotes?symbols=AAPL"


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


@pytest.fixture(params=["in-process", "redis"])
async def counting(
    request: pytest.FixtureRequest, settings: Settings, store_url: str
) -> AsyncIterator[tuple[RunningGateway, PrefixedRedis | None]]:
    """An admin gateway on each store, counting quotas and limits in process or in Redis."""
    on_store = settings.model_copy(update={"database_url": store_url})
    async with AsyncExitStack() as stack:
        redis = None
        if request.param == "redis":
            redis = await stack.enter_async_context(prefixed_redis())
            on_store = on_store.model_copy(
                update={"redis_url": redis.url, "redis_prefix": redis.prefix}
            )
        gateway = await stack.enter_async_context(running_gateway(on_store))
        gateway.client.headers.update(ADMIN)
        yield gateway, redis


async def _keys(redis: PrefixedRedis, pattern: str) -> list[bytes]:
    return [key async for key in redis.client.scan_iter(match=redis.prefix + pattern)]


async def test_a_new_consumer_gets_a_new_id_and_none_of_a_deleted_ones_counts(
    counting: tuple[RunningGateway, PrefixedRedis | None],
) -> None:
    admin, redis = counting
    limits = {"quota_per_day": 2, "rate_per_minute": 100, "max_in_flight": 5}
    old = await create_partner(admin.client, plan=limits)
    async with httpx.AsyncClient(base_url=admin.url, headers=old.headers) as client:
        answers = [(await client.get(QUOTES)).status_code for _ in range(3)]
    assert answers == [200, 200, 429]
    if redis is not None:
        assert await _keys(redis, f"quota:{{c{old.consumer_id}}}:*")
        assert await _keys(redis, f"rl:c:{old.consumer_id}:*")

    deleted = await admin.client.delete(f"/admin/v1/consumers/{old.consumer_id}")
    assert deleted.status_code == 204
    new = await create_partner(admin.client, plan=limits)

    assert new.consumer_id > old.consumer_id
    async with httpx.AsyncClient(base_url=admin.url, headers=new.headers) as client:
        first = await client.get(QUOTES)
    assert first.status_code == 200, first.text
    if redis is not None:
        for pattern in ("quota:{c%d}:*", "rl:c:%d:*", "if:c:%d"):
            assert await _keys(redis, pattern % old.consumer_id) == [], pattern


async def test_a_deleted_rules_counts_go_with_it(
    counting: tuple[RunningGateway, PrefixedRedis | None],
) -> None:
    admin, redis = counting
    partner = await create_partner(admin.client)
    rule = {"name": "one-call", "key_by": "consumer", "limit": 1, "period_s": 3600}
    created = await admin.client.post("/admin/v1/rate-limits", json=rule)
    assert created.status_code == 201, created.text
    rule_id = created.json()["rule_id"]
    async with httpx.AsyncClient(base_url=admin.url, headers=partner.headers) as client:
        assert [(await client.get(QUOTES)).status_code for _ in range(2)] == [200, 429]
        if redis is not None:
            assert await _keys(redis, f"rl:r:{rule_id}:*")

        assert (await admin.client.delete(f"/admin/v1/rate-limits/{rule_id}")).status_code == 204
        again = await admin.client.post("/admin/v1/rate-limits", json=rule)

        assert again.status_code == 201 and again.json()["rule_id"] > rule_id
        assert (await client.get(QUOTES)).status_code == 200
    if redis is not None:
        assert await _keys(redis, f"rl:r:{rule_id}:*") == []
