"""Steering the simulated platform from web frontend tests: faults and request counts."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway


class PlatformControl:
    """Injects faults into every instance of a service and reads what the services saw."""

    def __init__(self, platform: Platform, client: httpx.AsyncClient) -> None:
        self._platform = platform
        self._client = client
        self._faulted: set[str] = set()

    async def fault(self, service: str, **settings: Any) -> None:
        for url in self._platform.urls[service]:
            response = await self._client.put(f"{url}/__faults", json=settings)
            response.raise_for_status()
            self._faulted.add(url)

    async def reset_stats(self, *services: str) -> None:
        for service in services:
            for url in self._platform.urls[service]:
                (await self._client.delete(f"{url}/__stats")).raise_for_status()

    async def requests(self, service: str) -> dict[str, int]:
        """Requests per "METHOD /path", summed over the service's instances."""
        counts: dict[str, int] = {}
        for url in self._platform.urls[service]:
            stats = (await self._client.get(f"{url}/__stats")).json()
            for route, count in stats["requests"].items():
                counts[route] = counts.get(route, 0) + count
        return counts

    async def last_headers(self, service: str, route: str) -> dict[str, str]:
        for url in self._platform.urls[service]:
            stats = (await self._client.get(f"{url}/__stats")).json()
            if route in stats["last_headers"]:
                headers: dict[str, str] = stats["last_headers"][route]
                return headers
        return {}

    async def clear_faults(self) -> None:
        for url in self._faulted:
            await self._client.delete(f"{url}/__faults")
        self._faulted.clear()


async def bearer_for(platform: Platform, username: str) -> dict[str, str]:
    """An Authorization header for a demo user, minted by the development identity provider."""
    async with httpx.AsyncClient(timeout=5) as client:
        response = await client.post(
            f"{platform.urls['identity'][0]}/__dev/token", json={"username": username}
        )
    response.raise_for_status()
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@pytest.fixture
async def alice(gateway: RunningGateway, platform: Platform) -> RunningGateway:
    """The gateway, its client signed in as alice (account ACC-1001)."""
    gateway.client.headers.update(await bearer_for(platform, "alice"))
    return gateway


@pytest.fixture
async def control(platform: Platform) -> AsyncIterator[PlatformControl]:
    async with httpx.AsyncClient(timeout=5) as client:
        steering = PlatformControl(platform, client)
        try:
            yield steering
        finally:
            await steering.clear_faults()


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a problem+json document of `status` naming the request."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["request_id"] == response.headers["x-request-id"]
    return problem
