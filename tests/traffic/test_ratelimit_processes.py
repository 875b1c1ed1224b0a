"""One limit shared exactly by four gateway worker processes through Redis.

The partner, its API key and the limit are written to the config database before the
workers start, so every worker's first snapshot already has them.
"""

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from app.security.apikeys import KeyHasher, issue_key
from app.store.database import create_engine, session_factory
from app.store.models import ApiKey, Consumer, Plan, RateLimitRule
from app.store.rate_limit_rules import RateLimitRuleRepository
from backends.launcher import Platform
from tests.fixtures.redis import PrefixedRedis, free_port, prefixed_redis

ROOT = Path(__file__).resolve().parents[2]
LIMIT = 10
# One request every 60 s: the whole burst lands well inside one interval, so no request is
# refilled during it and every admitted one must see its own remaining count.
PERIOD_S = 600
# A burst of ten times the limit. Kept to 100 at once: the gateway's shared Redis client
# (API key revocations) has redis-py's default pool of 100 connections per process.
BURST = LIMIT * 10
RULE = "partner-burst"
_REMAINING = re.compile(r'^"partner-burst";r=(\d+);t=\d+$')


async def _provision_partner(database_url: str) -> str:
    """A consumer with an API key and a rate limit rule on it; the key."""
    issued = issue_key(KeyHasher(None))
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            plan = Plan(name="burst-plan", scopes=["quotes:read"])
            session.add(plan)
            await session.flush()
            consumer = Consumer(name="burst-partner", plan_id=plan.plan_id, account_ids=[])
            session.add(consumer)
            await session.flush()
            session.add(
                ApiKey(
                    consumer_id=consumer.consumer_id,
                    prefix=issued.prefix,
                    key_hash=issued.key_hash,
                    name="burst",
                )
            )
            await RateLimitRuleRepository(session).add(
                RateLimitRule(
                    name=RULE, key_by="consumer", route_prefix="/partner/", plan_name="",
                    limit=LIMIT, period_s=PERIOD_S, burst=None, enabled=True,
                )
            )  # fmt: skip
    finally:
        await engine.dispose()
    return issued.key


def _serve(env: dict[str, str], port: int) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, "-m", "uvicorn", "app.asgi:app",
        "--host", "127.0.0.1", "--port", str(port), "--workers", "4",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    # Its own session, so the workers are stopped with the supervisor.
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def _stop(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 150
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the gateway did not start within 150 s")


@pytest.fixture
def redis_for_workers() -> Iterator[PrefixedRedis]:
    # The workers run in other processes: keys are cleaned up through this event loop.
    context = prefixed_redis()
    loop = asyncio.new_event_loop()
    try:
        yield loop.run_until_complete(context.__aenter__())
    finally:
        loop.run_until_complete(context.__aexit__(None, None, None))
        loop.close()


@pytest.fixture
def four_workers(
    platform: Platform, database_url: str, redis_for_workers: PrefixedRedis
) -> Iterator[tuple[str, str]]:
    key = asyncio.run(_provision_partner(database_url))
    port = free_port()
    env = {
        **os.environ,
        "GATEWAY_SERVICES": json.dumps({name: list(urls) for name, urls in platform.urls.items()}),
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_for_workers.url,
        "GATEWAY_REDIS_PREFIX": redis_for_workers.prefix,
        "GATEWAY_ENVIRONMENT": "test",
        "GATEWAY_ACCESS_LOG": "false",
        "GATEWAY_RATE_LIMIT__ANONYMOUS_LIMIT": str(LIMIT),
        "GATEWAY_RATE_LIMIT__ANONYMOUS_PERIOD_S": str(PERIOD_S),
        # Exactness, not outages, is under test: a loaded test machine must not push the
        # limiter into its in-process fallback.
        "GATEWAY_RATE_LIMIT__REDIS_TIMEOUT_S": "3",
    }
    process = _serve(env, port)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, process)
        yield url, key
    finally:
        _stop(process)


async def test_four_workers_admit_exactly_the_limit_and_count_down_together(
    four_workers: tuple[str, str],
) -> None:
    url, key = four_workers
    limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
    headers = {"X-API-Key": key}
    async with httpx.AsyncClient(
        base_url=url, timeout=30, limits=limits, headers=headers
    ) as client:
        responses = await asyncio.gather(
            *(client.get("/partner/v1/quotes?symbols=AAPL") for _ in range(BURST))
        )

    statuses = [r.status_code for r in responses]
    assert not [s for s in statuses if s >= 500], statuses
    admitted = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(admitted) == LIMIT
    assert len(refused) == BURST - LIMIT

    seen = sorted(int(_REMAINING.match(r.headers["ratelimit"])[1]) for r in admitted)  # type: ignore[index]
    assert seen == list(range(LIMIT)), "each admitted request saw its own remaining count"
    for response in refused:
        assert response.headers["content-type"] == "application/problem+json"
        assert int(response.headers["retry-after"]) >= 1
        assert response.json()["limit"] == RULE
