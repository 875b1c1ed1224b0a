"""The Redis level shared by two gateway processes (`python -m app.serve`, real processes on
one Redis and one config database): what one stores the other serves, and concurrent misses
in both make one backend call. Under CI=true a missing Redis fails the test."""

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest

from backends.launcher import Platform
from tests.fixtures.consumers import create_partner
from tests.fixtures.databases import ROOT
from tests.fixtures.platform_control import PlatformControl, platform_control
from tests.fixtures.redis import PrefixedRedis, free_port, prefixed_redis

START_BOUND_S = 60.0
QUOTES = "/partner/v1/quotes"


@pytest.fixture
async def redis() -> AsyncIterator[PrefixedRedis]:
    async with prefixed_redis() as found:
        yield found


@contextmanager
def gateway_process(env: dict[str, str], directory: Path) -> Iterator[str]:
    port = free_port()
    directory.mkdir()
    with (directory / "serve.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "app.serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            cwd=directory,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            process.kill()
            process.wait()


async def _started(client: httpx.AsyncClient, url: str) -> None:
    deadline = time.monotonic() + START_BOUND_S
    while True:
        assert time.monotonic() < deadline, f"{url} did not start"
        try:
            if (await client.get(url + "/readyz")).status_code == 200:
                return
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.1)


@pytest.fixture
async def backends(platform: Platform) -> AsyncIterator[PlatformControl]:
    async with platform_control(platform) as control:
        yield control


async def test_two_processes_share_the_redis_level(
    platform: Platform,
    database_url: str,
    redis: PrefixedRedis,
    backends: PlatformControl,
    tmp_path: Path,
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GATEWAY_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    services = {name: urls for name, urls in platform.urls.items() if name != "identity"}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        REDIS_URL=redis.url,
        GATEWAY_REDIS_PREFIX=redis.prefix,
        GATEWAY_ENVIRONMENT="test",
        GATEWAY_ADMIN_TOKEN="test-admin-token",
        GATEWAY_SERVICES=json.dumps(services),
        GATEWAY_IDENTITY__DISCOVERY_URL=(
            f"{platform.urls['identity'][0]}/.well-known/openid-configuration"
        ),
        GATEWAY_ACCESS_LOG="false",
        GATEWAY_CACHE__QUOTES_TTL_S="30",
    )
    with ExitStack() as stack:
        first = stack.enter_context(gateway_process(env, tmp_path / "one"))
        second = stack.enter_context(gateway_process(env, tmp_path / "two"))
        async with httpx.AsyncClient(timeout=10) as client:
            await asyncio.gather(_started(client, first), _started(client, second))
            async with httpx.AsyncClient(base_url=first, timeout=10) as admin:
                partner = await create_partner(admin, plan={"rate_per_minute": 100_000})
            # The second process learns of the new key from the change notice.
            for _ in range(100):
                known = await client.get(
                    second + QUOTES, params={"symbols": "META"}, headers=partner.headers
                )
                if known.status_code == 200:
                    break
                await asyncio.sleep(0.1)
            assert known.status_code == 200, known.text

            await backends.reset_stats("market-data")
            params = {"symbols": "AAPL,MSFT,NVDA"}
            stored = await client.get(first + QUOTES, params=params, headers=partner.headers)
            served = await client.get(second + QUOTES, params=params, headers=partner.headers)
            assert "stored" in stored.headers["cache-status"]
            assert served.headers["cache-status"].startswith("gateway; hit")
            assert served.content == stored.content
            # `Date` is a singleton field: the server's, never a second one from the entry.
            for answer in (stored, served):
                assert len(answer.headers.get_list("date")) == 1, answer.headers
            assert await backends.requests("market-data") == {"GET /quotes": 1}

            await backends.fault("market-data", latency_ms=300)
            await backends.reset_stats("market-data")
            params = {"symbols": "TSLA,AMZN"}
            answers = await asyncio.gather(
                *(
                    client.get(url + QUOTES, params=params, headers=partner.headers)
                    for url in [first, second] * 8
                )
            )
            assert {a.status_code for a in answers} == {200}
            assert len({a.content for a in answers}) == 1
            assert await backends.requests("market-data") == {"GET /quotes": 1}

            # An invalidation through one process's admin API reaches the other's memory.
            invalidated = await client.post(
                first + "/admin/v1/cache/invalidations",
                json={"patterns": [QUOTES + "*"]},
                headers={"Authorization": "Bearer test-admin-token"},
            )
            assert invalidated.status_code == 200, invalidated.text
            await backends.clear_faults()
            for _ in range(50):
                after = await client.get(second + QUOTES, params=params, headers=partner.headers)
                if "fwd=uri-miss" in after.headers["cache-status"]:
                    break
                await asyncio.sleep(0.05)
            assert "fwd=uri-miss" in after.headers["cache-status"]
