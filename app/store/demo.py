"""The demonstration partner that `make run` adds to a development config store.

The simulated identity provider has one partner client, `partner-acme`; a client-credentials
token only counts as a partner once a consumer names its client (see
`app.security.jwt.confirm_linked_client`). So that the README's partner calls answer with
data on a fresh `make run`, this adds, when absent, a plan `demo` and a consumer
`acme-demo` linked to `partner-acme` and its accounts. It never changes existing rows.

    python -m app.store.demo     # DATABASE_URL as for the gateway
"""

import asyncio
import logging

from sqlalchemy import select

from app.settings import Settings
from app.store.database import create_engine, session_factory
from app.store.models import Consumer, Plan

logger = logging.getLogger("gateway.config")

DEMO_PLAN = "demo"
DEMO_CONSUMER = "acme-demo"
DEMO_CLIENT = "partner-acme"
DEMO_ACCOUNTS = ["ACC-2001", "ACC-2002"]


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


def main() -> None:
    added = asyncio.run(seed_demo_partner(Settings().database_url))
    print(
        f"demo partner {DEMO_CONSUMER!r} linked to {DEMO_CLIENT!r}: "
        + ("added" if added else "already there")
    )


if __name__ == "__main__":
    main()
