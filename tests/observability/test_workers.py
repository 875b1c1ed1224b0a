"""`python -m app.serve --workers 2`: whichever worker a scrape reaches, `/metrics` counts the
traffic both served, exactly; a previous run's files are cleared at start and the workers'
live gauges when they stop."""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from backends.launcher import Platform
from tests.fixtures.databases import ROOT
from tests.fixtures.redis import free_port
from tests.observability.test_metrics import parse, total

START_BOUND_S = 90.0
# Requests go out this many at once, each on a connection of its own, so both workers
# accept some; at most MAX_REQUESTS before the test gives up on the second worker.
BATCH = 20
MAX_REQUESTS = 400


@pytest.fixture
def metrics_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "metrics"
    directory.mkdir()
    # An earlier run's file (here: not even a valid one) must not count in this run.
    (directory / "counter_999999.db").write_bytes(b"stale")
    return directory


@pytest.fixture
def two_workers(
    platform: Platform, database_url: str, tmp_path: Path, metrics_dir: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("GATEWAY_", "OTEL_")) and key not in {"DATABASE_URL", "REDIS_URL"}
    }
    services = {name: urls for name, urls in platform.urls.items() if name != "identity"}
    env.update(
        PYTHONPATH=str(ROOT),
        DATABASE_URL=database_url,
        GATEWAY_ENVIRONMENT="test",
        GATEWAY_SERVICES=json.dumps(services),
        GATEWAY_IDENTITY__DISCOVERY_URL=(
            f"{platform.urls['identity'][0]}/.well-known/openid-configuration"
        ),
        GATEWAY_ACCESS_LOG="false",
        GATEWAY_DRAIN_S="0",
        PROMETHEUS_MULTIPROC_DIR=str(metrics_dir),
    )
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "app.serve", "--port", str(port), "--workers", "2"],
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
        print((tmp_path / "serve.log").read_text(errors="replace"))


def _worker_files(directory: Path, kind: str) -> set[str]:
    return {path.name for path in directory.glob(f"{kind}_*.db")}


async def test_two_workers_count_exactly_the_traffic_sent(
    two_workers: tuple[subprocess.Popen[bytes], str], metrics_dir: Path
) -> None:
    process, url = two_workers
    deadline = time.monotonic() + START_BOUND_S
    async with httpx.AsyncClient(base_url=url, timeout=5) as probe:
        while True:
            assert process.poll() is None, "the server exited during start-up"
            assert time.monotonic() < deadline, "the server did not start"
            try:
                if (await probe.get("/readyz")).status_code in (200, 503):
                    break
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)
    assert not (metrics_dir / "counter_999999.db").exists()

    # New connections each, so the kernel hands them to both workers' accept loops.
    fresh = httpx.Limits(max_keepalive_connections=0)
    sent = 0
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=fresh) as client:
        while sent < MAX_REQUESTS:
            answers = await asyncio.gather(*(client.get("/healthz") for _ in range(BATCH)))
            assert all(answer.status_code == 200 for answer in answers)
            sent += BATCH
            if len(_worker_files(metrics_dir, "histogram")) >= 2:
                break
        assert len(_worker_files(metrics_dir, "histogram")) == 2, "one worker served it all"

        # Several scrapes, reaching either worker: each sees the same, exact sums.
        for _ in range(4):
            scraped = await client.get("/metrics")
            assert scraped.status_code == 200
            samples = parse(scraped.text)
            served = total(
                samples,
                "http_server_request_duration_seconds_count",
                http_route="/healthz",
                http_response_status_code="200",
            )
            assert served == sent
            # The scrape itself, on whichever worker: one in flight across both.
            assert total(samples, "http_server_active_requests") == 1
            assert total(samples, "gateway_config_version") >= 1

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0
    # Counters stay for the next scrape of a restarted set; the dead workers' live gauges go.
    assert len(_worker_files(metrics_dir, "histogram")) == 2
    assert not _worker_files(metrics_dir, "gauge_livesum")
    assert not _worker_files(metrics_dir, "gauge_livemin")
