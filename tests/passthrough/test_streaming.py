"""Bodies stream through a pass-through route both ways: a 100 MB download and a 100 MB
upload pass through a gateway process (`python -m app.serve`, as in production) whose peak
memory (VmHWM) grows by far less than the body."""

import asyncio
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from backends.launcher import Platform
from tests.fixtures.consumers import ADMIN
from tests.fixtures.databases import ROOT
from tests.fixtures.redis import free_port
from tests.passthrough.echo import EchoUpstream

SIZE = 100 * 1024 * 1024
CHUNK = 256 * 1024
# The gateway's peak memory may grow by this much while 100 MB pass each way.
GROWTH_BOUND = 40 * 1024 * 1024
START_BOUND_S = 60.0


def _peak_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc")


@pytest.fixture
def gateway_process(
    platform: Platform, database_url: str, echo: EchoUpstream, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("GATEWAY_") and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        GATEWAY_ENVIRONMENT="test",
        GATEWAY_ADMIN_TOKEN="test-admin-token",
        GATEWAY_ACCESS_LOG="false",
        GATEWAY_SERVICES=json.dumps({"echo": [echo.url]}),
        GATEWAY_IDENTITY__DISCOVERY_URL=(
            f"{platform.urls['identity'][0]}/.well-known/openid-configuration"
        ),
        GATEWAY_DRAIN_S="0",
    )
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
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


@pytest.fixture
async def client(
    gateway_process: tuple[subprocess.Popen[bytes], str],
) -> AsyncIterator[httpx.AsyncClient]:
    process, url = gateway_process
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        started = time.monotonic()
        while True:
            assert process.poll() is None, "the gateway exited during start-up"
            try:
                if (await client.get("/healthz")).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() - started < START_BOUND_S
            await asyncio.sleep(0.1)
        route = {
            "name": "echo-bulk",
            "match": {"path_prefix": "/bulk"},
            "upstream": {"service": "echo", "path": "/"},
            "auth": "none",
            "timeout_ms": 10_000,
        }
        created = await client.post("/admin/v1/routes", json=route, headers=ADMIN)
        assert created.status_code == 201, created.text
        yield client


async def _upload_body() -> AsyncIterator[bytes]:
    block = b"u" * CHUNK
    for _ in range(SIZE // CHUNK):
        yield block


async def test_100_mb_each_way_in_bounded_memory(
    client: httpx.AsyncClient, gateway_process: tuple[subprocess.Popen[bytes], str]
) -> None:
    process, _ = gateway_process
    # Warm the path up, so the baseline holds what any request needs.
    warm = await client.get(
        "/api/bulk/download?bytes=1048576", headers={"Accept-Encoding": "identity"}
    )
    assert warm.status_code == 200 and len(warm.content) == 1024 * 1024
    baseline = _peak_bytes(process.pid)

    received = 0
    async with client.stream(
        "GET",
        "/api/bulk/download",
        params={"bytes": str(SIZE)},
        headers={"Accept-Encoding": "identity"},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-length"] == str(SIZE)
        async for chunk in response.aiter_raw():
            received += len(chunk)
    assert received == SIZE

    expected = hashlib.sha256(b"u" * SIZE).hexdigest()
    uploaded = await client.post(
        "/api/bulk/upload",
        content=_upload_body(),
        headers={"Content-Length": str(SIZE), "Content-Type": "application/octet-stream"},
    )
    assert uploaded.status_code == 200, uploaded.text
    assert uploaded.json() == {"received": SIZE, "sha256": expected}

    growth = _peak_bytes(process.pid) - baseline
    assert growth < GROWTH_BOUND, f"peak memory grew by {growth / 2**20:.1f} MiB"
