"""Steering the simulated platform from partner frontend tests: faults and request counts."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway, running_gateway


class Backends:
    """Faults and request counts of the simulated services, over their control endpoints."""

    def __init__(self, platform: Platform, client: httpx.AsyncClient) -> None:
        self.platform = platform
        self.client = client

    async def fault(self, service: str, **settings: Any) -> None:
        for url in self.platform.urls[service]:
            (await self.client.put(f"{url}/__faults", json=settings)).raise_for_status()

    async def reset_stats(self, *services: str) -> None:
        for service in services:
            for url in self.platform.urls[service]:
                (await self.client.delete(f"{url}/__stats")).raise_for_status()

    async def requests(self, service: str) -> dict[str, int]:
        """Requests per "METHOD /path", summed over the service's instances.

        The gateway's own health probes are left out: they come and go on their schedule.
        """
        counts: dict[str, int] = {}
        for url in self.platform.urls[service]:
            stats = (await self.client.get(f"{url}/__stats")).json()
            for route, count in stats["requests"].items():
                if route != "GET /health":
                    counts[route] = counts.get(route, 0) + count
        return counts

    async def client_token(self, client_id: str) -> str:
        """An access token for a partner's OAuth client, from the development identity provider."""
        url = self.platform.urls["identity"][0] + "/__dev/token"
        response = await self.client.post(url, json={"client_id": client_id})
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token

    async def get(self, service: str, path: str, **params: str) -> Any:
        """A service's own answer, straight from its first instance."""
        response = await self.client.get(self.platform.urls[service][0] + path, params=params)
        response.raise_for_status()
        return response.json()


@pytest.fixture
async def backends(platform: Platform) -> AsyncIterator[Backends]:
    async with httpx.AsyncClient(timeout=5) as client:
        yield Backends(platform, client)


@pytest.fixture
async def gateway(settings: Settings, backends: Backends) -> AsyncIterator[RunningGateway]:
    """The gateway, its client holding the partner-acme client's token."""
    async with running_gateway(settings) as running:
        token = await backends.client_token("partner-acme")
        running.client.headers["Authorization"] = f"Bearer {token}"
        yield running


def assert_problem(response: httpx.Response, status: int) -> dict[str, Any]:
    """The response is a problem+json document with `status`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    return problem


def field_errors(problem: dict[str, Any]) -> set[str]:
    """The fields a validation problem names."""
    return {error["field"] for error in problem.get("errors", [])}
