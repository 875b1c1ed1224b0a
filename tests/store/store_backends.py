"""The config-store backends the store and admin tests run on: SQLite always, PostgreSQL too."""

from collections.abc import Iterator

import pytest

from tests.fixtures.databases import migrate, postgres_database

BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


def migrated_store(backend: str, sqlite_database_url: str) -> Iterator[str]:
    """The URL of a migrated, empty config store on `backend`."""
    if backend == "sqlite":
        yield sqlite_database_url
        return
    with postgres_database() as url:
        migrate(url)
        yield url
