"""Pass-through routes: partner quotes through a config-driven route (API key, a Redis rate
limit of the route's own, metrics and the access log on) against the bare FastAPI + aiohttp
handler in the same run; and the same route among 1,000 routes against alone.

    python -m bench.passthrough        # BENCH_SECONDS, BENCH_ROUNDS, BENCH_CONNECTIONS
"""

import asyncio
import os
import tempfile
import uuid
from contextlib import ExitStack

from app.store.database import create_engine, session_factory
from app.store.route_declarations import RouteDeclaration
from app.store.routes import RevisionRepository, RouteRepository
from bench.load import ROUNDS, load_tool, print_result
from bench.rate_limited import delete_keys, provision_partner, redis_url
from bench.servers import Server, start_baseline, start_gateway, start_upstream
from bench.throughput import SERVICES, SPREAD_PATHS, Target, measure_interleaved, verdict

# The targets: the route against the bare handler; 1,000 routes against 1.
TARGET_RATIO = 1.3
ROUTES_TOLERANCE = 0.05
ROUTES_MANY = 1000

QUOTES_ROUTE = RouteDeclaration.model_validate(
    {
        "name": "market-data-quotes",
        "match": {"path": "/market-data/quotes", "methods": ["GET"]},
        "upstream": {"service": "market-data", "path": "/quotes"},
        "auth": "partner",
        "scopes": ["quotes:read"],
        # Far above what the load reaches: every request is checked and admitted.
        "rate_limits": [{"key_by": "consumer", "limit": 10_000_000, "period_s": 1}],
    }
)


def _other_route(index: int) -> RouteDeclaration:
    """One of the 999 others: templates and prefixes over several services."""
    match = (
        {"path": f"/svc-{index}/items/{{item}}", "methods": ["GET", "POST"]}
        if index % 3
        else {"path_prefix": f"/files-{index}"}
    )
    return RouteDeclaration.model_validate(
        {
            "name": f"route-{index}",
            "match": match,
            "upstream": {"service": SERVICES[index % len(SERVICES)]},
            "auth": "any",
        }
    )


async def seed_routes(database_url: str, *, count: int) -> None:
    """The quotes route, and `count - 1` others filed before it."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            routes = RouteRepository(session)
            for index in range(1, count):
                await routes.add(_other_route(index))
            await routes.add(QUOTES_ROUTE)
            await RevisionRepository(session).advance()
    finally:
        await engine.dispose()


def passthrough_rows(upstream: Server, directory: str, *, connections: int, seconds: float) -> None:
    """Start the bare handler and the two gateways, load them in turns, print the rows."""
    from bench.__main__ import migrated_database

    alone_db = migrated_database(directory, "one-route")
    many_db = migrated_database(directory, "many-routes")
    keys = {}
    for database_url, count in ((alone_db, 1), (many_db, ROUTES_MANY)):
        keys[database_url] = asyncio.run(provision_partner(database_url))
        asyncio.run(seed_routes(database_url, count=count))
    redis_prefix = f"bench:{uuid.uuid4().hex[:8]}:"
    env = {
        "REDIS_URL": redis_url(),
        "GATEWAY_REDIS_PREFIX": redis_prefix,
        "GATEWAY_RATE_LIMIT__ENABLED": "true",
        "GATEWAY_UPSTREAM__COLLAPSE_GETS": "false",
        "GATEWAY_ACCESS_LOG": "true",
        "GATEWAY_METRICS__ENABLED": "true",
    }
    services = {name: [upstream.url] for name in SERVICES}
    headline_label = "pass-through route, key + Redis limit + metrics + log"
    many_label = f"the same among {ROUTES_MANY} routes"
    try:
        with ExitStack() as servers:
            baseline = start_baseline(upstream)
            servers.callback(baseline.stop)
            targets = [Target("bare FastAPI + aiohttp handler", baseline.url, SPREAD_PATHS)]
            for label, database_url in ((headline_label, alone_db), (many_label, many_db)):
                gateway = start_gateway(
                    label, services=services, database_url=database_url, env=env, quiet=True
                )
                servers.callback(gateway.stop)
                targets.append(
                    Target(
                        label,
                        gateway.url + "/api/market-data",
                        SPREAD_PATHS,
                        headers={"X-API-Key": keys[database_url]},
                    )
                )
            measure_interleaved(
                targets, connections=connections, seconds=seconds, upstream=upstream
            )
    finally:
        asyncio.run(delete_keys(redis_prefix))
    print(
        f"\n## Pass-through route (/api/market-data/quotes), {connections} connections, "
        f"{load_tool()}, best of {ROUNDS} interleaved round(s) of {seconds:g} s"
    )
    print(
        "Gateway: API key, the route's Redis rate limit, metrics and the access log on (to "
        "/dev/null), collapsing off; the bare handler does none of that. Ratios: x bare."
    )
    bare = targets[0].best()
    print_result(targets[0].label, bare, baseline=bare)
    alone, many = targets[1].best(), targets[2].best()
    print_result(headline_label, alone, baseline=bare)
    print_result(many_label, many, baseline=bare)
    ratio = alone.requests_per_s / bare.requests_per_s
    spread = many.requests_per_s / alone.requests_per_s
    print(
        f"Pass-through: {ratio:.2f}x bare (target >= {TARGET_RATIO}x: "
        f"{verdict(ratio >= TARGET_RATIO)}); {ROUTES_MANY} routes: {spread:.3f}x of 1 route "
        f"(target within {ROUTES_TOLERANCE:.0%}: {verdict(spread >= 1 - ROUTES_TOLERANCE)})"
    )


if __name__ == "__main__":
    canned = start_upstream()
    try:
        with tempfile.TemporaryDirectory() as temporary:
            passthrough_rows(
                canned,
                temporary,
                connections=int(os.environ.get("BENCH_CONNECTIONS", "50")),
                seconds=float(os.environ.get("BENCH_SECONDS", "5")),
            )
    finally:
        canned.stop()
