"""A snapshot is one view of the store: a change that commits while the tables are being
read is either wholly in it or wholly out of it.

Before, each table was read by a statement of its own at whatever was committed then, so a
service added (and the revision raised) between two reads gave a snapshot holding the new
revision without the new service; the revision check, seeing the revision it expected, never
reloaded it.
"""

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from app.store.database import create_engine, session_factory
from app.store.models import Service, ServiceInstance
from app.store.routes import RevisionRepository
from app.store.snapshot import ConfigStore
from app.store.table_reader import TableReader
from tests.store.store_backends import BACKENDS, migrated_store


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    yield from migrated_store(request.param, database_url)


async def test_a_change_committed_during_a_load_is_all_in_or_all_out(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(store_url, statement_timeout_s=10)
    sessions = session_factory(engine)
    store = ConfigStore(sessions)
    try:
        before = await store.reload()

        async def add_service() -> None:
            async with sessions() as session, session.begin():
                session.add(
                    Service(
                        name="mid-load",
                        timeout_ms=1000,
                        instances=[ServiceInstance(url="http://127.0.0.1:9")],
                    )
                )
                await session.flush()
                await RevisionRepository(session).advance()

        writer: asyncio.Task[None] | None = None
        read_rows = TableReader.rows

        async def rows_with_a_change_between(self: TableReader, model: Any, *options: Any) -> Any:
            nonlocal writer
            result = await read_rows(self, model, *options)
            if model is Service and writer is None:
                # The change commits (or, where the load's read holds it, waits) right after
                # the load read the services, before the other tables and the revision.
                writer = asyncio.create_task(add_service())
                await asyncio.sleep(0.5)
            return result

        monkeypatch.setattr(TableReader, "rows", rows_with_a_change_between)
        during = await store.reload()
        assert writer is not None
        await writer
        monkeypatch.undo()

        # The load saw the store as it was before the change: no new service, old revision.
        assert "mid-load" not in during.services
        assert during.revision == before.revision
        # The next load sees all of it, so the revision check has something to catch up on.
        after = await store.reload()
        assert after.revision == before.revision + 1
        assert [i.url for i in after.services["mid-load"].instances] == ["http://127.0.0.1:9"]
    finally:
        await engine.dispose()
