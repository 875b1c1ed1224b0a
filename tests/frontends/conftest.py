"""Fixtures of every frontend's tests: a busy trader's orders service and a gateway on it."""

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.settings import Settings
from backends.launcher import BackendProcess, Platform, start_service
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers

BUSY_ACCOUNT = "ACC-1001"
# As many extra working orders as the account that made the dashboard 3.3 MB had.
SEEDED_OPEN_ORDERS = 10_777
SEEDED_SYMBOL = "MSFT"


@pytest.fixture(scope="module")
def busy_orders() -> Iterator[BackendProcess]:
    """An orders service of the module's own, where alice has 10,777 more working orders."""
    backend = start_service("orders", instance="orders-busy")
    try:
        seed = {"count": SEEDED_OPEN_ORDERS, "symbol": SEEDED_SYMBOL}
        with httpx.Client(base_url=backend.url, timeout=30) as client:
            seeded = client.post(f"/__seed/accounts/{BUSY_ACCOUNT}/open-orders", json=seed)
        assert seeded.status_code == 201, seeded.text
        assert seeded.json()["open"] > SEEDED_OPEN_ORDERS
        yield backend
    finally:
        backend.stop()


@pytest.fixture
async def busy(
    settings: Settings, platform: Platform, busy_orders: BackendProcess
) -> AsyncIterator[RunningGateway]:
    """The gateway on the busy orders service, its client signed in as alice."""
    services = {**settings.services, "orders": [busy_orders.url]}
    async with running_gateway(settings.model_copy(update={"services": services})) as running:
        running.client.headers.update(await bearer_headers(platform, username="alice"))
        busy_orders.reset_stats()
        yield running
