"""A cached route's hit path against the same route uncached: partner quotes, the same
canned upstream, the same partner and Redis rate limit, load spread over the catalogue's
symbols; one gateway with the response cache on (every request after the warm-up a hit,
from memory; Redis holds the shared level), one with it off (every request upstream,
collapsing off). Interleaved rounds, best run counts. Target: hits >= 2x uncached.

Run alone: `python -m bench.cache` (BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS).
"""

import asyncio
import os
import tempfile
import uuid
from contextlib import ExitStack

from bench.load import ROUNDS, load_tool, print_result
from bench.rate_limited import REDIS_URL, delete_keys, provision_partner
from bench.servers import Server, start_gateway, start_upstream
from bench.throughput import SERVICES, SPREAD_PATHS, Target, measure_interleaved, verdict

CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "50"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
HIT_TARGET = 2.0


def cached_against_uncached(
    upstream: Server, database_url: str, *, connections: int = CONNECTIONS, seconds: float = SECONDS
) -> None:
    key = asyncio.run(provision_partner(database_url))
    redis_prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    common = {
        "REDIS_URL": REDIS_URL,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_ACCESS_LOG": "false",
        "GATEWAY_RATE_LIMIT__ENABLED": "true",
        "GATEWAY_UPSTREAM__COLLAPSE_GETS": "false",
    }
    variants = {
        "partner quotes, cache off (every request upstream)": {"GATEWAY_CACHE__ENABLED": "false"},
        "partner quotes, cache hits": {"GATEWAY_CACHE__QUOTES_TTL_S": "3600"},
    }
    services = {name: [upstream.url] for name in SERVICES}
    targets: list[Target] = []
    try:
        with ExitStack() as servers:
            for label, env in variants.items():
                gateway = start_gateway(
                    label, services=services, database_url=database_url, env={**common, **env}
                )
                servers.callback(gateway.stop)
                targets.append(Target(label, gateway.url + "/partner/v1", SPREAD_PATHS))
            measure_interleaved(
                targets,
                connections=connections,
                seconds=seconds,
                upstream=upstream,
                headers={"X-API-Key": key},
            )
    finally:
        asyncio.run(delete_keys(redis_prefix))
    print(
        f"\n## Response cache: partner quotes, {connections} connections, {load_tool()}, best of "
        f"{ROUNDS} interleaved round(s) of {seconds:g} s, {len(SPREAD_PATHS)} catalogue symbols, "
        "API key + Redis rate limit on both. Ratios: x uncached."
    )
    uncached, cached = (target.best() for target in targets)
    print_result(targets[0].label, uncached, baseline=uncached)
    print_result(targets[1].label, cached, baseline=uncached)
    ratio = cached.requests_per_s / uncached.requests_per_s
    print(
        f"Cache hit path: {ratio:.2f}x the uncached route "
        f"(target >= {HIT_TARGET}x: {verdict(ratio >= HIT_TARGET)}); "
        f"p50 {cached.p50_ms:.2f} ms against {uncached.p50_ms:.2f} ms"
    )


if __name__ == "__main__":
    from bench.__main__ import migrated_database

    with tempfile.TemporaryDirectory() as temporary:
        canned = start_upstream()
        try:
            cached_against_uncached(canned, migrated_database(temporary))
        finally:
            canned.stop()
