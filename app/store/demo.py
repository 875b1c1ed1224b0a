"""The demonstration partner that `make run` adds to a development config store.

The simulated identity provider has one partner client, `partner-acme`; a client-credentials
token only counts as a partner once a consumer names its client (see
`app.security.jwt.confirm_linked_client`). So that the README's partner calls answer with
data on a fresh `make run`, this adds, when absent, a plan `demo` and a consumer
`acme-demo` linked to `partner-acme` and its accounts. It also adds the example
pass-through routes (`DEMO_ROUTES`) that are absent by name. It never changes existing rows.

    python -m app.store.demo     # DATABASE_URL as for the gateway
"""

import asyncio
import logging

from sqlalchemy import select

from app.settings import Settings
from app.store.database import create_engine, session_factory
from app.store.models import Consumer, Plan
from app.store.route_declarations import RouteDeclaration
from app.store.routes import RevisionRepository, RouteRepository

logger = logging.getLogger("gateway.config")

DEMO_PLAN = "demo"
DEMO_CONSUMER = "acme-demo"
DEMO_CLIENT = "partner-acme"
DEMO_ACCOUNTS = ["ACC-2001", "ACC-2002"]

# The example pass-through routes, under the pass-through prefix (default /api/).
DEMO_ROUTES = [
    RouteDeclaration.model_validate(route)
    for route in (
        {
            "name": "market-data-quotes",
            "description": "Quotes of up to 50 symbols, e.g. ?symbols=AAPL,MSFT",
            "match": {"path": "/market-data/quotes", "methods": ["GET"]},
            "upstream": {"service": "market-data", "path": "/quotes"},
            "auth": "partner",
            "scopes": ["quotes:read"],
            "cache": {"mode": "ttl", "ttl_s": 1},
            "list_rows": "quotes",
            "request_schema": {
                "query": {
                    "type": "object",
                    "required": ["symbols"],
                    "properties": {
                        "symbols": {
                            "type": "string",
                            "pattern": "^[A-Z]{1,5}(\\.[A-Z])?(,[A-Z]{1,5}(\\.[A-Z])?){0,49}$",
                        }
                    },
                }
            },
        },
        {
            "name": "news-latest",
            "description": "The latest headlines; each article's headline is its title",
            "match": {"path": "/news/latest", "methods": ["GET"]},
            "upstream": {"service": "news", "path": "/news/latest"},
            "auth": "none",
            "rate_limits": [{"key_by": "address", "limit": 10, "period_s": 1, "burst": 20}],
            "transforms": {"response": {"body": {"rename": {"articles.headline": "title"}}}},
        },
    )
]


async def seed_demo_partner(database_url: str) -> bool:
    """Add the demonstration plan and partner when absent; whether anything was added."""
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            linked = await session.scalar(
                select(Consumer).where(Consumer.oauth_client_id == DEMO_CLIENT)
            )
            named = await session.scalar(select(Consumer).where(Consumer.name == DEMO_CONSUMER))
            if linked is not None or named is not None:
                return False
            plan = await session.scalar(select(Plan).where(Plan.name == DEMO_PLAN))
            if plan is None:
                plan = Plan(
                    name=DEMO_PLAN,
                    rate_per_second=10,
                    quota_per_day=10_000,
                    scopes=["quotes:read", "candles:read", "orders:write"],
                )
                session.add(plan)
                await session.flush()
            session.add(
                Consumer(
                    name=DEMO_CONSUMER,
                    plan_id=plan.plan_id,
                    account_ids=DEMO_ACCOUNTS,
                    oauth_client_id=DEMO_CLIENT,
                )
            )
        return True
    finally:
        await engine.dispose()


async def seed_demo_routes(database_url: str) -> list[str]:
    """Add the example pass-through routes absent by name; the names of those added."""
    engine = create_engine(database_url)
    added = []
    try:
        async with session_factory(engine)() as session, session.begin():
            routes = RouteRepository(session)
            for declaration in DEMO_ROUTES:
                if await routes.by_name(declaration.name) is None:
                    await routes.add(declaration)
                    added.append(declaration.name)
            if added:
                await RevisionRepository(session).advance()
        return added
    finally:
        await engine.dispose()


def main() -> None:
    database_url = Settings().database_url
    added = asyncio.run(seed_demo_partner(database_url))
    print(
        f"demo partner {DEMO_CONSUMER!r} linked to {DEMO_CLIENT!r}: "
        + ("added" if added else "already there")
    )
    routes = asyncio.run(seed_demo_routes(database_url))
    print("demo routes: " + (f"added {', '.join(routes)}" if routes else "already there"))


if __name__ == "__main__":
    main()
