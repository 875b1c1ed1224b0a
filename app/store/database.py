"""The config store's engine and sessions."""

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any, overload

from sqlalchemy import event, make_url, text
from sqlalchemy.exc import (
    DBAPIError,
    IntegrityError,
    InterfaceError,
    OperationalError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from app.errors import Conflict, ServiceUnavailable

CONFLICTING_CHANGE = "The change conflicts with the stored configuration."
# Seconds a client is asked to wait when the config database is unavailable: an outage of a
# database is rarely over in a second.
UNAVAILABLE_RETRY_AFTER_S = 5
# SQLSTATE classes of a database that cannot serve right now: connection exception (08),
# insufficient resources (53), operator intervention (57, e.g. statement timeout, shutdown).
_UNAVAILABLE_SQLSTATES = ("08", "53", "57")

# The session's own scratch space (`Session.info`) holds its post-commit callbacks.
_AFTER_COMMIT = "after_commit"


class ConfigStoreUnavailable(ServiceUnavailable):
    """The config database did not answer, or not in time."""

    slug, title = "config-store-unavailable", "Config store unavailable"

    def __init__(self) -> None:
        super().__init__(
            "The gateway's config database is unavailable; try again shortly.",
            headers={"Retry-After": str(UNAVAILABLE_RETRY_AFTER_S)},
        )


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` says the database cannot be reached or did not answer in time, rather
    than that a statement was wrong."""
    if isinstance(exc, OperationalError | InterfaceError | PoolTimeout | OSError | TimeoutError):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return True
        code = getattr(exc.orig, "sqlstate", None)
        return isinstance(code, str) and code.startswith(_UNAVAILABLE_SQLSTATES)
    return False


def create_engine(
    database_url: str,
    *,
    connect_timeout_s: float | None = None,
    statement_timeout_s: float | None = None,
) -> AsyncEngine:
    """An async engine; SQLite gets foreign keys switched on, as PostgreSQL has them.

    With the timeouts, no call waits on the database for longer: a connection attempt (and a
    wait for a pooled connection) gives up after `connect_timeout_s`, a statement after
    `statement_timeout_s`, both in the client, so a database that accepts connections and
    then says nothing cannot hold a caller; PostgreSQL also ends the statement itself.
    """
    backend = make_url(database_url).get_backend_name()
    options: dict[str, Any] = {"pool_pre_ping": True}
    connect_args: dict[str, Any] = {}
    if backend == "postgresql":
        if connect_timeout_s is not None:
            connect_args["timeout"] = connect_timeout_s
            options["pool_timeout"] = connect_timeout_s
        if statement_timeout_s is not None:
            connect_args["command_timeout"] = statement_timeout_s
            connect_args["server_settings"] = {
                "statement_timeout": str(max(1, round(statement_timeout_s * 1000)))
            }
    elif backend == "sqlite" and statement_timeout_s is not None:
        # How long a statement waits for another connection's lock on the file.
        connect_args["timeout"] = statement_timeout_s
    engine = create_async_engine(database_url, connect_args=connect_args, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_foreign_keys)
    return engine


async def read_one_view(session: AsyncSession) -> None:
    """Make the session's following reads one view of the store, as of its first read.

    Without this, each statement sees whatever was committed when it ran (PostgreSQL's READ
    COMMITTED; SQLite under pysqlite opens no transaction for a SELECT), so reading several
    tables while a change commits can mix rows from before and after it. Called before the
    session's first statement: PostgreSQL reads at REPEATABLE READ; SQLite opens a read
    transaction, which a concurrent commit waits for (or, in WAL mode, does not disturb).
    """
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
    else:
        await session.execute(text("BEGIN"))


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
