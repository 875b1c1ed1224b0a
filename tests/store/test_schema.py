"""The config store's schema on SQLite and PostgreSQL: migrations both ways, constraints."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import delete, func, inspect, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from sqlalchemy.sql import ColumnElement

from app.store.database import create_engine, session_factory
from app.store.models import (
    ApiKey,
    AuditEvent,
    Base,
    Consumer,
    DeveloperSignup,
    Plan,
    RateLimitRule,
    Route,
    Service,
    ServiceInstance,
)
from tests.fixtures.databases import downgrade, migrate, postgres_database, sqlite_url
from tests.store.store_backends import BACKENDS, migrated_store


@pytest.fixture(params=BACKENDS)
def empty_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with postgres_database() as url:
        yield url


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    yield from migrated_store(request.param, database_url)


@pytest.fixture
async def engine(store_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(store_url)
    try:
        yield engine
    finally:
        await engine.dispose()


async def _tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    finally:
        await engine.dispose()
    return set(names) - {"alembic_version"}


async def _columns(url: str, table: str) -> set[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as connection:
            columns = await connection.run_sync(lambda sync: inspect(sync).get_columns(table))
    finally:
        await engine.dispose()
    return {c["name"] for c in columns}


async def test_migrations_upgrade_to_head_and_downgrade_to_base(empty_store_url: str) -> None:
    # Alembic runs its own event loop, so it goes to a worker thread.
    await _in_thread(migrate, empty_store_url)
    assert await _tables(empty_store_url) == set(Base.metadata.tables)
    for table in Base.metadata.tables.values():
        assert await _columns(empty_store_url, table.name) == {c.name for c in table.columns}

    await _in_thread(downgrade, empty_store_url, "0002")
    assert "oauth_client_id" not in await _columns(empty_store_url, "consumers")
    await _in_thread(downgrade, empty_store_url, "0001")
    assert "policy" not in await _columns(empty_store_url, "services")
    await _in_thread(downgrade, empty_store_url)
    assert await _tables(empty_store_url) == set()
    # And back up again: the downgrade left nothing that blocks a fresh upgrade.
    await _in_thread(migrate, empty_store_url)
    assert await _tables(empty_store_url) == set(Base.metadata.tables)


async def _in_thread(step: Callable[..., None], *args: str) -> None:
    await asyncio.to_thread(step, *args)


async def _execute(url: str, sql: str) -> list[tuple[object, ...]]:
    engine = create_engine(url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(sql))
            return [tuple(row) for row in result] if result.returns_rows else []
    finally:
        await engine.dispose()


async def test_consumers_keep_their_rows_through_the_oauth_client_migration(
    empty_store_url: str,
) -> None:
    # On SQLite the column is added and dropped by copying the table (batch mode).
    await _in_thread(migrate, empty_store_url, "0002")
    await _execute(
        empty_store_url,
        "INSERT INTO consumers (name, account_ids, enabled, created_at) "
        "VALUES ('acme', '[\"ACC-2001\"]', true, '2026-11-26 10:40:00+00')",
    )
    await _in_thread(migrate, empty_store_url)
    assert await _execute(empty_store_url, "SELECT name, oauth_client_id FROM consumers") == [
        ("acme", None)
    ]
    await _execute(empty_store_url, "UPDATE consumers SET oauth_client_id = 'partner-acme'")

    await _in_thread(downgrade, empty_store_url, "0002")
    assert await _execute(empty_store_url, "SELECT name, enabled FROM consumers") == [
        ("acme", True)
    ]
    # The unique index went with the column: upgrading again finds nothing in the way.
    await _in_thread(migrate, empty_store_url)
    assert "oauth_client_id" in await _columns(empty_store_url, "consumers")


async def test_rows_and_references_survive_the_autoincrement_migration(
    empty_store_url: str,
) -> None:
    # On SQLite every table is copied, dropped and renamed: a dropped parent must not take
    # its children's rows along (ON DELETE CASCADE) nor be refused (RESTRICT).
    await _in_thread(migrate, empty_store_url, "0003")
    for sql in ROWS_BEFORE_0004:
        await _execute(empty_store_url, sql)

    await _in_thread(migrate, empty_store_url)
    assert await _execute(empty_store_url, ROW_IDS) == [(1, 1, 1, 1, 1, 1)]
    await _execute(empty_store_url, "DELETE FROM consumers")
    # The references still hold: the key went with its consumer.
    assert await _execute(empty_store_url, "SELECT count(*) FROM api_keys") == [(0,)]

    await _in_thread(downgrade, empty_store_url, "0003")
    assert await _execute(empty_store_url, "SELECT name FROM plans") == [("gold",)]
    assert await _execute(empty_store_url, "SELECT url FROM service_instances") == [("http://a:1",)]


ROWS_BEFORE_0004 = [
    "INSERT INTO plans (name, scopes, created_at) VALUES ('gold', '[]', '2026-11-26 10:40:00+00')",
    "INSERT INTO consumers (name, plan_id, account_ids, enabled, created_at) "
    "VALUES ('acme', 1, '[]', true, '2026-11-26 10:40:00+00')",
    "INSERT INTO api_keys (consumer_id, prefix, key_hash, name, created_at) "
    "VALUES (1, 'abc', 'hash', '', '2026-11-26 10:40:00+00')",
    "INSERT INTO services (name, timeout_ms, balancer, health_path, created_at, updated_at) "
    "VALUES ('news', 2000, 'round_robin', '/health', '2026-11-26 10:40:00+00', "
    "'2026-11-26 10:40:00+00')",
    "INSERT INTO service_instances (service_id, url, weight, enabled, created_at) "
    "VALUES (1, 'http://a:1', 1, true, '2026-11-26 10:40:00+00')",
    'INSERT INTO rate_limit_rules (name, key_by, route_prefix, plan_name, "limit", period_s, '
    "enabled, created_at) VALUES ('r', 'route', '', '', 5, 60, true, '2026-11-26 10:40:00+00')",
]
ROW_IDS = (
    "SELECT p.plan_id, c.consumer_id, k.key_id, s.service_id, i.instance_id, r.rule_id "
    "FROM plans p, consumers c, api_keys k, services s, service_instances i, rate_limit_rules r"
)


# One new row of each table with an id of its own, given the id of a fresh service and
# of a fresh consumer (the parents some rows need).
NEW_ROWS: dict[str, Callable[[int, int], Base]] = {
    "plans": lambda _s, _c: Plan(name=f"plan-{uuid.uuid4().hex[:8]}"),
    "services": lambda _s, _c: Service(name=f"svc-{uuid.uuid4().hex[:8]}"),
    "consumers": lambda _s, _c: Consumer(name=f"c-{uuid.uuid4().hex[:8]}"),
    "service_instances": lambda service_id, _c: ServiceInstance(
        service_id=service_id, url=f"http://{uuid.uuid4().hex[:8]}:1"
    ),
    "api_keys": lambda _s, consumer_id: ApiKey(
        consumer_id=consumer_id, prefix=uuid.uuid4().hex[:12], key_hash="hash"
    ),
    "rate_limit_rules": lambda _s, _c: RateLimitRule(
        name=f"r-{uuid.uuid4().hex[:8]}", key_by="route", limit=5, period_s=60
    ),
    "developer_signups": lambda _s, _c: DeveloperSignup(
        subject=f"dev-{uuid.uuid4().hex[:8]}", name="Dev"
    ),
    "audit_events": lambda _s, _c: AuditEvent(actor="dev", action="key.created", consumer_id=None),
    "routes": lambda _s, _c: Route(name=f"route-{uuid.uuid4().hex[:8]}"),
}
# Tables of one row, whose id nothing keys on.
ONE_ROW_TABLES = {"config_revision"}


async def test_ids_are_never_reused(engine: AsyncEngine) -> None:
    """The id of the newest row, deleted, is not the next row's (plain SQLite hands it out
    again, and counters keyed by the id would pass to the new row)."""
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        service, consumer = Service(name="parent"), Consumer(name="parent")
        session.add_all([service, consumer])
    assert set(NEW_ROWS) | ONE_ROW_TABLES == {t.name for t in Base.metadata.tables.values()}
    for table, new_row in NEW_ROWS.items():
        async with sessions() as session, session.begin():
            newest = new_row(service.service_id, consumer.consumer_id)
            session.add(newest)
            await session.flush()
            deleted_id = _id_of(newest)
            await session.delete(newest)
        async with sessions() as session, session.begin():
            following = new_row(service.service_id, consumer.consumer_id)
            session.add(following)
            await session.flush()
            assert _id_of(following) > deleted_id, table


def _id_of(row: Base) -> int:
    (column,) = row.__table__.primary_key.columns
    value: int = getattr(row, column.key)
    return value


async def test_service_names_are_unique(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        session.add(Service(name="unique-name"))
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            session.add(Service(name="unique-name"))
    assert await _count(sessions, Service, Service.name == "unique-name") == 1


async def test_instance_urls_are_unique_per_service(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    url = "http://10.0.0.1:8080"
    async with sessions() as session, session.begin():
        session.add(Service(name="first-svc", instances=[ServiceInstance(url=url)]))
        # The same address may serve two services.
        session.add(Service(name="second-svc", instances=[ServiceInstance(url=url)]))
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            service = await session.scalar(select(Service).where(Service.name == "first-svc"))
            assert service is not None
            session.add(ServiceInstance(service_id=service.service_id, url=url))
    assert await _count(sessions, ServiceInstance, ServiceInstance.url == url) == 2


async def test_deleting_a_service_row_cascades_to_its_instances(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        session.add(
            Service(
                name="cascading",
                instances=[ServiceInstance(url="http://a:1"), ServiceInstance(url="http://b:1")],
            )
        )
        session.add(Service(name="bystander", instances=[ServiceInstance(url="http://a:1")]))
    async with sessions() as session, session.begin():
        service_id = await session.scalar(
            select(Service.service_id).where(Service.name == "cascading")
        )
        # A bulk delete skips the ORM's cascade: only the database's ON DELETE CASCADE acts.
        await session.execute(delete(Service).where(Service.name == "cascading"))
    assert await _count(sessions, ServiceInstance, ServiceInstance.service_id == service_id) == 0
    assert await _count(sessions, ServiceInstance, ServiceInstance.url == "http://a:1") == 1


async def test_an_oauth_client_is_linked_to_one_consumer_at_most(engine: AsyncEngine) -> None:
    sessions = session_factory(engine)
    async with sessions() as session, session.begin():
        session.add(Consumer(name="acme", oauth_client_id="partner-acme"))
        # Unlinked consumers are not in each other's way.
        session.add_all([Consumer(name="first"), Consumer(name="second")])
    with pytest.raises(IntegrityError):
        async with sessions() as session, session.begin():
            session.add(Consumer(name="other", oauth_client_id="partner-acme"))
    assert await _count(sessions, Consumer, Consumer.oauth_client_id == "partner-acme") == 1
    assert await _count(sessions, Consumer, Consumer.oauth_client_id.is_(None)) == 2


async def _count(
    sessions: async_sessionmaker[AsyncSession], model: type[Base], *where: ColumnElement[bool]
) -> int:
    async with sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(model).where(*where)))
