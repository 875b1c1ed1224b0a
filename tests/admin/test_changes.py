"""Commit, then notify: an admin change is announced only once it is committed, never when
the request's transaction rolls back or its commit fails."""

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.errors import Conflict
from app.store.database import after_commit, create_engine, session_factory, transaction
from app.store.models import Plan


@pytest.fixture
async def sessions(store_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(store_url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


async def _plan_names(sessions: async_sessionmaker[AsyncSession]) -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(select(Plan.name).order_by(Plan.name)))


async def test_the_notice_goes_out_after_the_commit(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    seen_by_notice: list[list[str]] = []

    async def notice() -> None:
        # What another process reloading on the notice would read.
        seen_by_notice.append(await _plan_names(sessions))

    async with transaction(sessions) as session:
        session.add(Plan(name="gold"))
        await session.flush()
        after_commit(session, notice)
        assert seen_by_notice == []

    assert seen_by_notice == [["gold"]]


async def test_no_notice_when_the_handler_fails(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    notices: list[str] = []

    async def notice() -> None:
        notices.append("changed")

    with pytest.raises(RuntimeError):
        async with transaction(sessions) as session:
            session.add(Plan(name="silver"))
            await session.flush()
            after_commit(session, notice)
            raise RuntimeError("the handler failed after writing")

    assert notices == []
    assert await _plan_names(sessions) == []


async def test_no_notice_when_the_commit_fails(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    notices: list[str] = []

    async def notice() -> None:
        notices.append("changed")

    async def conflicting_commit() -> None:
        # As when another request committed a conflicting row after this one's checks.
        raise IntegrityError("INSERT INTO plans", {}, Exception("UNIQUE constraint failed"))

    with pytest.raises(Conflict):
        async with transaction(sessions) as session:
            session.add(Plan(name="bronze"))
            await session.flush()
            after_commit(session, notice)
            monkeypatch.setattr(session, "commit", conflicting_commit)

    assert notices == []
    assert await _plan_names(sessions) == []
