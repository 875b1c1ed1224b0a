"""A batch of 10 GETs against the same 10 as separate requests (`POST /web/v1/batch`).

One signed-in client loads ten reads (symbol pages, orders, positions, bots) over and over:
as one batch, as ten requests one after another on a kept-alive connection, and as ten at
once on ten connections. Each row prints the p50/p99 of a whole set of ten and the sets per
second, and the batch's ratio to each. Run alone: `python -m bench.batch` (BENCH_SECONDS).
"""

import asyncio
import os
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable

import httpx

from backends.launcher import start_platform
from bench.servers import start_gateway

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
PATHS = [
    "/web/v2/symbols/AAPL",
    "/web/v2/symbols/MSFT",
    "/web/v2/symbols/NVDA",
    "/web/v2/orders?limit=5",
    "/web/v2/orders?status=open&limit=5",
    "/web/v2/positions",
    "/web/v2/bots",
    "/web/v2/symbols/KO",
    "/web/v2/symbols/JPM",
    "/web/v2/positions?limit=2",
]


async def _measure(one_set: Callable[[], Awaitable[None]], seconds: float) -> list[float]:
    await one_set()
    durations = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        started = time.perf_counter()
        await one_set()
        durations.append((time.perf_counter() - started) * 1000)
    return durations


def _row(label: str, durations: list[float], *, batch_p50: float | None = None) -> float:
    cuts = statistics.quantiles(durations, n=100)
    p50, p99 = statistics.median(durations), cuts[98]
    rate = len(durations) / (sum(durations) / 1000)
    ratio = "" if batch_p50 is None else f"   batch p50 {batch_p50 / p50:.2f}x this"
    print(f"{label:<48} p50 {p50:7.1f} ms  p99 {p99:7.1f} ms  {rate:7.1f} sets/s{ratio}")
    return p50


async def _compare(url: str, headers: dict[str, str], seconds: float) -> None:
    batch = {"requests": [{"method": "GET", "path": path} for path in PATHS]}
    limits = httpx.Limits(max_connections=len(PATHS), max_keepalive_connections=len(PATHS))
    async with httpx.AsyncClient(
        base_url=url, headers=headers, timeout=30, limits=limits
    ) as client:

        async def batched() -> None:
            answer = (await client.post("/web/v1/batch", json=batch)).raise_for_status().json()
            assert all(r["status"] == 200 for r in answer["responses"]), answer

        async def sequential() -> None:
            for path in PATHS:
                (await client.get(path)).raise_for_status()

        async def concurrent() -> None:
            answers = await asyncio.gather(*(client.get(path) for path in PATHS))
            for answer in answers:
                answer.raise_for_status()

        print(f"\n## A batch of {len(PATHS)} GETs against {len(PATHS)} separate requests")
        batch_p50 = _row("batch of 10, one request", await _measure(batched, seconds))
        _row(
            "10 requests one after another",
            await _measure(sequential, seconds),
            batch_p50=batch_p50,
        )
        _row(
            "10 requests at once, 10 connections",
            await _measure(concurrent, seconds),
            batch_p50=batch_p50,
        )


def batch_against_separate(database_url: str, *, seconds: float = SECONDS) -> None:
    """The rows above, against the simulated platform; `database_url` migrated."""
    platform = start_platform()
    try:
        identity = platform.urls["identity"][0]
        services = {name: urls for name, urls in platform.urls.items() if name != "identity"}
        env = {
            "GATEWAY_IDENTITY__DISCOVERY_URL": identity + "/.well-known/openid-configuration",
            "GATEWAY_RATE_LIMIT__USER_LIMIT": "1000000",
            "GATEWAY_BATCH__CONCURRENCY": "10",
            "GATEWAY_ACCESS_LOG": "false",
        }
        gateway = start_gateway("gateway", services=services, database_url=database_url, env=env)
        try:
            token = httpx.post(identity + "/__dev/token", json={"username": "alice"}, timeout=10)
            headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
            asyncio.run(_compare(gateway.url, headers, seconds))
        finally:
            gateway.stop()
    finally:
        platform.stop()


if __name__ == "__main__":
    from bench.__main__ import migrated_database

    with tempfile.TemporaryDirectory() as temporary:
        batch_against_separate(migrated_database(temporary))
