"""Partner quotes with API-key authentication and Redis rate limiting, against the bare
handler in the same run; the same gateway with rate limiting off shows what limiting costs.

The partner, its plan (a per-second rate far above what the load reaches, so every request
is checked and admitted) and its key are written to the config database before the gateway
starts. Keys live under a prefix of their own in the Redis at BENCH_REDIS_URL and are
deleted afterwards.
"""

import asyncio
import json
import os
import uuid
from collections.abc import Mapping

from redis.asyncio import Redis

from app.security.apikeys import KeyHasher, issue_key
from app.store.database import create_engine, session_factory
from app.store.models import ApiKey, Consumer, Plan
from bench.load import ROUNDS, LoadResult, print_result, run_load
from bench.servers import Server, start_uvicorn

REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
PLAN_RATE_PER_SECOND = 1_000_000


async def provision_partner(database_url: str) -> str:
    """A consumer on a generous plan with one API key; the key."""
    issued = issue_key(KeyHasher(None))
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            plan = Plan(
                name="bench",
                scopes=["quotes:read"],
                rate_per_second=PLAN_RATE_PER_SECOND,
            )
            session.add(plan)
            await session.flush()
            consumer = Consumer(name="bench-partner", plan_id=plan.plan_id, account_ids=[])
            session.add(consumer)
            await session.flush()
            session.add(
                ApiKey(
                    consumer_id=consumer.consumer_id,
                    prefix=issued.prefix,
                    key_hash=issued.key_hash,
                    name="bench",
                )
            )
    finally:
        await engine.dispose()
    return issued.key


async def delete_keys(prefix: str) -> None:
    redis = Redis.from_url(REDIS_URL)
    try:
        keys = [key async for key in redis.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()


def partner_quotes_rate_limited(database_url: str, *, connections: int, seconds: float) -> None:
    upstream = start_uvicorn("upstream", "bench.upstream:app", health_path="/health")
    baseline = start_uvicorn(
        "baseline",
        "bench.baseline:app",
        health_path="/docs",
        env={"BENCH_UPSTREAM": upstream.url},
        measured=True,
    )
    try:
        _measure(
            upstream=upstream,
            baseline=baseline,
            database_url=database_url,
            connections=connections,
            seconds=seconds,
        )
    finally:
        baseline.stop()
        upstream.stop()


def _measure(
    *,
    upstream: Server,
    baseline: Server,
    database_url: str,
    connections: int,
    seconds: float,
) -> None:
    key = asyncio.run(provision_partner(database_url))
    prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    services = {
        name: [upstream.url] for name in ("market-data", "portfolio", "orders", "news", "bots")
    }
    common = {
        "DATABASE_URL": database_url,
        "GATEWAY_SERVICES": json.dumps(services),
        "REDIS_URL": REDIS_URL,
        "GATEWAY_REDIS_PREFIX": prefix,
        # The bare handler logs nothing either: this compares the request path, not log I/O.
        "GATEWAY_ACCESS_LOG": "false",
    }
    # Every request of the load is the same, so the gateway's request collapsing lets
    # concurrent ones share upstream calls, which the bare handler cannot; the variant
    # without it shows the cost of the rest of the request path.
    variants: Mapping[str, Mapping[str, str]] = {
        "limits on": {**common, "GATEWAY_RATE_LIMIT__ENABLED": "true"},
        "limits on, no collapsing": {
            **common,
            "GATEWAY_RATE_LIMIT__ENABLED": "true",
            "GATEWAY_UPSTREAM__COLLAPSE_GETS": "false",
        },
        "limits off": {**common, "GATEWAY_RATE_LIMIT__ENABLED": "false"},
    }
    path = "/quotes?symbols=AAPL"
    headers = {"X-API-Key": key}
    results: dict[str, list[LoadResult]] = {"baseline": [], **{name: [] for name in variants}}
    try:
        gateways = {
            name: start_uvicorn(
                f"gateway ({name})", "app.asgi:app", health_path="/healthz", env=env, measured=True
            )
            for name, env in variants.items()
        }
        try:
            urls = {"baseline": baseline.url + path}
            urls.update({name: g.url + "/partner/v1" + path for name, g in gateways.items()})
            for url in urls.values():  # warm pools, caches and the script cache
                run_load(url, connections=connections, seconds=1, headers=headers)
            for _ in range(ROUNDS):
                for name, url in urls.items():
                    results[name].append(
                        run_load(url, connections=connections, seconds=seconds, headers=headers)
                    )
        finally:
            for gateway in gateways.values():
                gateway.stop()
    finally:
        asyncio.run(delete_keys(prefix))

    best = {name: max(runs, key=lambda r: r.requests_per_s) for name, runs in results.items()}
    base = best["baseline"]
    print(
        f"\n## Partner quotes with API-key authentication and Redis rate limiting, "
        f"{connections} connections, {base.tool}"
    )
    print_result("bare FastAPI + aiohttp", base)
    for name in variants:
        print_result(f"gateway, {name}", best[name])
    for name in variants:
        ratio = best[name].requests_per_s / base.requests_per_s
        print(f"throughput ratio gateway ({name}) / bare: {ratio:.2f}")
