"""The partner the rate-limited rows call as, and cleanup of the Redis keys they leave.

The partner, its plan (a per-second rate far above what the load reaches, so every request
is checked and admitted) and its key are written to the config database before the
gateways start. Their keys live under a prefix of their own in the Redis at BENCH_REDIS_URL
(where unset, `make bench` starts a Redis of its own: `bench.servers.bench_redis`) and are
deleted afterwards.
"""

import os

from redis.asyncio import Redis

from app.security.apikeys import KeyHasher, issue_key
from app.store.database import create_engine, session_factory
from app.store.models import ApiKey, Consumer, Plan

PLAN_RATE_PER_SECOND = 1_000_000


def redis_url() -> str:
    """BENCH_REDIS_URL, read when a row runs, not at import (`bench_redis` sets it for the
    rows it serves); unset, the machine's own Redis."""
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


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
    redis = Redis.from_url(redis_url())
    try:
        keys = [key async for key in redis.scan_iter(match=prefix + "*", count=1000)]
        if keys:
            await redis.delete(*keys)
    finally:
        await redis.aclose()
