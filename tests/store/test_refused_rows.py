"""One config row never takes the gateway down.

Rows written around the admin API (SQL by hand) that the hot path could not serve are left
out of the snapshot, each reported in `GET /admin/v1/config` with its table, id and why, and
every other caller is served as before. Before, a plan with a tiny `rate_per_second` made
every frontend route answer 500 (`OverflowError` compiling the plan's limits).
"""

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text

from app.settings import Settings
from app.store.database import create_engine, session_factory
from app.store.snapshot import ConfigStore, RefusedRow
from tests.fixtures.consumers import ADMIN, create_partner
from tests.fixtures.gateway import running_gateway
from tests.fixtures.problems import assert_problem
from tests.store.store_backends import BACKENDS, migrated_store

QUOTES = "/partner/v1/quotes?symbols=AAPL"


@pytest.fixture(params=BACKENDS)
def store_url(request: pytest.FixtureRequest, database_url: str) -> Iterator[str]:
    yield from migrated_store(request.param, database_url)


async def execute(database_url: str, statement: str) -> int:
    """Run one SQL statement on the store itself; the new row's id when it inserts one."""
    engine = create_engine(database_url)
    try:
        async with engine.begin() as connection:
            result = await connection.execute(text(statement))
            return int(result.scalar_one()) if result.returns_rows else 0
    finally:
        await engine.dispose()


def refused(config: dict[str, Any]) -> dict[tuple[str, int], str]:
    return {(row["table"], row["id"]): row["reason"] for row in config["refused"]}


async def test_rows_written_around_the_admin_api_are_refused_alone(
    settings: Settings, store_url: str
) -> None:
    async with running_gateway(settings.model_copy(update={"database_url": store_url})) as gw:
        client = gw.client
        good = await create_partner(client)
        # Below one request a day; 1e-310 is a float whose inverse is infinite.
        tiny_plan = await execute(
            store_url,
            "INSERT INTO plans (name, rate_per_second, scopes, created_at) "
            """VALUES ('tiny', 1e-310, '["quotes:read"]', CURRENT_TIMESTAMP) """
            "RETURNING plan_id",
        )
        no_period = await execute(
            store_url,
            "INSERT INTO rate_limit_rules "
            '(name, key_by, route_prefix, plan_name, "limit", period_s, enabled, created_at) '
            "VALUES ('no-period', 'address', '', '', 5, 0, TRUE, CURRENT_TIMESTAMP) "
            "RETURNING rule_id",
        )
        # An admin change reloads the snapshot with the hand-written rows in the store.
        consumer = await client.post(
            "/admin/v1/consumers", json={"name": "on-tiny", "plan": "tiny"}, headers=ADMIN
        )
        assert consumer.status_code == 201, consumer.text
        issued = await client.post(
            f"/admin/v1/consumers/{consumer.json()['consumer_id']}/keys", json={}, headers=ADMIN
        )
        assert issued.status_code == 201, issued.text
        on_tiny = {"X-API-Key": issued.json()["key"]}

        quotes = await client.get(QUOTES, headers=good.headers)
        assert quotes.status_code == 200, quotes.text
        assert_problem(await client.get("/web/v1/dashboard"), 401)
        # The refused plan grants nothing: its consumer is turned away, not served unlimited.
        assert_problem(await client.get(QUOTES, headers=on_tiny), 403)

        config = await client.get("/admin/v1/config", headers=ADMIN)
        assert config.status_code == 200, config.text
        reasons = refused(config.json())
        assert "rate_per_second" in reasons[("plans", tiny_plan)]
        assert "period_s" in reasons[("rate_limit_rules", no_period)]
        assert len(reasons) == 2, reasons

        # Fixed through the admin API, the plan is served again and no longer reported.
        fixed = await client.patch(
            "/admin/v1/plans/tiny", json={"rate_per_second": 5}, headers=ADMIN
        )
        assert fixed.status_code == 200, fixed.text
        assert (await client.get(QUOTES, headers=on_tiny)).status_code == 200
        after = (await client.get("/admin/v1/config", headers=ADMIN)).json()
        assert ("plans", tiny_plan) not in refused(after)
        assert ("rate_limit_rules", no_period) in refused(after)


async def test_a_row_that_cannot_be_read_is_refused_and_its_table_still_loads(
    database_url: str,
) -> None:
    """SQLite keeps whatever a statement gives it; converting such a value fails the query
    that reads it, and before, the whole load."""
    for statement in (
        "INSERT INTO plans (plan_id, name, rate_per_second, scopes, created_at) "
        """VALUES (1, 'good', 2.5, '["quotes:read"]', CURRENT_TIMESTAMP)""",
        "INSERT INTO plans (plan_id, name, rate_per_second, scopes, created_at) "
        "VALUES (2, 'garbled', 'fast', '[]', 'last tuesday')",
        "INSERT INTO plans (plan_id, name, scopes, created_at) "
        """VALUES (3, 'scopes-not-a-list', '"quotes:read"', CURRENT_TIMESTAMP)""",
        "INSERT INTO consumers (consumer_id, name, plan_id, account_ids, enabled, created_at) "
        "VALUES (1, 'fine', 1, '[]', 1, CURRENT_TIMESTAMP)",
        "INSERT INTO consumers (consumer_id, name, plan_id, account_ids, enabled, created_at) "
        "VALUES (2, 'broken-json', 1, '{', 1, CURRENT_TIMESTAMP)",
        "INSERT INTO consumers (consumer_id, name, plan_id, account_ids, enabled, created_at) "
        "VALUES (3, 'on-garbled', 2, '[]', 1, CURRENT_TIMESTAMP)",
        "INSERT INTO api_keys (key_id, consumer_id, prefix, key_hash, name, created_at, "
        "expires_at) VALUES (1, 1, 'aaaa', 'hash', '', CURRENT_TIMESTAMP, 'soon')",
        "INSERT INTO api_keys (key_id, consumer_id, prefix, key_hash, name, created_at) "
        "VALUES (2, 1, 'bbbb', 'hash', '', CURRENT_TIMESTAMP)",
    ):
        await execute(database_url, statement)
    engine = create_engine(database_url)
    try:
        snapshot = await ConfigStore(session_factory(engine)).reload()
    finally:
        await engine.dispose()

    assert set(snapshot.plans) == {"good"}
    assert snapshot.plans["good"].rate_per_second == 2.5
    assert set(snapshot.consumers) == {1, 3}
    # A consumer keeps naming a plan the snapshot refused; one it cannot read has no name.
    assert snapshot.consumers[1].plan == "good"
    assert snapshot.consumers[3].plan is None
    assert set(snapshot.api_keys) == {"bbbb"}
    by_row = {(row.table, row.row_id): row for row in snapshot.refused}
    assert set(by_row) == {("plans", 2), ("plans", 3), ("consumers", 2), ("api_keys", 1)}
    assert by_row[("plans", 2)].reason.startswith("cannot be read")
    assert by_row[("plans", 3)] == RefusedRow(
        "plans", 3, "scopes is not a list of strings: 'quotes:read'"
    )
