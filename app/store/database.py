"""The config store's engine and sessions."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import overload

from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.errors import Conflict

CONFLICTING_CHANGE = "The change conflicts with the stored configuration."

# The session's own scratch space (`Session.info`) holds its post-commit callbacks.
_AFTER_COMMIT = "after_commit"


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys switched on, as PostgreSQL has them."""
    engine = create_async_engine(database_url, pool_pre_ping=True)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_foreign_keys)
    return engine


def _sqlite_foreign_keys(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def transaction(factory: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session committed when the block succeeds, rolled back when it raises; after a
    successful commit, and only then, the callbacks given to `after_commit` run in order.

    A constraint the commit breaks is a 409: another request committed a conflicting row
    between this one's checks and its commit.
    """
    async with factory() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        try:
            await session.commit()
        except IntegrityError as exc:
            await session.rollback()
            raise Conflict(CONFLICTING_CHANGE) from exc
        for callback in session.info.pop(_AFTER_COMMIT, ()):
            await callback()


def after_commit(session: AsyncSession, callback: Callable[[], Awaitable[object]]) -> None:
    """Run `callback` once the session's transaction has committed; never if it rolls back.

    How a change is announced to other processes only once it is there for them to read.
    """
    session.info.setdefault(_AFTER_COMMIT, []).append(callback)


@overload
def stored_utc(value: datetime) -> datetime: ...
@overload
def stored_utc(value: None) -> None: ...
@overload
def stored_utc(value: datetime | None) -> datetime | None: ...
def stored_utc(value: datetime | None) -> datetime | None:
    """A timestamp read from the store, with its zone: SQLite hands them back naive, and
    they were written in UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value
