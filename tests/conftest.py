"""Shared fixtures: the simulated platform on real sockets, a migrated config store, the gateway."""

import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.settings import IdentitySettings, Settings
from backends.launcher import Platform, start_platform
from tests.fixtures.databases import migrate, sqlite_url
from tests.fixtures.gateway import RunningGateway, running_gateway


@pytest.fixture(scope="session")
def platform() -> Iterator[Platform]:
    """Every simulated service, each in its own process on a free port."""
    running = start_platform()
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One migrated SQLite file per run; each test gets its own copy."""
    directory = tmp_path_factory.mktemp("template")
    migrate(sqlite_url(directory))
    return directory / "gateway.db"


@pytest.fixture
def database_url(migrated_sqlite: Path, tmp_path: Path) -> str:
    shutil.copyfile(migrated_sqlite, tmp_path / "gateway.db")
    return sqlite_url(tmp_path)


@pytest.fixture
def settings(platform: Platform, database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        environment="test",
        database_url=database_url,
        config_snapshot_path=str(tmp_path / "config-snapshot.json"),
        # The identity provider is trusted through its discovery URL, not routed to.
        services={name: list(urls) for name, urls in platform.urls.items() if name != "identity"},
        identity=IdentitySettings(
            discovery_url=f"{platform.urls['identity'][0]}/.well-known/openid-configuration"
        ),
        admin_token="test-admin-token",
        access_log=False,
    )


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    async with running_gateway(settings) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset_faults(request: pytest.FixtureRequest) -> Iterator[None]:
    """Faults injected by one test never leak into the next."""
    yield
    if "platform" in request.fixturenames:
        request.getfixturevalue("platform").reset_faults()
