"""What counting usage for the developer portal costs the request path: partner quotes with
the portal on (the edge counts each consumer request into the `UsageMeter`, flushed to Redis
every second) against the same gateway with the portal off (`GATEWAY_PORTAL__ENABLED=false`:
nothing counted). The same canned upstream, API key + Redis rate limit, collapsing and the
response cache off, load spread over the catalogue. Interleaved rounds, best run counts.
Target: on >= 0.97x off.

Run alone: `python -m bench.usage` (BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS).
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
TARGET = 0.97


def usage_on_against_off(
    upstream: Server, database_url: str, *, connections: int = CONNECTIONS, seconds: float = SECONDS
) -> None:
    key = asyncio.run(provision_partner(database_url))
    redis_prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    common = {
        "REDIS_URL": REDIS_URL,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_RATE_LIMIT__ENABLED": "true",
        "GATEWAY_UPSTREAM__COLLAPSE_GETS": "false",
        "GATEWAY_CACHE__ENABLED": "false",
        "GATEWAY_METRICS__ENABLED": "false",
        "GATEWAY_ACCESS_LOG": "false",
        "OTEL_SDK_DISABLED": "true",
    }
    variants = {
        "partner quotes, portal off (no usage counted)": {"GATEWAY_PORTAL__ENABLED": "false"},
        "partner quotes, portal on (usage counted, flushed to Redis)": {
            "GATEWAY_PORTAL__ENABLED": "true"
        },
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
        f"\n## Usage metering: partner quotes, {connections} connections, {load_tool()}, best of "
        f"{ROUNDS} interleaved round(s) of {seconds:g} s, {len(SPREAD_PATHS)} catalogue symbols, "
        "API key + Redis rate limit, response cache and collapsing off. Ratios: x portal off."
    )
    off, on = (target.best() for target in targets)
    print_result(targets[0].label, off, baseline=off)
    print_result(targets[1].label, on, baseline=off)
    ratio = on.requests_per_s / off.requests_per_s
    print(
        f"Usage counted: {ratio:.2f}x portal off (target >= {TARGET}x: "
        f"{verdict(ratio >= TARGET)}); p99 {on.p99_ms:.2f} ms against {off.p99_ms:.2f} ms"
    )


def main() -> None:
    from bench.__main__ import migrated_database

    with tempfile.TemporaryDirectory() as directory:
        upstream = start_upstream()
        try:
            usage_on_against_off(upstream, migrated_database(directory))
        finally:
            upstream.stop()


if __name__ == "__main__":
    main()
