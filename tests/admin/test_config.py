"""`GET /admin/v1/config`: the snapshot this process serves, on SQLite and PostgreSQL.

Refused rows are exercised in `tests/store/test_refused_rows.py`, serving from disk in
`tests/store/test_database_outage.py`.
"""

from datetime import datetime

import httpx

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.problems import assert_problem


async def test_config_names_the_served_snapshot_and_follows_each_change(
    admin: RunningGateway,
) -> None:
    response = await admin.client.get("/admin/v1/config")
    assert response.status_code == 200, response.text
    before = response.json()
    assert before["source"] == "database"
    assert before["stale"] is False
    assert before["refused"] == []
    assert before["version"] >= 1
    loaded_at = datetime.fromisoformat(before["loaded_at"])
    assert loaded_at.tzinfo is not None

    created = await admin.client.post("/admin/v1/plans", json={"name": "config-view"})
    assert created.status_code == 201, created.text

    after = (await admin.client.get("/admin/v1/config")).json()
    assert after["version"] == before["version"] + 1
    assert datetime.fromisoformat(after["loaded_at"]) >= loaded_at
    ready = (await admin.client.get("/readyz")).json()
    assert ready["config_version"] == after["version"]


async def test_config_needs_the_admin_role(admin: RunningGateway) -> None:
    async with httpx.AsyncClient(base_url=admin.url) as anonymous:
        assert_problem(await anonymous.get("/admin/v1/config"), 401)
