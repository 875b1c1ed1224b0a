"""Pass-through tests: a gateway with the echo upstream registered as service `echo`."""

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from app.settings import Settings
from tests.fixtures.consumers import ADMIN
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.passthrough.echo import EchoUpstream, echo_upstream


@pytest.fixture
async def echo() -> AsyncIterator[EchoUpstream]:
    async with echo_upstream() as upstream:
        yield upstream


@pytest.fixture
def passthrough_settings(settings: Settings, echo: EchoUpstream) -> Settings:
    return settings.model_copy(update={"services": {**settings.services, "echo": [echo.url]}})


@pytest.fixture
async def gateway(passthrough_settings: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(passthrough_settings) as running:
        yield running


async def add_route(client: httpx.AsyncClient, **declaration: Any) -> dict[str, Any]:
    """Create a route through the admin API; its stored view."""
    body = {"upstream": {"service": "echo"}, "auth": "none", **declaration}
    response = await client.post("/admin/v1/routes", json=body, headers=ADMIN)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
