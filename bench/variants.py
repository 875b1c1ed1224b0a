"""Two gateways that differ in one feature, against each other: partner quotes through the
same canned upstream with the same partner, one gateway per variant, interleaved rounds,
the best run counting; the second row's throughput as a share of the first's.

What the cache, usage-metering and observability rows have in common (`bench.cache`,
`bench.usage`, `bench.observability`); each says what its variants switch.
"""

from collections.abc import Mapping

from bench.load import ROUNDS, LoadResult, load_tool, print_result
from bench.servers import Server
from bench.throughput import SPREAD_PATHS, GatewayVariant, measure_interleaved, partner_gateways

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
    gateways = [GatewayVariant(label, env) for label, env in variants.items()]
    with partner_gateways(upstream, database_url, gateways, env=COMMON, quiet=quiet) as targets:
        measure_interleaved(targets, connections=connections, seconds=seconds, upstream=upstream)
    print(
        f"\n## {title}: partner quotes, {connections} connections, {load_tool()}, best of "
        f"{ROUNDS} interleaved round(s) of {seconds:g} s, {len(SPREAD_PATHS)} catalogue "
        f"symbols, API key + Redis rate limit, collapsing off. Ratios: x the first row."
    )
    first, second = (target.best() for target in targets)
    print_result(targets[0].label, first, baseline=first)
    print_result(targets[1].label, second, baseline=first)
    return first, second
