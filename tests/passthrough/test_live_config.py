"""Live config across processes: a route made on one gateway process is served by another
within a second (the change notice over Redis; without it, catching up by the store's
revision); each process reports its version and the store's revision; a request in flight
finishes on the declaration it started with."""

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from app.settings import Settings
from tests.fixtures.consumers import ADMIN
from tests.fixtures.databases import in_ci
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.redis import prefixed_redis
from tests.passthrough.conftest import add_route

# The bound under CI; a busy workstation gets some slack.
VISIBLE_WITHIN_S = 1.0 if in_ci() else 3.0


async def _visible_within(gateway: RunningGateway, path: str, *, started: float) -> float:
    while True:
        response = await gateway.client.get(path)
        elapsed = time.monotonic() - started
        if response.status_code == 200:
            return elapsed
        assert response.status_code == 404, response.text
        assert elapsed < VISIBLE_WITHIN_S, f"not served after {elapsed:.2f} s"
        await asyncio.sleep(0.02)


async def _config(gateway: RunningGateway) -> dict[str, object]:
    response = await gateway.client.get("/admin/v1/config", headers=ADMIN)
    assert response.status_code == 200
    body: dict[str, object] = response.json()
    return body


@pytest.fixture
async def pair(
    passthrough_settings: Settings,
) -> AsyncIterator[tuple[RunningGateway, RunningGateway]]:
    """Two gateway processes on one config store and one Redis."""
    async with prefixed_redis() as redis:
        shared = passthrough_settings.model_copy(
            update={"redis_url": redis.url, "redis_prefix": redis.prefix, "config_refresh_s": 0}
        )
        async with running_gateway(shared) as first, running_gateway(shared) as second:
            yield first, second


async def test_a_route_made_on_one_process_is_served_by_another(
    pair: tuple[RunningGateway, RunningGateway],
) -> None:
    first, second = pair
    assert (await second.client.get("/api/live/one")).status_code == 404
    await add_route(
        first.client,
        name="live-one",
        match={"path": "/live/one"},
        upstream={"service": "echo", "path": "/article"},
    )
    # From the commit: the admin API answers once the change is committed.
    started = time.monotonic()
    await _visible_within(second, "/api/live/one", started=started)
    one, two = await _config(first), await _config(second)
    assert one["revision"] == two["revision"]
    assert "live-one" in one["routes"] and "live-one" in two["routes"]  # type: ignore[operator]


async def test_a_process_without_notices_catches_up_by_revision(
    passthrough_settings: Settings,
) -> None:
    """No Redis, no periodic reload: only the revision check tells the second process."""
    alone = passthrough_settings.model_copy(update={"redis_url": None, "config_refresh_s": 0})
    async with running_gateway(alone) as first, running_gateway(alone) as second:
        before = await _config(second)
        await add_route(
            first.client,
            name="live-two",
            match={"path": "/live/two"},
            upstream={"service": "echo", "path": "/article"},
        )
        started = time.monotonic()
        await _visible_within(second, "/api/live/two", started=started)
        after = await _config(second)
        assert after["revision"] == (await _config(first))["revision"]
        assert after["revision"] > before["revision"]  # type: ignore[operator]
        assert after["version"] > before["version"]  # type: ignore[operator]


async def test_a_request_in_flight_finishes_on_its_declaration(gateway: RunningGateway) -> None:
    created = await add_route(
        gateway.client,
        name="live-slow",
        match={"path": "/live/slow"},
        upstream={"service": "echo", "path": "/slow"},
        transforms={"response": {"body": {"rename": {"headline": "title"}}}},
    )
    in_flight = asyncio.create_task(gateway.client.get("/api/live/slow?s=0.5"))
    await asyncio.sleep(0.2)
    changed = {
        **created["route"],
        "transforms": {"response": {"body": {"rename": {"headline": "changed"}}}},
    }
    replaced = await gateway.client.put(
        f"/admin/v1/routes/{created['route_id']}", json=changed, headers=ADMIN
    )
    assert replaced.status_code == 200, replaced.text
    assert (await in_flight).json() == {"title": "late", "id": 1}
    assert (await gateway.client.get("/api/live/slow?s=0")).json() == {"changed": "late", "id": 1}
