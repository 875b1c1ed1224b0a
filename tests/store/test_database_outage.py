"""The config database unavailable: admin calls answer 503 in bounded time, start-up serves
the snapshot the last load wrote to disk (degraded) and catches up when the database is
back, and with neither database nor snapshot it exits with a clear message.

A silent database is a TCP proxy of the test's own (`DatabaseProxy`) that accepts and never
answers; switched to forwarding it relays to the real PostgreSQL.
"""

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from backends.launcher import free_port
from tests.fixtures.consumers import ADMIN, PartnerKey, create_partner
from tests.fixtures.databases import ROOT, migrate, postgres_database
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.problems import assert_problem
from tests.store.database_proxy import DatabaseProxy

QUOTES = "/partner/v1/quotes?symbols=AAPL"
# Generous bounds around the timeouts the tests set (1 s each): no timing is measured finer.
ANSWER_WITHIN_S = 8.0
CATCH_UP_WITHIN_S = 15.0


@pytest.fixture
async def proxy() -> AsyncIterator[DatabaseProxy]:
    silent = await DatabaseProxy().start()
    try:
        yield silent
    finally:
        await silent.close()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A migrated PostgreSQL config store, reached directly."""
    with postgres_database() as url:
        migrate(url)
        yield url


def short_bounds(settings: Settings, **update: object) -> Settings:
    """Settings whose database calls and start-up give up after a second."""
    return settings.model_copy(
        update={
            "db_connect_timeout_s": 1.0,
            "db_statement_timeout_s": 1.0,
            "startup_db_timeout_s": 1.0,
            **update,
        }
    )


def stored_snapshot(path: str | Path) -> dict[str, Any]:
    """The snapshot file's JSON document."""
    document: dict[str, Any] = json.loads(Path(path).read_bytes())
    return document


def through(proxy: DatabaseProxy, direct_url: str) -> str:
    return proxy.url(direct_url.rsplit("/", 1)[1])


async def assert_unavailable_in_bounded_time(gw: RunningGateway, method: str, path: str) -> None:
    started = time.monotonic()
    response = await gw.client.request(method, path, headers=ADMIN, json=None)
    elapsed = time.monotonic() - started
    problem = assert_problem(response, 503)
    assert problem["type"] == "/problems/config-store-unavailable"
    assert int(response.headers["retry-after"]) >= 1
    assert elapsed < ANSWER_WITHIN_S, f"{method} {path} took {elapsed:.1f} s"


@pytest.mark.postgres
async def test_admin_calls_answer_503_while_the_database_is_silent_and_work_after(
    settings: Settings, proxy: DatabaseProxy, postgres_url: str
) -> None:
    proxy.forward()
    async with running_gateway(
        short_bounds(settings, database_url=through(proxy, postgres_url))
    ) as gw:
        partner = await create_partner(gw.client)
        proxy.black_hole()

        await assert_unavailable_in_bounded_time(gw, "GET", "/admin/v1/plans")
        started = time.monotonic()
        created = await gw.client.post("/admin/v1/plans", json={"name": "in-outage"}, headers=ADMIN)
        assert_problem(created, 503)
        assert time.monotonic() - started < ANSWER_WITHIN_S
        # The hot path never asks the database: partners are served from the snapshot.
        quotes = await gw.client.get(QUOTES, headers=partner.headers)
        assert quotes.status_code == 200, quotes.text

        proxy.forward()
        listed = await gw.client.get("/admin/v1/plans", headers=ADMIN)
        assert listed.status_code == 200, listed.text
        assert partner.plan in {p["name"] for p in listed.json()["plans"]}
        assert "in-outage" not in {p["name"] for p in listed.json()["plans"]}


@pytest.mark.postgres
async def test_the_request_deadline_bounds_a_database_call(
    settings: Settings, proxy: DatabaseProxy, postgres_url: str
) -> None:
    proxy.forward()
    # The engine's own timeouts are far away: only the request's deadline can end the wait.
    patient = settings.model_copy(
        update={
            "database_url": through(proxy, postgres_url),
            "db_connect_timeout_s": 60.0,
            "db_statement_timeout_s": 300.0,
        }
    )
    async with running_gateway(patient) as gw:
        proxy.black_hole()
        started = time.monotonic()
        response = await gw.client.get(
            "/admin/v1/plans", headers={**ADMIN, "X-Request-Deadline": "1000"}
        )
        assert_problem(response, 503)
        assert time.monotonic() - started < ANSWER_WITHIN_S
        proxy.forward()


async def write_snapshot(settings: Settings) -> PartnerKey:
    """Run a gateway on a working database until it has written a snapshot with a partner."""
    async with running_gateway(settings) as gw:
        partner = await create_partner(gw.client)
    return partner


async def test_start_up_with_a_silent_database_serves_the_snapshot_from_disk(
    settings: Settings, proxy: DatabaseProxy
) -> None:
    partner = await write_snapshot(settings)
    document = stored_snapshot(settings.config_snapshot_path)
    assert partner.plan in document["snapshot"]["plans"]

    started = time.monotonic()
    async with running_gateway(short_bounds(settings, database_url=proxy.url())) as gw:
        assert time.monotonic() - started < ANSWER_WITHIN_S
        quotes = await gw.client.get(QUOTES, headers=partner.headers)
        assert quotes.status_code == 200, quotes.text

        ready = await gw.client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["status"] == "degraded"
        assert ready.json()["config"] == "stale, from disk"

        config = (await gw.client.get("/admin/v1/config", headers=ADMIN)).json()
        assert config["source"] == "disk"
        assert config["stale"] is True

        await assert_unavailable_in_bounded_time(gw, "GET", "/admin/v1/consumers")
    # Serving from disk never rewrites the file.
    assert stored_snapshot(settings.config_snapshot_path) == document


@pytest.mark.postgres
async def test_a_gateway_started_from_disk_catches_up_when_the_database_answers(
    settings: Settings, proxy: DatabaseProxy, postgres_url: str, tmp_path: Path
) -> None:
    proxy.forward()
    known = await write_snapshot(short_bounds(settings, database_url=through(proxy, postgres_url)))
    # A change made while this process was away, by another one on the database itself.
    elsewhere = settings.model_copy(
        update={
            "database_url": postgres_url,
            "config_snapshot_path": str(tmp_path / "elsewhere.json"),
        }
    )
    async with running_gateway(elsewhere) as other:
        newer = await create_partner(other.client)

    proxy.black_hole()
    async with running_gateway(
        short_bounds(settings, database_url=through(proxy, postgres_url))
    ) as gw:
        assert (await gw.client.get("/readyz")).json()["config"] == "stale, from disk"
        assert (await gw.client.get(QUOTES, headers=known.headers)).status_code == 200
        assert (await gw.client.get(QUOTES, headers=newer.headers)).status_code == 401

        proxy.forward()
        deadline = time.monotonic() + CATCH_UP_WITHIN_S
        ready = await gw.client.get("/readyz")
        while ready.status_code != 200 and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            ready = await gw.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["config"] == "current, from database"
        assert (await gw.client.get(QUOTES, headers=newer.headers)).status_code == 200
        config = (await gw.client.get("/admin/v1/config", headers=ADMIN)).json()
        assert (config["source"], config["stale"]) == ("database", False)
    stored = stored_snapshot(settings.config_snapshot_path)
    assert newer.plan in stored["snapshot"]["plans"]


async def test_start_up_with_neither_database_nor_snapshot_exits_with_a_clear_message(
    proxy: DatabaseProxy, tmp_path: Path
) -> None:
    missing = tmp_path / "never-written.json"
    env = {
        **os.environ,
        "DATABASE_URL": proxy.url(),
        "GATEWAY_STARTUP_DB_TIMEOUT_S": "2",
        "GATEWAY_DB_CONNECT_TIMEOUT_S": "1",
        "GATEWAY_CONFIG_SNAPSHOT_PATH": str(missing),
        "GATEWAY_ENVIRONMENT": "test",
    }
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "uvicorn",
        "app.asgi:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
        cwd=ROOT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout=30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    elapsed = time.monotonic() - started
    text = output.decode(errors="replace")
    assert process.returncode != 0, text
    assert "was unavailable for 2 s" in text, text
    assert f"no usable config snapshot file ({missing})" in text, text
    # The bound (2 s) plus the interpreter's start, far from the 62 s it used to take.
    assert elapsed < 25, f"took {elapsed:.1f} s"
