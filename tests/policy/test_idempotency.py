"""Orders are never duplicated: one Idempotency-Key places at most one order, in one gateway
process or across several sharing Redis."""

import asyncio
import random
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.redis import RedisServer, prefixed_redis

ORDERS_PATH = "POST /accounts/ACC-1001/orders"


@pytest.fixture
async def alice(platform: Platform) -> dict[str, str]:
    return await bearer_headers(platform, username="alice")


@pytest.fixture
def orders_backend(platform: Platform) -> Any:
    backend = platform.process("orders")
    backend.reset_stats()
    return backend


def new_order() -> dict[str, Any]:
    # A quantity of its own lets the test find its order in the account's order list.
    quantity = round(random.uniform(1, 999), 3)
    return {
        "symbol": "MSFT",
        "side": "buy",
        "type": "limit",
        "quantity": quantity,
        "limit_price": 10,
    }


def posts(backend: Any) -> int:
    return int(backend.stats()["requests"].get(ORDERS_PATH, 0))


async def orders_with_quantity(platform: Platform, quantity: float) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.get(f"{platform.urls['orders'][0]}/accounts/ACC-1001/orders")
    return [o for o in response.json()["orders"] if o["quantity"] == quantity]


def idempotent(headers: dict[str, str]) -> dict[str, str]:
    return {**headers, "Idempotency-Key": uuid.uuid4().hex}


async def test_repeat_replays_the_first_order(
    gateway: RunningGateway, alice: dict[str, str], orders_backend: Any
) -> None:
    headers, order = idempotent(alice), new_order()
    first = await gateway.client.post("/web/v1/orders", json=order, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = await gateway.client.post("/web/v1/orders", json=order, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert posts(orders_backend) == 1
    # The key is scoped to the caller, not the frontend: mobile replays the same order.
    mobile = await gateway.client.post("/mobile/v1/orders", json=order, headers=headers)
    assert mobile.status_code == 201
    assert mobile.headers["idempotent-replayed"] == "true"
    assert posts(orders_backend) == 1


async def test_same_key_with_another_body_is_422(
    gateway: RunningGateway, alice: dict[str, str]
) -> None:
    headers, order = idempotent(alice), new_order()
    assert (
        await gateway.client.post("/web/v1/orders", json=order, headers=headers)
    ).status_code == 201
    changed = {**order, "quantity": order["quantity"] + 1}
    response = await gateway.client.post("/web/v1/orders", json=changed, headers=headers)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"][0]["field"] == "header.Idempotency-Key"


async def test_order_without_key_is_422(gateway: RunningGateway, alice: dict[str, str]) -> None:
    response = await gateway.client.post("/web/v1/orders", json=new_order(), headers=alice)
    assert response.status_code == 422
    assert "Idempotency-Key" in response.text


async def test_concurrent_duplicates_wait_for_the_first(
    gateway: RunningGateway, platform: Platform, alice: dict[str, str], orders_backend: Any
) -> None:
    orders_backend.set_faults(latency_ms=300, paths=["/accounts"])
    headers, order = idempotent(alice), new_order()
    responses = await asyncio.gather(
        *(gateway.client.post("/web/v1/orders", json=order, headers=headers) for _ in range(5))
    )
    assert [r.status_code for r in responses] == [201] * 5
    assert len({r.text for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 4
    assert posts(orders_backend) == 1
    assert len(await orders_with_quantity(platform, order["quantity"])) == 1


async def test_failed_attempt_releases_the_key(
    gateway: RunningGateway, alice: dict[str, str], orders_backend: Any
) -> None:
    orders_backend.set_faults(error_rate=1.0, error_status=503, paths=["/accounts"])
    headers, order = idempotent(alice), new_order()
    failed = await gateway.client.post("/web/v1/orders", json=order, headers=headers)
    assert failed.status_code in (502, 503)
    orders_backend.reset_faults()
    retried = await gateway.client.post("/web/v1/orders", json=order, headers=headers)
    assert retried.status_code == 201, retried.text
    assert "idempotent-replayed" not in retried.headers


async def test_duplicate_gives_up_with_409_while_first_is_running(
    settings: Settings, alice: dict[str, str], orders_backend: Any
) -> None:
    impatient = settings.model_copy(
        update={
            "access": settings.access.model_copy(update={"idempotency_wait_s": 0.2}),
            "upstream": settings.upstream.model_copy(update={"default_timeout_s": 5.0}),
        }
    )
    orders_backend.set_faults(latency_ms=1200, paths=["/accounts"])
    headers, order = idempotent(alice), new_order()
    async with running_gateway(impatient) as gw:
        first = asyncio.create_task(gw.client.post("/web/v1/orders", json=order, headers=headers))
        await asyncio.sleep(0.2)
        second = await gw.client.post("/web/v1/orders", json=order, headers=headers)
        assert second.status_code == 409
        assert second.headers["retry-after"] == "1"
        assert "in progress" in second.json()["detail"]
        assert (await first).status_code == 201


@pytest.fixture
async def two_gateways(settings: Settings) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    async with prefixed_redis() as redis:
        shared = settings.model_copy(update={"redis_url": redis.url, "redis_prefix": redis.prefix})
        async with running_gateway(shared) as first, running_gateway(shared) as second:
            yield first, second


@pytest.mark.redis
async def test_two_processes_place_one_order(
    two_gateways: tuple[RunningGateway, RunningGateway],
    platform: Platform,
    alice: dict[str, str],
    orders_backend: Any,
) -> None:
    orders_backend.set_faults(latency_ms=300, paths=["/accounts"])
    headers, order = idempotent(alice), new_order()
    requests = [
        gw.client.post(path, json=order, headers=headers)
        for gw in two_gateways
        for path in ("/web/v1/orders", "/web/v1/orders", "/mobile/v1/orders")
    ]
    responses = await asyncio.gather(*requests)
    assert [r.status_code for r in responses] == [201] * 6
    web = [r.json() for r in responses if r.url.path.startswith("/web")]
    assert all(body == web[0] for body in web)
    mobile = [r.json() for r in responses if r.url.path.startswith("/mobile")]
    assert mobile[0] == mobile[1]
    assert {body["order_id"] for body in web} == {mobile[0]["id"]}
    assert posts(orders_backend) == 1
    assert len(await orders_with_quantity(platform, order["quantity"])) == 1


@pytest.mark.redis
async def test_orders_are_refused_not_duplicated_when_redis_is_down(
    settings: Settings, alice: dict[str, str], orders_backend: Any
) -> None:
    server = RedisServer()
    await server.start()
    try:
        async with running_gateway(settings.model_copy(update={"redis_url": server.url})) as gw:
            server.kill()
            headers = idempotent(alice)
            response = await gw.client.post("/web/v1/orders", json=new_order(), headers=headers)
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            assert "Idempotency-Key" in response.json()["detail"]
            assert posts(orders_backend) == 0
    finally:
        server.kill()
