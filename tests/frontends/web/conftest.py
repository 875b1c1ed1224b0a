"""Fixtures of the web frontend tests: the platform's control, a signed-in gateway."""

from collections.abc import AsyncIterator

import pytest

from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.platform_control import PlatformControl, platform_control


@pytest.fixture
async def alice(gateway: RunningGateway, platform: Platform) -> RunningGateway:
    """The gateway, its client signed in as alice (account ACC-1001)."""
    gateway.client.headers.update(await bearer_headers(platform, username="alice"))
    return gateway


@pytest.fixture
async def control(platform: Platform) -> AsyncIterator[PlatformControl]:
    async with platform_control(platform) as steering:
        yield steering
