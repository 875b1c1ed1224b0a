"""Two gateways that differ in one feature, against each other: partner quotes through the
same canned upstream with the same partner, one gateway per variant, interleaved rounds,
the best run counting; the second row's throughput as a share of the first's.

What the cache, usage-metering and observability rows have in common (`bench.cache`,
`bench.usage`, `bench.observability`); each says what its variants switch.
"""

import asyncio
import uuid
from collections.abc import Mapping
from contextlib import ExitStack

from bench.load import ROUNDS, LoadResult, load_tool, print_result
from bench.rate_limited import REDIS_URL, delete_keys, provision_partner
from bench.servers import Server, start_gateway
from bench.throughput import SERVICES, SPREAD_PATHS, Target, measure_interleaved

# Every variant's gateway: API key and Redis rate limits on, collapsing off, load spread
# over the catalogue's symbols (so each request is the request path's, not collapsing's).
COMMON = {"GATEWAY_RATE_LIMIT__ENABLED": "true", "GATEWAY_UPSTREAM__COLLAPSE_GETS": "false"}


def first_against_second(
    upstream: Server,
    database_url: str,
    variants: Mapping[str, Mapping[str, str]],
    *,
    title: str,
    connections: int,
    seconds: float,
    quiet: bool = False,
) -> tuple[LoadResult, LoadResult]:
    """Start a gateway per variant (label: its settings beyond `COMMON`), load them in turns,
    print the table under `title` and return both best runs; `quiet` sends the gateways'
    output (an access log, say: still written, at its cost) to /dev/null."""
    key = asyncio.run(provision_partner(database_url))
    redis_prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    common = {**COMMON, "REDIS_URL": REDIS_URL, "GATEWAY_REDIS_PREFIX": redis_prefix}
    services = {name: [upstream.url] for name in SERVICES}
    targets: list[Target] = []
    try:
        with ExitStack() as servers:
            for label, env in variants.items():
                gateway = start_gateway(
                    label,
                    services=services,
                    database_url=database_url,
                    env={**common, **env},
                    quiet=quiet,
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
        f"\n## {title}: partner quotes, {connections} connections, {load_tool()}, best of "
        f"{ROUNDS} interleaved round(s) of {seconds:g} s, {len(SPREAD_PATHS)} catalogue "
        f"symbols, API key + Redis rate limit, collapsing off. Ratios: x the first row."
    )
    first, second = (target.best() for target in targets)
    print_result(targets[0].label, first, baseline=first)
    print_result(targets[1].label, second, baseline=first)
    return first, second
