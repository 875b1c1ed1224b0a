"""Admin API over pass-through routes: CRUD and validation on SQLite and on PostgreSQL; the
snapshot serves what was stored, refuses a stored declaration that does not validate, and
the store's revision rises with each change."""

from typing import Any

from sqlalchemy import update

from app.store.database import create_engine
from app.store.models import Route
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.problems import assert_problem, field_errors

ROUTES = "/admin/v1/routes"
NEWS = {
    "name": "news-latest",
    "description": "The latest headlines",
    "match": {"path": "/news/latest", "methods": ["GET"]},
    "upstream": {"service": "news", "path": "/news/latest"},
    "auth": "none",
    "rate_limits": [{"key_by": "address", "limit": 20, "period_s": 1}],
    "transforms": {"response": {"body": {"rename": {"headline": "title"}}}},
}


async def _served(gw: RunningGateway) -> set[str]:
    """The routes the gateway process serves, by name."""
    return set((await gw.client.get("/admin/v1/config")).json()["routes"])


async def test_route_crud_round_trip(admin: RunningGateway) -> None:
    created = await admin.client.post(ROUTES, json=NEWS)
    assert created.status_code == 201, created.text
    body = created.json()
    route_id = body["route_id"]
    assert created.headers["location"] == f"{ROUTES}/{route_id}"
    assert body["route"]["name"] == "news-latest"
    assert body["route"]["match"]["path"] == "/news/latest"
    assert body["route"]["enabled"] is True
    assert body["created_at"].endswith("Z")
    assert (await admin.client.get(f"{ROUTES}/{route_id}")).json() == body
    listed = (await admin.client.get(ROUTES)).json()["routes"]
    assert [r["route_id"] for r in listed] == [route_id]

    config = (await admin.client.get("/admin/v1/config")).json()
    assert config["revision"] >= 1
    assert "news-latest" in await _served(admin)

    switched = {**NEWS, "enabled": False}
    replaced = await admin.client.put(f"{ROUTES}/{route_id}", json=switched)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["route"]["enabled"] is False
    assert "news-latest" not in await _served(admin)
    assert (await admin.client.get("/admin/v1/config")).json()["revision"] > config["revision"]

    deleted = await admin.client.delete(f"{ROUTES}/{route_id}")
    assert deleted.status_code == 204
    assert_problem(await admin.client.get(f"{ROUTES}/{route_id}"), 404)
    assert (await admin.client.get(ROUTES)).json()["routes"] == []


async def test_duplicate_name_is_a_conflict(admin: RunningGateway) -> None:
    assert (await admin.client.post(ROUTES, json=NEWS)).status_code == 201
    assert_problem(await admin.client.post(ROUTES, json=NEWS), 409)


async def test_invalid_declarations_name_the_field(admin: RunningGateway) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({**NEWS, "match": {"path": "/news/../admin"}}, "body.match.path"),
        ({**NEWS, "match": {"path": "/a", "path_prefix": "/b"}}, "body.match"),
        ({**NEWS, "upstream": {"service": "nowhere"}}, "body.upstream.service"),
        ({**NEWS, "timeout_ms": True}, "body.timeout_ms"),
        ({**NEWS, "auth": "none", "scopes": ["quotes:read"]}, "body"),
        ({**NEWS, "request_schema": {"query": {"type": "no-such-type"}}}, "body.request_schema"),
        (
            {**NEWS, "transforms": {"request": {"headers": {"add": {"Host": "evil"}}}}},
            "body.transforms.request.headers.add",
        ),
        (
            {**NEWS, "upstream": {"service": "news", "path": "/news/{missing}"}},
            "body",
        ),
    ]
    for declaration, field in cases:
        problem = assert_problem(await admin.client.post(ROUTES, json=declaration), 422)
        assert any(name.startswith(field) for name in field_errors(problem)), (field, problem)
    assert (await admin.client.get(ROUTES)).json()["routes"] == []


async def test_a_stored_declaration_that_does_not_validate_is_refused_alone(
    admin: RunningGateway, store_url: str
) -> None:
    first = (await admin.client.post(ROUTES, json=NEWS)).json()
    other = {**NEWS, "name": "news-other", "match": {"path": "/news/other"}}
    second = (await admin.client.post(ROUTES, json=other)).json()
    engine = create_engine(store_url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(Route)
                .where(Route.route_id == first["route_id"])
                .values(declaration={"match": {"path": "no-slash"}, "upstream": {}})
            )
    finally:
        await engine.dispose()
    # Any committed change reloads the snapshot.
    await admin.client.post(ROUTES, json={**NEWS, "name": "news-third", "match": {"path": "/x"}})
    assert await _served(admin) == {"news-other", "news-third"}
    refused = (await admin.client.get("/admin/v1/config")).json()["refused"]
    assert [(r["table"], r["id"]) for r in refused] == [("routes", first["route_id"])]
    assert second["route_id"] != first["route_id"]
