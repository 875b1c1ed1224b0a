"""Admin API over rate limit rules: CRUD and validation on SQLite and on PostgreSQL, and a rule
that every gateway process enforces, lifts and forgets as soon as it is changed."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any, get_args

import httpx
import pytest
from sqlalchemy import select

from app.admin.rate_limits import KeyBy
from app.policy.admission import RULE_KEYS
from app.settings import Settings
from app.store.database import create_engine
from app.store.models import RateLimitRule
from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN, PartnerKey, create_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.problems import assert_problem, field_errors
from tests.fixtures.redis import prefixed_redis

RULES = "/admin/v1/rate-limits"
QUOTES = "/partner/v1/quotes?symbols=AAPL"
RULE = {
    "name": "partner-quotes",
    "key_by": "consumer",
    "route_prefix": "/partner/v1/quotes",
    "limit": 2,
    "period_s": 60,
}


@pytest.fixture
async def shared(settings: Settings, store_url: str) -> AsyncIterator[Settings]:
    """Settings of gateway processes sharing one config store and one Redis."""
    async with prefixed_redis() as redis:
        yield settings.model_copy(
            update={
                "database_url": store_url,
                "redis_url": redis.url,
                "redis_prefix": redis.prefix,
            }
        )


@pytest.fixture
async def admin(shared: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(shared) as gw:
        gw.client.headers.update(ADMIN)
        yield gw


async def stored_rules(store_url: str) -> list[tuple[str, str, int]]:
    """(name, plan_name, limit) of every row, read from the database itself."""
    engine = create_engine(store_url)
    try:
        async with engine.connect() as connection:
            query = select(RateLimitRule.name, RateLimitRule.plan_name, RateLimitRule.limit)
            rows = (await connection.execute(query.order_by(RateLimitRule.rule_id))).all()
    finally:
        await engine.dispose()
    return [(name, plan_name, limit) for name, plan_name, limit in rows]


def test_the_api_offers_exactly_the_keys_the_gateway_enforces() -> None:
    assert set(get_args(KeyBy)) == RULE_KEYS


async def test_rule_crud(admin: RunningGateway, store_url: str) -> None:
    created = await admin.client.post(RULES, json=RULE)
    assert created.status_code == 201, created.text
    rule = created.json()
    path = f"{RULES}/{rule['rule_id']}"
    assert created.headers["location"] == path
    assert {k: rule[k] for k in RULE} == RULE
    assert (rule["plan_name"], rule["burst"], rule["enabled"]) == (None, None, True)
    assert (await admin.client.get(path)).json() == rule
    assert (await admin.client.get(RULES)).json() == {"rules": [rule]}

    changed = await admin.client.patch(path, json={"limit": 5, "burst": 10})
    assert changed.status_code == 200, changed.text
    assert {**rule, "limit": 5, "burst": 10} == changed.json()
    cleared = await admin.client.patch(path, json={"burst": None, "route_prefix": ""})
    assert cleared.status_code == 200, cleared.text
    assert {**rule, "limit": 5, "route_prefix": ""} == cleared.json()
    assert await stored_rules(store_url) == [("partner-quotes", "", 5)]

    assert (await admin.client.delete(path)).status_code == 204
    assert_problem(await admin.client.get(path), 404)
    assert_problem(await admin.client.patch(path, json={"enabled": False}), 404)
    assert_problem(await admin.client.delete(path), 404)
    assert (await admin.client.get(RULES)).json() == {"rules": []}
    assert await stored_rules(store_url) == []


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Partner Quotes"}, "body.name"),
        ({"key_by": "tenant"}, "body.key_by"),
        ({"key_by": "plan"}, "body.plan_name"),
        ({"key_by": "plan", "plan_name": "no-such-plan"}, "body.plan_name"),
        ({"plan_name": "partner-basic"}, "body.plan_name"),
        ({"route_prefix": "partner/v1/quotes"}, "body.route_prefix"),
        ({"route_prefix": "/partner/v1/quotes?symbols=AAPL"}, "body.route_prefix"),
        ({"route_prefix": "/" + "a" * 200}, "body.route_prefix"),
        ({"limit": 0}, "body.limit"),
        ({"limit": None}, "body.limit"),
        ({"period_s": 0}, "body.period_s"),
        ({"period_s": 86_401}, "body.period_s"),
        ({"burst": 0}, "body.burst"),
        ({"per": "minute"}, "body.per"),
    ],
)
async def test_an_unenforceable_rule_is_refused_naming_the_field(
    admin: RunningGateway, store_url: str, change: dict[str, Any], field: str
) -> None:
    refused = assert_problem(await admin.client.post(RULES, json={**RULE, **change}), 422)
    assert field_errors(refused) == {field}
    assert field in refused["detail"]
    assert await stored_rules(store_url) == []


async def test_a_change_is_checked_against_the_whole_rule(
    admin: RunningGateway, store_url: str
) -> None:
    assert (await admin.client.post("/admin/v1/plans", json={"name": "gold"})).status_code == 201
    created = await admin.client.post(RULES, json={**RULE, "key_by": "plan", "plan_name": "gold"})
    assert created.status_code == 201, created.text
    rule = created.json()
    assert rule["plan_name"] == "gold"
    path = f"{RULES}/{rule['rule_id']}"

    for change, field in [
        ({"key_by": "consumer"}, "body.plan_name"),  # the stored plan_name no longer fits
        ({"plan_name": None}, "body.plan_name"),
        ({"plan_name": "silver"}, "body.plan_name"),
        ({"name": None}, "body.name"),
        ({"period_s": -1}, "body.period_s"),
        ({"enabled": False, "limit": 0}, "body.limit"),
        ({"rule_id": 9}, "body.rule_id"),
    ]:
        refused = assert_problem(await admin.client.patch(path, json=change), 422)
        assert field_errors(refused) == {field}, change
    assert (await admin.client.get(path)).json() == rule
    assert await stored_rules(store_url) == [("partner-quotes", "gold", 2)]

    moved = await admin.client.patch(path, json={"key_by": "route", "plan_name": None})
    assert moved.status_code == 200, moved.text
    assert (moved.json()["key_by"], moved.json()["plan_name"]) == ("route", None)
    assert await stored_rules(store_url) == [("partner-quotes", "", 2)]


async def test_a_duplicate_name_is_a_conflict_that_changes_nothing(
    admin: RunningGateway, store_url: str
) -> None:
    first = (await admin.client.post(RULES, json=RULE)).json()
    duplicate = assert_problem(await admin.client.post(RULES, json={**RULE, "limit": 9}), 409)
    assert duplicate["rule_id"] == first["rule_id"]
    assert "partner-quotes" in duplicate["detail"]

    other = await admin.client.post(RULES, json={**RULE, "name": "other-quotes", "limit": 7})
    assert other.status_code == 201, other.text
    path = f"{RULES}/{other.json()['rule_id']}"
    renamed = assert_problem(
        await admin.client.patch(path, json={"name": "partner-quotes", "limit": 1}), 409
    )
    assert renamed["rule_id"] == first["rule_id"]
    assert (await admin.client.get(path)).json() == other.json()
    assert await stored_rules(store_url) == [("partner-quotes", "", 2), ("other-quotes", "", 7)]
    # Keeping its own name is no conflict.
    same = await admin.client.patch(path, json={"name": "other-quotes", "limit": 8})
    assert same.status_code == 200, same.text


async def _quotes(gateway: RunningGateway, partner: PartnerKey) -> httpx.Response:
    # A client of its own: the admin's Authorization header would be checked first.
    async with httpx.AsyncClient(base_url=gateway.url, headers=partner.headers) as client:
        return await client.get(QUOTES)


async def _until(gateway: RunningGateway, probe: PartnerKey, *, enforced: bool) -> None:
    """Wait until `gateway` has the rule in force (or no longer), seen by the probe's calls.

    The probe is a consumer of its own: a rule keyed by consumer counts it separately.
    """
    seen = ""
    for _ in range(100):
        response = await _quotes(gateway, probe)
        seen = response.headers.get("ratelimit-policy", "")
        if response.status_code in {200, 429} and ('"partner-quotes"' in seen) == enforced:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"the rule's enforcement never became {enforced}: {seen!r}")


async def test_a_rule_is_enforced_lifted_and_removed_in_every_process(shared: Settings) -> None:
    async with running_gateway(shared) as first, running_gateway(shared) as second:
        first.client.headers.update(ADMIN)
        second.client.headers.update(ADMIN)
        partner = await create_partner(first.client)
        probe = await create_partner(first.client)
        created = await first.client.post(RULES, json=RULE)
        assert created.status_code == 201, created.text
        path = f"{RULES}/{created.json()['rule_id']}"

        await _until(second, probe, enforced=True)
        answers = [await _quotes(second, partner) for _ in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 429]
        assert answers[0].headers["ratelimit-policy"] == '"partner-quotes";q=2;w=60'
        assert answers[1].headers["ratelimit"] == '"partner-quotes";r=0;t=60'
        refused = assert_problem(answers[2], 429)
        assert refused["limit"] == "partner-quotes"
        assert '"partner-quotes";q=2;w=60' in answers[2].headers["ratelimit-policy"]
        # One count through Redis: the process that took the change refuses too.
        assert (await _quotes(first, partner)).status_code == 429

        disabled = await first.client.patch(path, json={"enabled": False})
        assert disabled.status_code == 200, disabled.text
        assert disabled.json()["enabled"] is False
        await _until(second, probe, enforced=False)
        for gateway in (second, first):
            passed = await _quotes(gateway, partner)
            assert passed.status_code == 200, passed.text
            assert "partner-quotes" not in passed.headers.get("ratelimit-policy", "")
        listed = (await second.client.get(RULES)).json()["rules"]
        assert [(r["name"], r["enabled"]) for r in listed] == [("partner-quotes", False)]

        assert (await first.client.delete(path)).status_code == 204
        assert (await second.client.get(RULES)).json() == {"rules": []}
        assert_problem(await second.client.get(path), 404)


async def test_a_plan_rule_limits_only_the_consumers_on_that_plan(admin: RunningGateway) -> None:
    on_plan = await create_partner(admin.client)
    elsewhere = await create_partner(admin.client)
    rule = {**RULE, "key_by": "plan", "plan_name": on_plan.plan, "limit": 1}
    assert (await admin.client.post(RULES, json=rule)).status_code == 201
    limited = [(await _quotes(admin, on_plan)).status_code for _ in range(2)]
    free = [(await _quotes(admin, elsewhere)).status_code for _ in range(2)]
    assert (limited, free) == ([200, 429], [200, 200])


async def test_a_plan_named_by_a_rule_is_not_deleted(admin: RunningGateway) -> None:
    plan = (await admin.client.post("/admin/v1/plans", json={"name": "ruled"})).json()["name"]
    rule = {**RULE, "key_by": "plan", "plan_name": plan}
    created = await admin.client.post(RULES, json=rule)
    assert created.status_code == 201, created.text

    refused = assert_problem(await admin.client.delete(f"/admin/v1/plans/{plan}"), 409)
    assert refused["rate_limit_rules"] == [rule["name"]]
    assert (await admin.client.get(f"/admin/v1/plans/{plan}")).status_code == 200

    rule_path = f"{RULES}/{created.json()['rule_id']}"
    assert (await admin.client.delete(rule_path)).status_code == 204
    assert (await admin.client.delete(f"/admin/v1/plans/{plan}")).status_code == 204


async def test_only_admins_may_manage_rules(admin: RunningGateway, platform: Platform) -> None:
    created = await admin.client.post(RULES, json=RULE)
    path = f"{RULES}/{created.json()['rule_id']}"
    operations = [
        ("GET", RULES, None),
        ("POST", RULES, {**RULE, "name": "sneaky"}),
        ("GET", path, None),
        ("PATCH", path, {"enabled": False}),
        ("DELETE", path, None),
    ]
    # A trader and a partner: known callers, neither an admin.
    alice = await bearer_headers(platform, username="alice")
    partner = await create_partner(admin.client)
    async with httpx.AsyncClient(base_url=admin.url) as outsider:
        for method, url, body in operations:
            anonymous = await outsider.request(method, url, json=body)
            assert_problem(anonymous, 401)
            assert anonymous.headers["www-authenticate"].startswith("Bearer")
            for credential in (alice, partner.headers):
                refused = assert_problem(
                    await outsider.request(method, url, json=body, headers=credential), 403
                )
                assert refused["missing_roles"] == ["admin"]
    assert (await admin.client.get(RULES)).json() == {"rules": [created.json()]}
