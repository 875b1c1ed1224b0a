"""A route's policies: who may call it (auth user, partner, any; roles and scopes), retries
only for requests that can be sent twice, and problem+json when the gateway itself fails."""

from collections.abc import AsyncIterator

from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN, create_partner
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.problems import assert_problem
from tests.fixtures.redis import free_port
from tests.passthrough.conftest import add_route
from tests.passthrough.echo import EchoUpstream


async def test_user_routes_need_their_roles_and_any_takes_users_and_partners(
    gateway: RunningGateway, platform: Platform, echo: EchoUpstream
) -> None:
    await add_route(
        gateway.client,
        name="traders-only",
        match={"path": "/desk"},
        upstream={"service": "echo", "path": "/desk"},
        auth="user",
        roles=["trader"],
        scopes=["read"],
    )
    await add_route(
        gateway.client,
        name="anyone-signed-in",
        match={"path": "/signed-in"},
        upstream={"service": "echo", "path": "/signed-in"},
        auth="any",
    )
    alice = await bearer_headers(platform, username="alice")
    bob = await bearer_headers(platform, username="bob")
    partner = await create_partner(gateway.client)
    before = len(echo.received)
    assert_problem(await gateway.client.get("/api/desk"), 401)
    problem = assert_problem(await gateway.client.get("/api/desk", headers=bob), 403)
    assert problem["missing_roles"] == ["trader"]
    assert_problem(await gateway.client.get("/api/desk", headers=partner.headers), 403)
    assert len(echo.received) == before
    assert (await gateway.client.get("/api/desk", headers=alice)).status_code == 200
    assert_problem(await gateway.client.get("/api/signed-in"), 401)
    for headers in (alice, bob, partner.headers):
        assert (await gateway.client.get("/api/signed-in", headers=headers)).status_code == 200


async def _chunks() -> AsyncIterator[bytes]:
    for _ in range(3):
        yield b'{"part": 1}'


async def test_retries_only_what_can_be_sent_twice(
    gateway: RunningGateway, echo: EchoUpstream
) -> None:
    """Each case on a service of its own (the same instance): five failures in a row would
    take the instance out of rotation for the next case."""

    async def flaky(case: str) -> str:
        service = f"flaky-{case}"
        created = await gateway.client.post(
            "/admin/v1/services",
            json={"name": service, "instances": [{"url": echo.url}]},
            headers=ADMIN,
        )
        assert created.status_code == 201, created.text
        await add_route(
            gateway.client,
            name=service,
            match={"path": f"/{service}"},
            upstream={"service": service, "path": "/fail/503"},
            retries=2,
        )
        return f"/api/{service}"

    def tries() -> int:
        return sum(1 for _, path in echo.received if path == "/fail/503")

    cases = [
        # GET, and PUT with its whole body at hand: sent again, three tries in all.
        ("GET", {}, 3),
        ("PUT", {"json": {"a": 1}}, 3),
        # POST is not idempotent; a body sent as it arrives cannot be sent twice.
        ("POST", {"json": {}}, 1),
        ("PUT", {"content": _chunks()}, 1),
    ]
    for index, (method, body, expected) in enumerate(cases):
        path = await flaky(str(index))
        before = tries()
        response = await gateway.client.request(method, path, **body)  # type: ignore[arg-type]
        # The upstream's own 503 after the last try, as it answered it.
        assert response.status_code == 503
        assert response.json() == {"detail": "the upstream's own 503"}
        assert tries() - before == expected, (method, body)


async def test_an_unreachable_service_is_the_gateways_problem(gateway: RunningGateway) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    created = await gateway.client.post(
        "/admin/v1/services",
        json={"name": "gone", "instances": [{"url": closed}]},
        headers=ADMIN,
    )
    assert created.status_code == 201, created.text
    await add_route(
        gateway.client, name="to-gone", match={"path": "/gone"}, upstream={"service": "gone"}
    )
    problem = assert_problem(await gateway.client.get("/api/gone"), 503)
    assert problem["service"] == "gone"


async def test_an_unsafe_method_makes_the_cached_gets_of_its_url_stale(
    gateway: RunningGateway, echo: EchoUpstream
) -> None:
    await add_route(
        gateway.client,
        name="echo-notes",
        match={"path": "/notes", "methods": ["GET", "POST"]},
        upstream={"service": "echo", "path": "/notes"},
        cache={"mode": "ttl", "ttl_s": 60},
    )

    def gets_reaching_the_upstream() -> int:
        return sum(1 for method, path in echo.received if method == "GET" and path == "/notes")

    first = await gateway.client.get("/api/notes")
    second = await gateway.client.get("/api/notes")
    assert first.status_code == second.status_code == 200
    assert "hit" in second.headers["cache-status"]
    assert gets_reaching_the_upstream() == 1

    posted = await gateway.client.post("/api/notes", json={"text": "new"})
    assert posted.status_code == 200
    after = await gateway.client.get("/api/notes")
    assert after.status_code == 200
    assert "hit" not in after.headers["cache-status"]
    assert gets_reaching_the_upstream() == 2
