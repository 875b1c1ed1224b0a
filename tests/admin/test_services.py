"""Admin CRUD over services and instances, on SQLite and on PostgreSQL."""

from typing import Any

import httpx
from sqlalchemy import func, select

from app.store.database import create_engine
from app.store.models import Service, ServiceInstance
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway

AUTH = {"Authorization": "Bearer test-admin-token"}
# Nothing listens on port 1: registering it is fine, probing it fails fast.
DEAD_URL = "http://127.0.0.1:1"


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


async def registered(gw: RunningGateway) -> dict[str, dict[str, Any]]:
    """What the gateway's snapshot holds, as /readyz reports it."""
    response = await gw.client.get("/readyz")
    return {s["service"]: s for s in response.json()["services"]}


async def test_create_service_with_instances(admin: RunningGateway, platform: Platform) -> None:
    quotes_url = platform.urls["market-data"][0]
    body = {
        "name": "quotes-mirror",
        "timeout_ms": 750,
        "balancer": "weighted_round_robin",
        "health_path": "/health",
        "instances": [{"url": quotes_url + "/", "weight": 5}, {"url": DEAD_URL}],
    }
    created = await admin.client.post("/admin/v1/services", json=body)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/admin/v1/services/quotes-mirror"
    service = created.json()
    assert service["timeout_ms"] == 750
    assert service["balancer"] == "weighted_round_robin"
    # Stored as an origin: the trailing slash is gone.
    assert [(i["url"], i["weight"], i["enabled"]) for i in service["instances"]] == [
        (quotes_url, 5, True),
        (DEAD_URL, 1, True),
    ]

    fetched = await admin.client.get(created.headers["location"])
    assert fetched.status_code == 200
    assert fetched.json() == service
    listed = (await admin.client.get("/admin/v1/services")).json()["services"]
    assert "quotes-mirror" in [s["name"] for s in listed]
    # The change is live in this process's snapshot without a restart.
    assert (await registered(admin))["quotes-mirror"] == {
        "service": "quotes-mirror",
        "reachable_instances": 1,
        "instances": 2,
    }


async def test_duplicate_service_name_is_a_conflict(admin: RunningGateway) -> None:
    first = await admin.client.post("/admin/v1/services", json={"name": "dup-check"})
    assert first.status_code == 201
    again = await admin.client.post(
        "/admin/v1/services", json={"name": "dup-check", "timeout_ms": 900}
    )
    problem = assert_problem(again, 409)
    assert "dup-check" in problem["detail"]
    assert problem["instance"] == "/admin/v1/services"
    kept = (await admin.client.get("/admin/v1/services/dup-check")).json()
    assert kept["timeout_ms"] == 2000


async def test_duplicate_instance_urls_on_create_leave_nothing_behind(
    admin: RunningGateway,
) -> None:
    body = {"name": "half-applied", "instances": [{"url": DEAD_URL}, {"url": DEAD_URL + "/"}]}
    problem = assert_problem(await admin.client.post("/admin/v1/services", json=body), 409)
    assert DEAD_URL in problem["detail"]
    assert_problem(await admin.client.get("/admin/v1/services/half-applied"), 404)
    assert "half-applied" not in await registered(admin)


INVALID_SERVICES: list[tuple[dict[str, Any], str]] = [
    ({"name": "Bad_Name"}, "body.name"),
    ({"name": "x"}, "body.name"),
    ({"name": "ok-name", "timeout_ms": 10}, "body.timeout_ms"),
    ({"name": "ok-name", "timeout_ms": 60_001}, "body.timeout_ms"),
    ({"name": "ok-name", "balancer": "random"}, "body.balancer"),
    ({"name": "ok-name", "health_path": "health"}, "body.health_path"),
    ({"name": "ok-name", "owner": "me"}, "body.owner"),
    ({"name": "ok-name", "instances": [{"url": "ftp://10.0.0.1"}]}, "body.instances.0.url"),
    ({"name": "ok-name", "instances": [{"url": "http://"}]}, "body.instances.0.url"),
    ({"name": "ok-name", "instances": [{"url": "http://h:1/api"}]}, "body.instances.0.url"),
    ({"name": "ok-name", "instances": [{"url": "http://h:1?x=1"}]}, "body.instances.0.url"),
    ({"name": "ok-name", "instances": [{"url": "http://u:p@h:1"}]}, "body.instances.0.url"),
    ({"name": "ok-name", "instances": [{"url": "http://h:99999"}]}, "body.instances.0.url"),
    ({"name": "ok-name", "instances": [{"url": DEAD_URL, "weight": 0}]}, "body.instances.0.weight"),
    (
        {"name": "ok-name", "instances": [{"url": DEAD_URL, "weight": 101}]},
        "body.instances.0.weight",
    ),
]


async def test_invalid_service_names_the_field(admin: RunningGateway) -> None:
    for body, field in INVALID_SERVICES:
        response = await admin.client.post("/admin/v1/services", json=body)
        problem = assert_problem(response, 422)
        assert [e["field"] for e in problem["errors"]] == [field], body
        assert field in problem["detail"]
    assert_problem(await admin.client.get("/admin/v1/services/ok-name"), 404)


async def test_patch_changes_only_what_was_sent(admin: RunningGateway) -> None:
    await admin.client.post(
        "/admin/v1/services",
        json={"name": "patched", "timeout_ms": 1000, "health_path": "/ping"},
    )
    response = await admin.client.patch("/admin/v1/services/patched", json={"timeout_ms": 300})
    assert response.status_code == 200, response.text
    service = response.json()
    assert (service["timeout_ms"], service["health_path"], service["balancer"]) == (
        300,
        "/ping",
        "round_robin",
    )
    assert (await admin.client.get("/admin/v1/services/patched")).json() == service

    for body, field in [
        ({"timeout_ms": None}, "body.timeout_ms"),
        ({"balancer": "fastest"}, "body.balancer"),
        ({"name": "renamed"}, "body.name"),
    ]:
        problem = assert_problem(
            await admin.client.patch("/admin/v1/services/patched", json=body), 422
        )
        assert [e["field"] for e in problem["errors"]] == [field]
    unchanged = (await admin.client.get("/admin/v1/services/patched")).json()
    assert unchanged["timeout_ms"] == 300


async def test_unknown_service_is_404(admin: RunningGateway) -> None:
    for method, path, body in [
        ("GET", "/admin/v1/services/ghost", None),
        ("PATCH", "/admin/v1/services/ghost", {"timeout_ms": 100}),
        ("DELETE", "/admin/v1/services/ghost", None),
        ("GET", "/admin/v1/services/ghost/instances", None),
        ("POST", "/admin/v1/services/ghost/instances", {"url": DEAD_URL}),
    ]:
        response = await admin.client.request(method, path, json=body)
        problem = assert_problem(response, 404)
        assert "ghost" in problem["detail"]
        assert problem["instance"] == path


async def test_instance_lifecycle(admin: RunningGateway, platform: Platform) -> None:
    live = platform.urls["portfolio"][0]
    await admin.client.post("/admin/v1/services", json={"name": "lifecycle"})
    base = "/admin/v1/services/lifecycle/instances"

    added = await admin.client.post(base, json={"url": live, "weight": 3})
    assert added.status_code == 201, added.text
    instance = added.json()
    assert added.headers["location"] == f"{base}/{instance['instance_id']}"
    assert (await admin.client.get(added.headers["location"])).json() == instance
    assert (await registered(admin))["lifecycle"]["reachable_instances"] == 1

    duplicate = await admin.client.post(base, json={"url": live + "/"})
    assert assert_problem(duplicate, 409)["instance_id"] == instance["instance_id"]

    other = (await admin.client.post(base, json={"url": DEAD_URL})).json()
    clash = await admin.client.patch(f"{base}/{other['instance_id']}", json={"url": live})
    assert_problem(clash, 409)

    disabled = await admin.client.patch(
        f"{base}/{instance['instance_id']}", json={"enabled": False}
    )
    assert disabled.status_code == 200
    assert (disabled.json()["enabled"], disabled.json()["weight"]) == (False, 3)
    # Only enabled instances are counted, and the dead one is unreachable.
    assert (await registered(admin))["lifecycle"] == {
        "service": "lifecycle",
        "reachable_instances": 0,
        "instances": 1,
    }

    listed = (await admin.client.get(base)).json()["instances"]
    assert [i["url"] for i in listed] == [live, DEAD_URL]

    removed = await admin.client.delete(f"{base}/{instance['instance_id']}")
    assert removed.status_code == 204
    assert_problem(await admin.client.get(f"{base}/{instance['instance_id']}"), 404)
    assert_problem(await admin.client.delete(f"{base}/{instance['instance_id']}"), 404)
    listed = (await admin.client.get(base)).json()["instances"]
    assert [i["url"] for i in listed] == [DEAD_URL]


async def test_invalid_instance_patch_names_the_field(admin: RunningGateway) -> None:
    await admin.client.post(
        "/admin/v1/services", json={"name": "weights", "instances": [{"url": DEAD_URL}]}
    )
    base = "/admin/v1/services/weights/instances"
    instance_id = (await admin.client.get(base)).json()["instances"][0]["instance_id"]
    for body, field in [
        ({"weight": 0}, "body.weight"),
        ({"url": "https://h/path"}, "body.url"),
        ({"enabled": None}, "body.enabled"),
    ]:
        problem = assert_problem(await admin.client.patch(f"{base}/{instance_id}", json=body), 422)
        assert [e["field"] for e in problem["errors"]] == [field]
    assert_problem(await admin.client.patch(f"{base}/999999", json={"weight": 2}), 404)


async def test_delete_service_removes_its_instances(admin: RunningGateway, store_url: str) -> None:
    created = await admin.client.post(
        "/admin/v1/services",
        json={"name": "doomed", "instances": [{"url": DEAD_URL}, {"url": "http://10.9.9.9"}]},
    )
    service_id_query = select(Service.service_id).where(Service.name == "doomed")
    engine = create_engine(store_url)
    try:
        async with engine.connect() as connection:
            service_id = await connection.scalar(service_id_query)
        assert created.status_code == 201 and service_id is not None

        deleted = await admin.client.delete("/admin/v1/services/doomed")
        assert deleted.status_code == 204
        assert deleted.content == b""
        assert_problem(await admin.client.get("/admin/v1/services/doomed"), 404)
        assert "doomed" not in await registered(admin)
        async with engine.connect() as connection:
            left = await connection.scalar(
                select(func.count())
                .select_from(ServiceInstance)
                .where(ServiceInstance.service_id == service_id)
            )
        assert left == 0
    finally:
        await engine.dispose()


async def test_a_wrong_method_on_an_instance_action_is_a_405(admin: RunningGateway) -> None:
    await admin.client.post("/admin/v1/services", json={"name": "actions"})
    base = "/admin/v1/services/actions/instances"
    for action in ("register", "heartbeat", "deregister"):
        for method in ("GET", "PATCH", "DELETE"):
            response = await admin.client.request(method, f"{base}/{action}")
            problem = assert_problem(response, 405)
            # Not taken for an instance id: only the action's own method is allowed.
            assert response.headers["allow"] == "POST", (method, action)
            assert "errors" not in problem

    # Numeric ids still reach the instance routes.
    assert_problem(await admin.client.get(f"{base}/424242"), 404)
    replaced = await admin.client.put(f"{base}/424242")
    assert_problem(replaced, 405)
    assert replaced.headers["allow"] == "DELETE, GET, PATCH"
