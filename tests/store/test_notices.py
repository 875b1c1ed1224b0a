"""Change notices: a change made through one gateway process reaches the others via Redis."""

import asyncio
import time
from typing import Any

import orjson
import pytest

from app.settings import Settings
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.redis import RedisServer, prefixed_redis

pytestmark = pytest.mark.redis

AUTH = {"Authorization": "Bearer test-admin-token"}
DEAD_URL = "http://127.0.0.1:1"


async def readiness(gw: RunningGateway) -> dict[str, dict[str, Any]]:
    response = await gw.client.get("/readyz")
    return {s["service"]: s for s in response.json()["services"]}


async def eventually_registered(
    gw: RunningGateway, name: str, *, present: bool = True, instances: int | None = None
) -> dict[str, Any] | None:
    """Poll the other process's snapshot until it shows what we expect, within a bound."""
    deadline = time.monotonic() + 15
    seen: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        seen = (await readiness(gw)).get(name)
        if (seen is not None) == present and (
            instances is None or (seen is not None and seen["instances"] == instances)
        ):
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name!r} never showed as expected on {gw.url}; last seen: {seen}")


async def test_a_change_through_one_gateway_reaches_the_other(settings: Settings) -> None:
    async with prefixed_redis() as redis:
        shared = settings.model_copy(update={"redis_url": redis.url, "redis_prefix": redis.prefix})
        async with running_gateway(shared) as first, running_gateway(shared) as second:
            first.client.headers.update(AUTH)
            assert "notice-test" not in await readiness(second)

            created = await first.client.post(
                "/admin/v1/services",
                json={"name": "notice-test", "instances": [{"url": DEAD_URL}]},
            )
            assert created.status_code == 201, created.text
            assert (await eventually_registered(second, "notice-test", instances=1)) is not None

            instance_id = created.json()["instances"][0]["instance_id"]
            disabled = await first.client.patch(
                f"/admin/v1/services/notice-test/instances/{instance_id}",
                json={"enabled": False},
            )
            assert disabled.status_code == 200
            await eventually_registered(second, "notice-test", instances=0)

            assert (await first.client.delete("/admin/v1/services/notice-test")).status_code == 204
            await eventually_registered(second, "notice-test", present=False)


async def test_notices_go_out_on_the_prefixed_channel(settings: Settings) -> None:
    async with prefixed_redis() as redis:
        pubsub = redis.client.pubsub(ignore_subscribe_messages=True)
        await pubsub.subscribe(f"{redis.prefix}config-changed")
        try:
            shared = settings.model_copy(
                update={"redis_url": redis.url, "redis_prefix": redis.prefix}
            )
            async with running_gateway(shared) as gw:
                version_before = (await gw.client.get("/readyz")).json()["config_version"]
                created = await gw.client.post(
                    "/admin/v1/services", json={"name": "announced"}, headers=AUTH
                )
                assert created.status_code == 201
                message = None
                deadline = time.monotonic() + 5
                while message is None and time.monotonic() < deadline:
                    # Subscription confirmations come back as None; notices as dicts.
                    message = await pubsub.get_message(timeout=1)
                assert message is not None, "no change notice was published"
                notice = orjson.loads(message["data"])
                assert notice["version"] == version_before + 1
                assert (await gw.client.get("/readyz")).json()["config_version"] == notice[
                    "version"
                ]
        finally:
            await pubsub.aclose()


async def test_a_change_made_while_redis_was_down_arrives_when_it_is_back(
    settings: Settings,
) -> None:
    server = RedisServer()
    await server.start()
    try:
        shared = settings.model_copy(update={"redis_url": server.url, "redis_prefix": "gw:"})
        async with running_gateway(shared) as first, running_gateway(shared) as second:
            first.client.headers.update(AUTH)
            server.kill()
            # The change is committed and live where it was made, Redis or not.
            created = await first.client.post("/admin/v1/services", json={"name": "in-outage"})
            assert created.status_code == 201, created.text
            assert "in-outage" in await readiness(first)

            await server.start()
            # The second process's listener resubscribes and catches up by reloading.
            await eventually_registered(second, "in-outage")
    finally:
        server.kill()


async def test_without_redis_the_periodic_refresh_carries_a_change(settings: Settings) -> None:
    # The periodic refresh alone (the revision check, which would also carry it, is off).
    refreshing = settings.model_copy(
        update={"redis_url": None, "config_refresh_s": 0.2, "config_revision_check_s": 0}
    )
    async with running_gateway(refreshing) as first, running_gateway(refreshing) as second:
        version = (await second.client.get("/readyz")).json()["config_version"]
        # Nothing changed: refreshes keep the snapshot and its version.
        await asyncio.sleep(0.6)
        assert (await second.client.get("/readyz")).json()["config_version"] == version

        created = await first.client.post(
            "/admin/v1/services",
            json={"name": "refreshed", "instances": [{"url": DEAD_URL}]},
            headers=AUTH,
        )
        assert created.status_code == 201, created.text
        assert (await eventually_registered(second, "refreshed", instances=1)) is not None
        # One change, one newer snapshot: a refresh landing while the change commits reads
        # the store before it or after it, never half of it (`read_one_view`).
        assert (await second.client.get("/readyz")).json()["config_version"] == version + 1
