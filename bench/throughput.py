"""Partner quotes through the gateway against the bare FastAPI + aiohttp handler: the same
canned upstream, the same run, each target measured ROUNDS times interleaved, the best
run counting.

The main rows have collapsing off and spread their load over the catalogue's symbols, so
they measure the request path; collapsing earns its figure on a row of its own, whose
load repeats one URL.
"""

import asyncio
import uuid
from collections.abc import Collection, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

from backends.catalog import INSTRUMENTS
from bench.load import ROUNDS, LoadResult, load_tool, print_result, run_load
from bench.rate_limited import REDIS_URL, delete_keys, provision_partner
from bench.servers import Server, start_gateway, start_uvicorn

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
    # The target's own request headers, where the targets' differ.
    headers: Mapping[str, str] | None = None

    def best(self) -> LoadResult:
        """The fastest run, carrying the most upstream CPU of any run (the check holds
        only if it held in every one)."""
        best = max(self.runs, key=lambda run: run.requests_per_s)
        cores = [run.upstream_cores for run in self.runs if run.upstream_cores is not None]
        return replace(best, upstream_cores=max(cores, default=None))


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
    headers: Mapping[str, str] | None = None,
) -> None:
    """Warm each target for a second (pools, caches, Redis scripts), then run each for
    `seconds`, ROUNDS times interleaved, so the machine's drift falls on every target alike."""
    for target in targets:
        run_load(
            target.url,
            target.paths,
            connections=connections,
            seconds=1,
            headers=target.headers or headers,
        )
    for _ in range(ROUNDS):
        for target in targets:
            target.runs.append(
                run_load(
                    target.url,
                    target.paths,
                    connections=connections,
                    seconds=seconds,
                    headers=target.headers or headers,
                    upstream=upstream,
                )
            )


def partner_quotes(
    upstream: Server, database_url: str, *, connections: int, seconds: float
) -> None:
    """Start the bare handler and every gateway variant, load them in turns, print rows."""
    key = asyncio.run(provision_partner(database_url))
    redis_prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    common = {
        "REDIS_URL": REDIS_URL,
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        # The bare handler logs nothing either: this compares the request path, not log I/O.
        "GATEWAY_ACCESS_LOG": "false",
        # Nor does it cache: the request path again (the cache's rows are `bench.cache`).
        "GATEWAY_CACHE__ENABLED": "false",
    }
    services = {name: [upstream.url] for name in SERVICES}
    try:
        with ExitStack() as servers:
            baseline = start_uvicorn(
                "baseline",
                "bench.baseline:app",
                health_path="/docs",
                env={"BENCH_UPSTREAM": upstream.url},
                measured=True,
            )
            servers.callback(baseline.stop)
            targets = [Target("bare FastAPI + aiohttp handler", baseline.url, SPREAD_PATHS)]
            for variant in VARIANTS:
                gateway = start_gateway(
                    variant.label,
                    services=services,
                    database_url=database_url,
                    env={**common, **variant.env},
                    unset=variant.unset,
                )
                servers.callback(gateway.stop)
                targets.append(Target(variant.label, gateway.url + "/partner/v1", variant.paths))
            measure_interleaved(
                targets,
                connections=connections,
                seconds=seconds,
                upstream=upstream,
                headers={"X-API-Key": key},
            )
    finally:
        asyncio.run(delete_keys(redis_prefix))
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
