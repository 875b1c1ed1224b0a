"""What every admin body and path shares, on SQLite and on PostgreSQL: numbers and flags are
strict JSON types, integers stay inside the store's range, PATCH schemas offer null only
where null clears a field, and every date-time is answered in UTC with `Z`."""

from typing import Any

import pytest

from app.main import DOCUMENTS, create_app
from app.openapi import build_document
from app.settings import Settings
from app.store.models import INTEGER_MAX
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.problems import assert_problem, field_errors

TOO_BIG = 99999999999999999999
DEAD_URL = "http://127.0.0.1:1"


async def _service(admin: RunningGateway, name: str = "strict") -> tuple[str, int]:
    created = await admin.client.post(
        "/admin/v1/services", json={"name": name, "instances": [{"url": DEAD_URL}]}
    )
    assert created.status_code == 201, created.text
    return f"/admin/v1/services/{name}", created.json()["instances"][0]["instance_id"]


async def _consumer(admin: RunningGateway) -> str:
    assert (await admin.client.post("/admin/v1/plans", json={"name": "base"})).status_code == 201
    created = await admin.client.post("/admin/v1/consumers", json={"name": "acme", "plan": "base"})
    assert created.status_code == 201, created.text
    return f"/admin/v1/consumers/{created.json()['consumer_id']}"


async def _rule(admin: RunningGateway) -> str:
    created = await admin.client.post(
        "/admin/v1/rate-limits",
        json={"name": "quotes", "key_by": "consumer", "limit": 5, "period_s": 60},
    )
    assert created.status_code == 201, created.text
    return f"/admin/v1/rate-limits/{created.json()['rule_id']}"


async def _refused(admin: RunningGateway, method: str, path: str, body: Any, field: str) -> None:
    response = await admin.client.request(method, path, json=body)
    problem = assert_problem(response, 422)
    assert field_errors(problem) == {field}, (method, path, body, problem)


# Values lax validation would convert: `true` -> 1, "5" -> 5, 0 -> false.
NOT_A_NUMBER = [True, "5", [5]]
NOT_A_FLAG = [0, 1, "true", "false"]


async def test_plan_numbers_are_json_numbers(admin: RunningGateway) -> None:
    limits = ["rate_per_second", "rate_per_minute", "quota_per_day", "quota_per_month"]
    for field in [*limits, "max_in_flight"]:
        for value in NOT_A_NUMBER:
            body = {"name": "typed", field: value}
            await _refused(admin, "POST", "/admin/v1/plans", body, f"body.{field}")
    assert (await admin.client.get("/admin/v1/plans")).json() == {"plans": []}

    assert (await admin.client.post("/admin/v1/plans", json={"name": "typed"})).status_code == 201
    for value in NOT_A_NUMBER:
        await _refused(
            admin, "PATCH", "/admin/v1/plans/typed", {"max_in_flight": value}, "body.max_in_flight"
        )
    assert (await admin.client.get("/admin/v1/plans/typed")).json()["max_in_flight"] is None


async def test_consumer_flags_are_json_booleans(admin: RunningGateway) -> None:
    consumer = await _consumer(admin)
    for value in NOT_A_FLAG:
        body = {"name": "other", "enabled": value}
        await _refused(admin, "POST", "/admin/v1/consumers", body, "body.enabled")
        await _refused(admin, "PATCH", consumer, {"enabled": value}, "body.enabled")
    assert [
        c["name"] for c in (await admin.client.get("/admin/v1/consumers")).json()["consumers"]
    ] == ["acme"]
    assert (await admin.client.get(consumer)).json()["enabled"] is True


async def test_rule_numbers_and_flags_are_strict(admin: RunningGateway) -> None:
    rule = await _rule(admin)
    new = {"name": "other", "key_by": "route", "limit": 5, "period_s": 60}
    for field in ["limit", "period_s", "burst"]:
        for value in NOT_A_NUMBER:
            await _refused(
                admin, "POST", "/admin/v1/rate-limits", {**new, field: value}, f"body.{field}"
            )
            await _refused(admin, "PATCH", rule, {field: value}, f"body.{field}")
    for value in NOT_A_FLAG:
        await _refused(
            admin, "POST", "/admin/v1/rate-limits", {**new, "enabled": value}, "body.enabled"
        )
        await _refused(admin, "PATCH", rule, {"enabled": value}, "body.enabled")
    rules = (await admin.client.get("/admin/v1/rate-limits")).json()["rules"]
    assert [(r["name"], r["limit"], r["burst"], r["enabled"]) for r in rules] == [
        ("quotes", 5, None, True)
    ]


async def test_service_numbers_and_flags_are_strict(admin: RunningGateway) -> None:
    service, instance_id = await _service(admin)
    instance = f"{service}/instances/{instance_id}"
    for value in NOT_A_NUMBER:
        await _refused(
            admin,
            "POST",
            "/admin/v1/services",
            {"name": "x1", "timeout_ms": value},
            "body.timeout_ms",
        )
        await _refused(admin, "PATCH", service, {"timeout_ms": value}, "body.timeout_ms")
        await _refused(
            admin,
            "POST",
            f"{service}/instances",
            {"url": "http://h:1", "weight": value},
            "body.weight",
        )
        await _refused(admin, "PATCH", instance, {"weight": value}, "body.weight")
        await _refused(
            admin,
            "POST",
            f"{service}/instances/register",
            {"url": "http://h:2", "ttl_s": value},
            "body.ttl_s",
        )
    for value in NOT_A_FLAG:
        await _refused(
            admin,
            "POST",
            f"{service}/instances",
            {"url": "http://h:1", "enabled": value},
            "body.enabled",
        )
        await _refused(admin, "PATCH", instance, {"enabled": value}, "body.enabled")
    stored = (await admin.client.get(service)).json()
    assert (stored["timeout_ms"], [(i["weight"], i["enabled"]) for i in stored["instances"]]) == (
        2000,
        [(1, True)],
    )


@pytest.mark.parametrize(
    ("policy", "field"),
    [
        ({"retries": {"attempts": True}}, "body.retries.attempts"),
        ({"retries": {"retry_on": [True]}}, "body.retries.retry_on.0"),
        ({"retries": {"retry_on_timeouts": 0}}, "body.retries.retry_on_timeouts"),
        ({"breaker": {"window_s": "10"}}, "body.breaker.window_s"),
        ({"breaker": {"window_s": 1e-300}}, "body.breaker.window_s"),
        ({"bulkhead": {"max_concurrent": True}}, "body.bulkhead.max_concurrent"),
        ({"health_check": {"enabled": 1}}, "body.health_check.enabled"),
        ({"ejection": {"ejection_ms": "5"}}, "body.ejection.ejection_ms"),
    ],
)
async def test_policy_numbers_and_flags_are_strict(
    admin: RunningGateway, policy: dict[str, Any], field: str
) -> None:
    service, _ = await _service(admin)
    before = (await admin.client.get(f"{service}/policy")).json()
    await _refused(admin, "PUT", f"{service}/policy", policy, field)
    assert (await admin.client.get(f"{service}/policy")).json() == before


async def test_ids_beyond_the_store_are_422_not_500(admin: RunningGateway) -> None:
    service, _ = await _service(admin)
    consumer = await _consumer(admin)
    for too_big in (TOO_BIG, INTEGER_MAX + 1):
        for method, path, field in [
            ("DELETE", f"/admin/v1/rate-limits/{too_big}", "path.rule_id"),
            ("GET", f"/admin/v1/rate-limits/{too_big}", "path.rule_id"),
            ("GET", f"/admin/v1/consumers/{too_big}", "path.consumer_id"),
            ("DELETE", f"/admin/v1/consumers/{too_big}", "path.consumer_id"),
            ("GET", f"/admin/v1/consumers/{too_big}/keys", "path.consumer_id"),
            ("DELETE", f"{consumer}/keys/{too_big}", "path.key_id"),
            ("GET", f"{service}/instances/{too_big}", "path.instance_id"),
            ("DELETE", f"{service}/instances/{too_big}", "path.instance_id"),
        ]:
            await _refused(admin, method, path, None, field)
    # The largest id the store can hold is a plain 404.
    assert_problem(await admin.client.get(f"/admin/v1/consumers/{INTEGER_MAX}"), 404)


async def test_integers_beyond_the_store_are_422_not_500(admin: RunningGateway) -> None:
    for too_big in (TOO_BIG, INTEGER_MAX + 1):
        for field in ["quota_per_day", "quota_per_month", "rate_per_minute", "max_in_flight"]:
            body = {"name": "huge", field: too_big}
            await _refused(admin, "POST", "/admin/v1/plans", body, f"body.{field}")
        rule = {"name": "huge", "key_by": "route", "limit": too_big, "period_s": 60}
        await _refused(admin, "POST", "/admin/v1/rate-limits", rule, "body.limit")
        await _refused(
            admin,
            "POST",
            "/admin/v1/services",
            {"name": "huge", "timeout_ms": too_big},
            "body.timeout_ms",
        )
    at_most = {"name": "roomy", "quota_per_day": INTEGER_MAX, "quota_per_month": INTEGER_MAX}
    created = await admin.client.post("/admin/v1/plans", json=at_most)
    assert created.status_code == 201, created.text
    fetched = (await admin.client.get("/admin/v1/plans/roomy")).json()
    assert (fetched["quota_per_day"], fetched["quota_per_month"]) == (INTEGER_MAX, INTEGER_MAX)


def _patch_bodies() -> dict[str, dict[str, Any]]:
    """Each PATCH path of the admin API's document -> its request body's properties."""
    admin_document = next(d for d in DOCUMENTS if d.slug == "admin-v1")
    document = build_document(create_app(Settings()), admin_document)
    schemas = document["components"]["schemas"]
    bodies = {}
    for path, operations in document["paths"].items():
        if "patch" in operations:
            body = operations["patch"]["requestBody"]["content"]["application/json"]["schema"]
            bodies[path] = schemas[body["$ref"].rsplit("/", 1)[1]]["properties"]
    return bodies


def _offers_null(field_schema: dict[str, Any]) -> bool:
    return {"type": "null"} in field_schema.get("anyOf", []) or field_schema.get("type") == "null"


async def test_patch_schemas_offer_null_exactly_where_the_server_takes_it(
    admin: RunningGateway,
) -> None:
    service, instance_id = await _service(admin)
    consumer = await _consumer(admin)
    rule = await _rule(admin)
    assert (await admin.client.post("/admin/v1/plans", json={"name": "gold"})).status_code == 201
    paths = {
        "/admin/v1/services/{name}": service,
        "/admin/v1/services/{name}/instances/{instance_id}": f"{service}/instances/{instance_id}",
        "/admin/v1/plans/{name}": "/admin/v1/plans/gold",
        "/admin/v1/consumers/{consumer_id}": consumer,
        "/admin/v1/rate-limits/{rule_id}": rule,
    }
    bodies = _patch_bodies()
    assert set(bodies) == set(paths)
    nullable = set()
    for template, properties in bodies.items():
        for field, field_schema in properties.items():
            response = await admin.client.patch(paths[template], json={field: None})
            if _offers_null(field_schema):
                nullable.add(f"{template} {field}")
                assert response.status_code == 200, (template, field, response.text)
            else:
                problem = assert_problem(response, 422)
                assert field_errors(problem) == {f"body.{field}"}, (template, field)
    # What null clears: a plan's limits, a consumer's plan and OAuth client, a rule's plan
    # and burst.
    assert nullable == {
        "/admin/v1/plans/{name} rate_per_second",
        "/admin/v1/plans/{name} rate_per_minute",
        "/admin/v1/plans/{name} quota_per_day",
        "/admin/v1/plans/{name} quota_per_month",
        "/admin/v1/plans/{name} max_in_flight",
        "/admin/v1/consumers/{consumer_id} plan",
        "/admin/v1/consumers/{consumer_id} oauth_client_id",
        "/admin/v1/rate-limits/{rule_id} plan_name",
        "/admin/v1/rate-limits/{rule_id} burst",
    }


def _date_times(body: Any) -> list[str]:
    """Every value of a `*_at` field or `since`, anywhere in an answer."""
    found = []
    if isinstance(body, dict):
        for key, value in body.items():
            if (key.endswith("_at") or key == "since") and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_date_times(value))
    elif isinstance(body, list):
        for item in body:
            found.extend(_date_times(item))
    return found


async def test_every_date_time_is_utc_with_z_on_every_read_path(admin: RunningGateway) -> None:
    service, instance_id = await _service(admin)
    consumer = await _consumer(admin)
    rule = await _rule(admin)
    keys = f"{consumer}/keys"
    issued = await admin.client.post(keys, json={"expires_at": "2099-01-01T01:00:00+01:00"})
    assert issued.status_code == 201, issued.text
    assert issued.json()["expires_at"] == "2099-01-01T00:00:00Z"
    reads = [
        ("GET", "/admin/v1/plans", None),
        ("GET", "/admin/v1/plans/base", None),
        ("PATCH", "/admin/v1/plans/base", {"quota_per_day": 10}),
        ("GET", "/admin/v1/consumers", None),
        ("GET", consumer, None),
        ("PATCH", consumer, {"enabled": False}),
        ("GET", keys, None),
        ("GET", "/admin/v1/rate-limits", None),
        ("GET", rule, None),
        ("PATCH", rule, {"limit": 6}),
        ("GET", "/admin/v1/services", None),
        ("GET", service, None),
        ("PATCH", service, {"timeout_ms": 900}),
        ("GET", f"{service}/instances", None),
        ("GET", f"{service}/instances/{instance_id}", None),
        ("PATCH", f"{service}/instances/{instance_id}", {"weight": 3}),
    ]
    for method, path, body in reads:
        response = await admin.client.request(method, path, json=body)
        assert response.status_code == 200, (method, path, response.text)
        stamps = _date_times(response.json())
        assert stamps, (method, path)
        assert all(stamp.endswith("Z") for stamp in stamps), (method, path, stamps)


async def test_text_with_control_characters_is_refused(admin: RunningGateway) -> None:
    # PostgreSQL stores no NUL (it was a 500 there); the others would reach a request line.
    service, instance_id = await _service(admin)
    consumer = await _consumer(admin)
    rule = {"name": "nul", "key_by": "route", "limit": 5, "period_s": 60}
    for method, path, body, field in [
        ("POST", f"{consumer}/keys", {"name": "key\x00"}, "body.name"),
        ("POST", f"{consumer}/keys", {"name": "line\nbreak"}, "body.name"),
        ("POST", "/admin/v1/rate-limits", {**rule, "route_prefix": "/a\x00"}, "body.route_prefix"),
        ("PATCH", service, {"health_path": "/health\x00"}, "body.health_path"),
        ("PATCH", service, {"health_path": "/a b"}, "body.health_path"),
        ("POST", f"{service}/instances", {"url": "http://a\x00b:1"}, "body.url"),
        (
            "PUT",
            f"{service}/policy",
            {"health_check": {"path": "/\x00"}},
            "body.health_check.path",
        ),
        ("PUT", f"{service}/policy", {"dns": {"name": "a\x00b"}}, "body.dns.name"),
    ]:
        await _refused(admin, method, path, body, field)
    assert (await admin.client.get(f"{consumer}/keys")).json() == {"keys": []}
    assert (await admin.client.get("/admin/v1/rate-limits")).json() == {"rules": []}
    stored = (await admin.client.get(service)).json()
    assert stored["health_path"] == "/health"
    assert [i["instance_id"] for i in stored["instances"]] == [instance_id]
