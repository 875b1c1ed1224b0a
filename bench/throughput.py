"""Partner quotes through the gateway against the bare FastAPI + aiohttp handler: the same
canned upstream, the same run, each target measured ROUNDS times interleaved, the best
run counting.

The main rows have collapsing off and spread their load over the catalogue's symbols, so
they measure the request path; collapsing earns its figure on a row of its own, whose
load repeats one URL.
"""

import asyncio
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field, replace

from backends.catalog import INSTRUMENTS
from bench.load import ROUNDS, LoadResult, load_tool, print_result, run_load
from bench.rate_limited import delete_keys, provision_partner, redis_url
from bench.servers import Server, start_baseline, start_gateway

SPREAD_PATHS = tuple(f"/quotes?symbols={symbol}" for symbol in sorted(INSTRUMENTS))
ONE_PATH = ("/quotes?symbols=AAPL",)
SERVICES = ("market-data", "portfolio", "orders", "news", "bots")


@dataclass(frozen=True)
class GatewayVariant:
    """One gateway row: its settings beyond the common ones, and the load it gets."""

    label: str
    env: Mapping[str, str]
    unset: Collection[str] = ()
    paths: Sequence[str] = SPREAD_PATHS


@dataclass
class Target:
    label: str
    url: str
    paths: Sequence[str]
    runs: list[LoadResult] = field(default_factory=list)
    # What its requests carry: a gateway's, the partner's key; the bare handler's, nothing.
    headers: Mapping[str, str] | None = None

    def best(self) -> LoadResult:
        """The fastest run, carrying the most upstream CPU of any run (the check holds
        only if it held in every one)."""
        best = max(self.runs, key=lambda run: run.requests_per_s)
        cores = [run.upstream_cores for run in self.runs if run.upstream_cores is not None]
        return replace(best, upstream_cores=max(cores, default=None))


# What the bare handler does not do either: the rows compare the request path, not log
# I/O or the cache (whose rows are `bench.cache`).
REQUEST_PATH_ONLY = {"GATEWAY_ACCESS_LOG": "false", "GATEWAY_CACHE__ENABLED": "false"}
REDIS_LIMITS = {"GATEWAY_RATE_LIMIT__ENABLED": "true", "GATEWAY_UPSTREAM__COLLAPSE_GETS": "false"}
HEADLINE = GatewayVariant("gateway, API key + Redis rate limit", REDIS_LIMITS)
VARIANTS = (
    HEADLINE,
    GatewayVariant(
        "gateway, rate limits off",
        {"GATEWAY_RATE_LIMIT__ENABLED": "false", "GATEWAY_UPSTREAM__COLLAPSE_GETS": "false"},
    ),
    GatewayVariant(
        "gateway, in-process limiter (no Redis)",
        REDIS_LIMITS,
        unset=("REDIS_URL", "GATEWAY_REDIS_URL"),
    ),
    GatewayVariant(
        "collapsing on, 1 URL: measures collapsing only",
        {"GATEWAY_RATE_LIMIT__ENABLED": "true", "GATEWAY_UPSTREAM__COLLAPSE_GETS": "true"},
        paths=ONE_PATH,
    ),
)
# Met when the headline row reaches this share of the bare handler's throughput.
HEADLINE_TARGET = 0.9


def measure_interleaved(
    targets: Sequence[Target],
    *,
    connections: int,
    seconds: float,
    upstream: Server,
) -> None:
    """Warm each target for a second (pools, caches, Redis scripts), then run each for
    `seconds`, ROUNDS times interleaved, so the machine's drift falls on every target alike."""
    for target in targets:
        run_load(
            target.url,
            target.paths,
            connections=connections,
            seconds=1,
            headers=target.headers,
        )
    for _ in range(ROUNDS):
        for target in targets:
            target.runs.append(
                run_load(
                    target.url,
                    target.paths,
                    connections=connections,
                    seconds=seconds,
                    headers=target.headers,
                    upstream=upstream,
                )
            )


@contextmanager
def partner_gateways(
    upstream: Server,
    database_url: str,
    variants: Sequence[GatewayVariant],
    *,
    env: Mapping[str, str],
    quiet: bool = False,
) -> Iterator[list[Target]]:
    """A gateway per variant (`env`, then the variant's own settings), each a target with
    the key of a partner provisioned in `database_url`; the gateways' Redis keys under a
    prefix of their own, deleted when the block ends. `quiet`: their output to /dev/null."""
    key = asyncio.run(provision_partner(database_url))
    redis_prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    common = {**env, "REDIS_URL": redis_url(), "GATEWAY_REDIS_PREFIX": redis_prefix}
    services = {name: [upstream.url] for name in SERVICES}
    try:
        with ExitStack() as servers:
            targets = []
            for variant in variants:
                gateway = start_gateway(
                    variant.label,
                    services=services,
                    database_url=database_url,
                    env={**common, **variant.env},
                    unset=variant.unset,
                    quiet=quiet,
                )
                servers.callback(gateway.stop)
                targets.append(
                    Target(
                        variant.label,
                        gateway.url + "/partner/v1",
                        variant.paths,
                        headers={"X-API-Key": key},
                    )
                )
            yield targets
    finally:
        asyncio.run(delete_keys(redis_prefix))


def partner_quotes(
    upstream: Server, database_url: str, *, connections: int, seconds: float
) -> None:
    """Start the bare handler and every gateway variant, load them in turns, print rows."""
    with ExitStack() as servers:
        baseline = start_baseline(upstream)
        servers.callback(baseline.stop)
        gateways = servers.enter_context(
            partner_gateways(upstream, database_url, VARIANTS, env=REQUEST_PATH_ONLY)
        )
        targets = [Target("bare FastAPI + aiohttp handler", baseline.url, SPREAD_PATHS), *gateways]
        measure_interleaved(targets, connections=connections, seconds=seconds, upstream=upstream)
    print_rows(targets, connections=connections, seconds=seconds)


def print_rows(targets: Sequence[Target], *, connections: int, seconds: float) -> None:
    print(
        f"\n## Partner quotes, {connections} connections, {load_tool()}, best of {ROUNDS} "
        f"interleaved round(s) of {seconds:g} s (upstream: most CPU of any round)"
    )
    print(
        f"Collapsing off, one symbol per request drawn from {len(SPREAD_PATHS)} catalogue "
        "symbols, unless the row says otherwise; gateway access log off. Ratios: x bare."
    )
    bare = targets[0].best()
    print_result(targets[0].label, bare, baseline=bare)
    for target in targets[1:]:
        print_result(target.label, target.best(), baseline=bare)
    headline = next(target for target in targets if target.label == HEADLINE.label).best()
    ratio = headline.requests_per_s / bare.requests_per_s
    print(
        f"Headline ({HEADLINE.label}): {ratio:.2f}x bare "
        f"(target >= {HEADLINE_TARGET}x: {verdict(ratio >= HEADLINE_TARGET)}); "
        f"p99 {headline.p99_ms:.2f} ms against bare {bare.p99_ms:.2f} ms "
        f"(target no worse: {verdict(headline.p99_ms <= bare.p99_ms)})"
    )


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"
