"""The admin API's tests run against each config store backend (SQLite and PostgreSQL)."""

from collections.abc import AsyncIterator, Iterator

import pytest

from app.settings import Settings
from tests.fixtures.consumers import ADMIN
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.store.store_backends import BACKENDS, migrated_store


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    """A migrated config store of each backend."""
    yield from migrated_store(request.param, database_url)


@pytest.fixture
async def admin(settings: Settings, store_url: str) -> AsyncIterator[RunningGateway]:
    """A gateway on that store whose client is the bootstrap admin."""
    async with running_gateway(settings.model_copy(update={"database_url": store_url})) as gw:
        gw.client.headers.update(ADMIN)
        yield gw
