"""Fixtures of the partner frontend tests: the platform's control, a signed-in gateway."""

from collections.abc import AsyncIterator

import pytest

from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.consumers import linked_client_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.platform_control import PlatformControl, platform_control


@pytest.fixture
async def backends(platform: Platform) -> AsyncIterator[PlatformControl]:
    async with platform_control(platform) as control:
        yield control


@pytest.fixture
async def gateway(settings: Settings, platform: Platform) -> AsyncIterator[RunningGateway]:
    """The gateway, its client holding the partner-acme client's token (linked to a consumer
    with every partner scope and the token's accounts)."""
    async with running_gateway(settings) as running:
        await linked_client_partner(running.client)
        running.client.headers.update(await bearer_headers(platform, client_id="partner-acme"))
        yield running
