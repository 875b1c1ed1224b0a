"""Liveness and readiness."""

from app.settings import Settings
from backends.launcher import Platform, free_port
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.store.database_proxy import DatabaseProxy

AUTH = {"Authorization": "Bearer test-admin-token"}


async def test_healthz_says_ok(gateway: RunningGateway) -> None:
    response = await gateway.client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_every_service_is_reachable(
    gateway: RunningGateway, settings: Settings
) -> None:
    response = await gateway.client.get("/readyz")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["config_version"] >= 1
    assert body["config"] == "current, from database"
    services = {s["service"]: s for s in body["services"]}
    assert set(services) == set(settings.services)
    for name, urls in settings.services.items():
        assert services[name] == {
            "service": name,
            "reachable_instances": len(urls),
            "instances": len(urls),
        }


async def test_not_ready_while_a_service_has_no_reachable_instance(
    gateway: RunningGateway, platform: Platform
) -> None:
    unused = f"http://127.0.0.1:{free_port()}"
    created = await gateway.client.post(
        "/admin/v1/services",
        json={"name": "nobody-home", "instances": [{"url": unused}]},
        headers=AUTH,
    )
    assert created.status_code == 201, created.text

    response = await gateway.client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not_ready"
    services = {s["service"]: s for s in body["services"]}
    assert services["nobody-home"] == {
        "service": "nobody-home",
        "reachable_instances": 0,
        "instances": 1,
    }
    # Only the unreachable service is at fault.
    assert services["market-data"]["reachable_instances"] == len(platform.urls["market-data"])

    removed = await gateway.client.delete("/admin/v1/services/nobody-home", headers=AUTH)
    assert removed.status_code == 204
    assert (await gateway.client.get("/readyz")).status_code == 200


async def test_a_self_registered_instance_counts_towards_readiness(
    gateway: RunningGateway, platform: Platform
) -> None:
    unused = f"http://127.0.0.1:{free_port()}"
    created = await gateway.client.post(
        "/admin/v1/services",
        json={"name": "quote-feed", "instances": [{"url": unused}]},
        headers=AUTH,
    )
    assert created.status_code == 201, created.text
    assert (await gateway.client.get("/readyz")).status_code == 503

    # A live instance joins by registering itself, not through the config store.
    live = platform.urls["news"][0]
    registered = await gateway.client.post(
        "/admin/v1/services/quote-feed/instances/register",
        json={"url": live, "ttl_s": 30},
        headers=AUTH,
    )
    assert registered.status_code == 201, registered.text

    response = await gateway.client.get("/readyz")
    assert response.status_code == 200, response.text
    services = {s["service"]: s for s in response.json()["services"]}
    assert services["quote-feed"] == {
        "service": "quote-feed",
        "reachable_instances": 1,
        "instances": 2,
    }


async def test_degraded_while_serving_the_config_snapshot_from_disk(settings: Settings) -> None:
    async with running_gateway(settings):
        pass  # its first load wrote the snapshot file
    # A database that accepts connections and never answers.
    silent = await DatabaseProxy().start()
    try:
        from_disk = settings.model_copy(
            update={
                "database_url": silent.url(),
                "startup_db_timeout_s": 1.0,
                "db_connect_timeout_s": 1.0,
            }
        )
        async with running_gateway(from_disk) as gw:
            response = await gw.client.get("/readyz")
    finally:
        await silent.close()
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "degraded"
    assert body["config"] == "stale, from disk"
    assert body["config_version"] >= 1
    # Everything else is as ready as it was.
    assert {s["service"] for s in body["services"]} == set(settings.services)
    assert all(s["reachable_instances"] == s["instances"] for s in body["services"])
