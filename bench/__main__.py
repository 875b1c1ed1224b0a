"""Run every benchmark scenario in one go and print figures (not pass/fail).

Ratios against a bare baseline measured in the same run keep a noisy machine comparable
with itself: each side is measured ROUNDS times, interleaved, and the best run counts.
"""

import asyncio
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import httpx

from backends.launcher import start_platform
from bench.load import ROUNDS, LoadResult, print_result, run_load
from bench.rate_limited import partner_quotes_rate_limited, provision_partner
from bench.servers import Server, start_uvicorn

ROOT = Path(__file__).resolve().parents[1]
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
DASHBOARD_DELAY_MS = 20
DASHBOARD_STAGES = 2


def migrated_database(directory: str) -> str:
    url = f"sqlite+aiosqlite:///{directory}/bench.db"
    subprocess.run(
        [sys.executable, "-m", "alembic", "upgrade", "head"],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": url},
        check=True,
        capture_output=True,
    )
    return url


def start_gateway(
    services: Mapping[str, list[str]], database_url: str, extra_env: Mapping[str, str] = {}
) -> Server:
    env = {
        "DATABASE_URL": database_url,
        "GATEWAY_SERVICES": json.dumps(services),
        "GATEWAY_ADMIN_TOKEN": "bench-admin-token",
        **extra_env,
    }
    return start_uvicorn("gateway", "app.asgi:app", health_path="/healthz", env=env, measured=True)


def throughput_ratio(directory: str) -> None:
    """The simplest single-upstream route against the bare handler, same upstream."""
    upstream = start_uvicorn("upstream", "bench.upstream:app", health_path="/health")
    services = {
        name: [upstream.url] for name in ("market-data", "portfolio", "orders", "news", "bots")
    }
    baseline = start_uvicorn(
        "baseline",
        "bench.baseline:app",
        health_path="/docs",
        env={"BENCH_UPSTREAM": upstream.url},
        measured=True,
    )
    database_url = migrated_database(directory)
    # Partner routes need a partner: one on a plan far above the load, with an API key.
    headers = {"X-API-Key": asyncio.run(provision_partner(database_url))}
    gateway = start_gateway(services, database_url)
    try:
        path = "/quotes?symbols=AAPL"
        urls = {"baseline": baseline.url + path, "gateway": gateway.url + "/partner/v1" + path}
        for url in urls.values():  # warm pools and caches
            run_load(url, connections=CONNECTIONS, seconds=1, headers=headers)
        results: dict[str, list[LoadResult]] = {"baseline": [], "gateway": []}
        for _ in range(ROUNDS):
            for name, url in urls.items():
                results[name].append(
                    run_load(url, connections=CONNECTIONS, seconds=SECONDS, headers=headers)
                )
        base = max(results["baseline"], key=lambda r: r.requests_per_s)
        gate = max(results["gateway"], key=lambda r: r.requests_per_s)
        print(f"\n## Partner quotes (1 symbol, API key), {CONNECTIONS} connections, {base.tool}")
        print_result("bare FastAPI + aiohttp", base)
        print_result("gateway /partner/v1/quotes", gate)
        print(f"throughput ratio gateway / bare: {gate.requests_per_s / base.requests_per_s:.2f}")
    finally:
        gateway.stop()
        baseline.stop()
        upstream.stop()


def dashboard_latency(directory: str) -> None:
    """The web dashboard with every upstream delayed, against stages x delay."""
    platform = start_platform()
    try:
        for urls in platform.urls.values():
            for url in urls:
                httpx.put(
                    url + "/__faults", json={"latency_ms": DASHBOARD_DELAY_MS}
                ).raise_for_status()
        # The dashboard is a signed-in user's: the gateway trusts the platform's identity
        # provider, which mints alice a token without a login.
        identity = platform.urls["identity"][0]
        services = {name: urls for name, urls in platform.urls.items() if name != "identity"}
        trust = {
            "GATEWAY_IDENTITY__DISCOVERY_URL": identity + "/.well-known/openid-configuration",
            "GATEWAY_RATE_LIMIT__USER_LIMIT": "1000000",
        }
        gateway = start_gateway(services, migrated_database(directory), trust)
        try:
            token = httpx.post(identity + "/__dev/token", json={"username": "alice"}, timeout=10)
            headers = {"Authorization": f"Bearer {token.raise_for_status().json()['access_token']}"}
            url = gateway.url + "/web/v1/dashboard"
            httpx.get(url, headers=headers, timeout=10).raise_for_status()
            run_load(url, connections=4, seconds=1, headers=headers)
            floor = DASHBOARD_STAGES * DASHBOARD_DELAY_MS
            print(
                f"\n## Web dashboard, every upstream +{DASHBOARD_DELAY_MS} ms, "
                f"{DASHBOARD_STAGES} dependent stages (floor {floor} ms)"
            )
            # One client shows the fan-out's own latency; four add queueing for the two
            # cores that the gateway shares with seven backend processes and the load tool.
            for connections in (1, 4):
                result = run_load(url, connections=connections, seconds=SECONDS, headers=headers)
                print_result(f"gateway, {connections} connection(s)", result)
                p50, p99 = result.p50_ms / floor, result.p99_ms / floor
                print(f"{'':<36} p50 / floor: {p50:.2f}   p99 / floor: {p99:.2f}")
        finally:
            gateway.stop()
    finally:
        platform.stop()


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        throughput_ratio(directory)
    with tempfile.TemporaryDirectory() as directory:
        dashboard_latency(directory)
    with tempfile.TemporaryDirectory() as directory:
        partner_quotes_rate_limited(
            migrated_database(directory), connections=CONNECTIONS, seconds=SECONDS
        )


if __name__ == "__main__":
    main()
