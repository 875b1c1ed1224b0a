"""`python -m app.serve`: on SIGTERM the gateway reports not ready, keeps serving for the
drain period, then stops; it sends no `server` header.

The server runs as a real process, as in production, so the signal is a real one.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from backends.launcher import Platform
from tests.fixtures.consumers import create_partner
from tests.fixtures.databases import ROOT
from tests.fixtures.redis import free_port

DRAIN_S = 2.0
# Start-up, and after the drain the graceful stop (nothing is in flight then).
START_BOUND_S = 60.0
STOP_BOUND_S = DRAIN_S + 8.0


@pytest.fixture
def server_env(platform: Platform, database_url: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GATEWAY_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    services = {name: urls for name, urls in platform.urls.items() if name != "identity"}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        GATEWAY_ENVIRONMENT="test",
        GATEWAY_ADMIN_TOKEN="test-admin-token",
        GATEWAY_SERVICES=json.dumps(services),
        GATEWAY_IDENTITY__DISCOVERY_URL=(
            f"{platform.urls['identity'][0]}/.well-known/openid-configuration"
        ),
        GATEWAY_DRAIN_S=str(DRAIN_S),
    )
    return env


@pytest.fixture
def server(
    server_env: dict[str, str], tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--host", "127.0.0.1", "--port", str(port)],
        env=server_env,
        # Files the gateway writes by relative path (var/) stay in the test's directory.
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()
        print((tmp_path / "serve.log").read_text(errors="replace"))


@pytest.fixture
async def client(
    server: tuple[subprocess.Popen[bytes], str],
) -> AsyncIterator[httpx.AsyncClient]:
    process, url = server
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        deadline = time.monotonic() + START_BOUND_S
        while True:
            assert process.poll() is None, "the server exited during start-up"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        yield client


async def test_sigterm_drains_then_stops(
    server: tuple[subprocess.Popen[bytes], str], client: httpx.AsyncClient
) -> None:
    process, _ = server
    partner = await create_partner(client)
    quotes = "/partner/v1/quotes?symbols=AAPL"
    before = [await client.get("/readyz"), await client.get(quotes, headers=partner.headers)]
    assert [r.status_code for r in before] == [200, 200], [r.text for r in before]
    assert before[0].json()["status"] == "ready"

    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    for _ in range(50):
        ready = await client.get("/readyz")
        if ready.status_code == 503:
            break
        await asyncio.sleep(0.02)
    assert ready.status_code == 503, ready.text
    assert ready.json()["status"] == "draining"
    during = [await client.get("/healthz"), await client.get(quotes, headers=partner.headers)]
    assert [r.status_code for r in during] == [200, 200], [r.text for r in during]
    assert time.monotonic() - signalled < DRAIN_S, "the checks must fall inside the drain"

    for response in [*before, ready, *during]:
        assert "server" not in response.headers

    returncode = await asyncio.to_thread(process.wait, STOP_BOUND_S)
    stopped_after = time.monotonic() - signalled
    assert stopped_after >= DRAIN_S
    # uvicorn ends by re-raising the signal it stopped on.
    assert returncode in (0, -signal.SIGTERM)
    with pytest.raises(httpx.TransportError):
        await client.get("/healthz")
