"""Admin traffic endpoints: breaker and instance state, service policies, self-registration."""

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.settings import ResilienceSettings, Settings
from backends.launcher import Platform
from tests.fixtures.consumers import linked_client_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.redis import RedisServer, prefixed_redis

AUTH = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
async def admin(settings: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(settings) as gateway:
        gateway.client.headers.update(AUTH)
        yield gateway


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    return body


def _instances(body: dict[str, Any], service: str) -> list[dict[str, Any]]:
    (found,) = [s for s in body["services"] if s["service"] == service]
    instances: list[dict[str, Any]] = found["instances"]
    return instances


async def test_traffic_endpoints_need_the_admin_token(admin: RunningGateway) -> None:
    for method, path in (
        ("GET", "/admin/v1/traffic/breakers"),
        ("GET", "/admin/v1/traffic/instances"),
        ("POST", "/admin/v1/services/news/instances/register"),
    ):
        response = await admin.client.request(method, path, headers={"Authorization": ""})
        assert_problem(response, 401)


async def test_register_heartbeat_and_expiry_of_an_instance(admin: RunningGateway) -> None:
    client = admin.client
    url = "http://10.9.0.1:8080"
    registered = await client.post(
        "/admin/v1/services/news/instances/register", json={"url": url, "ttl_s": 1, "weight": 2}
    )
    assert registered.status_code == 201, registered.text
    assert registered.json()["weight"] == 2
    listed = (await client.get("/admin/v1/traffic/instances")).json()
    mine = [i for i in _instances(listed, "news") if i["url"] == url]
    assert mine and mine[0]["source"] == "registered"
    beat = await client.post("/admin/v1/services/news/instances/heartbeat", json={"url": url})
    assert beat.status_code == 200
    assert beat.json()["expires_at"] >= registered.json()["expires_at"]
    await asyncio.sleep(1.1)
    listed = (await client.get("/admin/v1/traffic/instances")).json()
    assert url not in [i["url"] for i in _instances(listed, "news")]
    late = await client.post("/admin/v1/services/news/instances/heartbeat", json={"url": url})
    assert "register it again" in assert_problem(late, 404)["detail"]


async def test_deregistration_and_bad_registrations(admin: RunningGateway) -> None:
    client = admin.client
    url = "http://10.9.0.2:8080"
    await client.post("/admin/v1/services/bots/instances/register", json={"url": url})
    gone = await client.post("/admin/v1/services/bots/instances/deregister", json={"url": url})
    assert gone.status_code == 204
    again = await client.post("/admin/v1/services/bots/instances/deregister", json={"url": url})
    assert_problem(again, 404)
    unknown = await client.post("/admin/v1/services/nowhere/instances/register", json={"url": url})
    assert_problem(unknown, 404)
    bad = await client.post(
        "/admin/v1/services/bots/instances/register", json={"url": "ftp://x", "ttl_s": 0}
    )
    fields = {e["field"] for e in assert_problem(bad, 422)["errors"]}
    assert fields == {"body.url", "body.ttl_s"}


async def test_policies_are_validated_stored_and_applied(admin: RunningGateway) -> None:
    client = admin.client
    default = (await client.get("/admin/v1/services/news/policy")).json()
    assert default["retries"]["attempts"] == 3
    assert default["bulkhead"]["max_concurrent"] == 64
    rejected = await client.put(
        "/admin/v1/services/news/policy", json={"retries": {"retry_on": [404]}, "speed": 1}
    )
    problem = assert_problem(rejected, 422)
    assert {e["field"] for e in problem["errors"]} == {"body.retries", "body.speed"}
    stored = await client.put(
        "/admin/v1/services/news/policy", json={"bulkhead": {"max_concurrent": 7}}
    )
    assert stored.status_code == 200, stored.text
    applied = (await client.get("/admin/v1/services/news/policy")).json()
    assert applied["bulkhead"]["max_concurrent"] == 7
    assert applied["bulkhead"]["max_wait_ms"] == 50
    instances = (await client.get("/admin/v1/traffic/instances")).json()
    (news,) = [s for s in instances["services"] if s["service"] == "news"]
    assert news["bulkhead"]["max_concurrent"] == 7
    assert_problem(await client.get("/admin/v1/services/nowhere/policy"), 404)


async def test_breakers_show_open_circuits_after_failures(
    admin: RunningGateway, platform: Platform
) -> None:
    client = admin.client
    await client.put(
        "/admin/v1/services/market-data/policy",
        json={"breaker": {"consecutive_failures": 1, "cool_down_ms": 60_000}},
    )
    for backend in platform.instances("market-data"):
        backend.set_faults(error_rate=1.0, error_status=500, paths=["/quotes"])
    await linked_client_partner(client)
    async with httpx.AsyncClient(timeout=5) as plain:
        token = (
            await plain.post(
                platform.urls["identity"][0] + "/__dev/token", json={"client_id": "partner-acme"}
            )
        ).json()["access_token"]
    partner = {"Authorization": f"Bearer {token}"}
    for _ in platform.instances("market-data"):
        # 500 is not retried: each request meets one instance and opens its circuit.
        failed = await client.get("/partner/v1/quotes", params={"symbols": "AAPL"}, headers=partner)
        assert failed.status_code == 502
    refused = await client.get("/partner/v1/quotes", params={"symbols": "AAPL"}, headers=partner)
    assert "circuit open" in assert_problem(refused, 503)["detail"]
    breakers = (await client.get("/admin/v1/traffic/breakers")).json()["breakers"]
    states = {b["instance"]: b["state"] for b in breakers if b["service"] == "market-data"}
    assert states == {url: "open" for url in platform.urls["market-data"]}
    instances = (await client.get("/admin/v1/traffic/instances")).json()
    assert {i["circuit"] for i in _instances(instances, "market-data")} == {"open"}


async def test_a_registration_through_one_gateway_reaches_another_through_redis(
    settings: Settings,
) -> None:
    url = "http://10.9.0.3:8080"
    async with prefixed_redis() as redis:
        shared = settings.model_copy(
            update={
                "redis_url": redis.url,
                "redis_prefix": redis.prefix,
                "resilience": ResilienceSettings(registry_refresh_s=0.1, health_checks=False),
            }
        )
        async with running_gateway(shared) as first, running_gateway(shared) as second:
            registered = await first.client.post(
                "/admin/v1/services/news/instances/register",
                json={"url": url, "ttl_s": 30},
                headers=AUTH,
            )
            assert registered.status_code == 201, registered.text
            seen: list[str] = []
            for _ in range(40):
                listed = await second.client.get("/admin/v1/traffic/instances", headers=AUTH)
                seen = [i["url"] for i in _instances(listed.json(), "news")]
                if url in seen:
                    break
                await asyncio.sleep(0.05)
            assert url in seen
            gone = await second.client.post(
                "/admin/v1/services/news/instances/deregister", json={"url": url}, headers=AUTH
            )
            assert gone.status_code == 204


async def test_registration_answers_503_while_redis_is_down(settings: Settings) -> None:
    server = RedisServer()
    await server.start()
    try:
        with_redis = settings.model_copy(
            update={
                "redis_url": server.url,
                "resilience": ResilienceSettings(health_checks=False),
            }
        )
        async with running_gateway(with_redis) as gateway:
            server.kill()
            response = await gateway.client.post(
                "/admin/v1/services/news/instances/register",
                json={"url": "http://10.9.0.4:8080"},
                headers=AUTH,
            )
            assert "registration store" in assert_problem(response, 503)["detail"]
    finally:
        server.kill()


async def test_the_gateways_health_checks_show_a_dead_instance_out_of_rotation(
    settings: Settings, platform: Platform
) -> None:
    dead = "http://127.0.0.1:1"
    services = {**settings.services, "news": [*platform.urls["news"], dead]}
    async with running_gateway(settings.model_copy(update={"services": services})) as gateway:
        client = gateway.client
        client.headers.update(AUTH)
        changed = await client.put(
            "/admin/v1/services/news/policy",
            json={"health_check": {"interval_ms": 100, "unhealthy_threshold": 2}},
        )
        assert changed.status_code == 200
        views: dict[str, dict[str, Any]] = {}
        for _ in range(60):
            listed = (await client.get("/admin/v1/traffic/instances")).json()
            views = {i["url"]: i for i in _instances(listed, "news")}
            if not views[dead]["healthy"]:
                break
            await asyncio.sleep(0.05)
    assert views[dead]["healthy"] is False
    assert views[dead]["in_rotation"] is False
    assert views[dead]["last_error"]
    assert views[platform.urls["news"][0]]["in_rotation"] is True
