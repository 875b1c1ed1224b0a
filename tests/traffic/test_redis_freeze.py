"""A Redis that hangs instead of refusing (SIGSTOP): reads keep answering within the short
Redis timeout, order entry refuses at once without placing an order, and both recover by
themselves when Redis resumes.

The bounds are generous ceilings on "the short timeout, not the request's deadline": the
deadline is 5 s, the Redis timeout 0.5 s.
"""

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from redis.asyncio import Redis

from app.settings import Settings
from backends.launcher import Platform
from tests.fixtures.consumers import PartnerKey, create_partner
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.redis import RedisServer, WarningLog, redis_warnings

pytestmark = pytest.mark.redis

QUOTES = "/partner/v1/quotes?symbols=AAPL"
DASHBOARD = "/web/v1/dashboard"
ORDERS = "/web/v1/orders"
ORDERS_PATH = "POST /accounts/ACC-1001/orders"
PREFIX = "freeze:"
READ_BOUND_S = 2.0
REFUSAL_BOUND_S = 1.5


class FrozenRedis:
    """A private redis-server that the test can pause (SIGSTOP) and resume (SIGCONT)."""

    def __init__(self, server: RedisServer) -> None:
        self.server = server

    @property
    def pid(self) -> int:
        assert self.server.process is not None
        return self.server.process.pid

    def freeze(self) -> None:
        os.kill(self.pid, signal.SIGSTOP)

    def resume(self) -> None:
        os.kill(self.pid, signal.SIGCONT)


@pytest.fixture
async def frozen_redis() -> AsyncIterator[FrozenRedis]:
    server = RedisServer()
    await server.start()
    frozen = FrozenRedis(server)
    try:
        yield frozen
    finally:
        # A stopped process would never see the kill's cleanup otherwise.
        if server.process is not None:
            frozen.resume()
        server.kill()


@pytest.fixture
def redis_log() -> Iterator[WarningLog]:
    with redis_warnings() as log:
        yield log


@pytest.fixture
def orders_backend(platform: Platform) -> Any:
    backend = platform.process("orders")
    backend.reset_stats()
    return backend


def posts(backend: Any) -> int:
    return int(backend.stats()["requests"].get(ORDERS_PATH, 0))


def order() -> dict[str, Any]:
    return {"symbol": "MSFT", "side": "buy", "type": "limit", "quantity": 1, "limit_price": 10}


async def timed(
    client: httpx.AsyncClient, method: str, path: str, **kwargs: Any
) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.request(method, path, **kwargs)
    return response, time.monotonic() - started


async def place_order(gateway: RunningGateway, alice: dict[str, str]) -> httpx.Response:
    headers = {**alice, "Idempotency-Key": uuid.uuid4().hex}
    return await gateway.client.post(ORDERS, json=order(), headers=headers)


async def test_frozen_redis_keeps_reads_and_refuses_orders_at_once(
    settings: Settings,
    platform: Platform,
    frozen_redis: FrozenRedis,
    orders_backend: Any,
    redis_log: WarningLog,
) -> None:
    # A long period keeps a user's limit key in Redis for an hour per request, so its
    # presence tells that the limiter asked Redis.
    limits = settings.rate_limit.model_copy(update={"user_limit": 1000, "user_period_s": 3600})
    with_redis = settings.model_copy(
        update={"redis_url": frozen_redis.server.url, "redis_prefix": PREFIX, "rate_limit": limits}
    )
    alice = await bearer_headers(platform, username="alice")
    bob = await bearer_headers(platform, username="bob")
    async with running_gateway(with_redis) as gateway:
        # A metered plan: its quota counter is in Redis too, and fails open.
        partner: PartnerKey = await create_partner(gateway.client, plan={"quota_per_day": 1000})
        assert (await gateway.client.get(QUOTES, headers=partner.headers)).status_code == 200
        assert (await gateway.client.get(DASHBOARD, headers=alice)).status_code == 200
        assert (await place_order(gateway, alice)).status_code == 201
        placed_before = posts(orders_backend)

        frozen_redis.freeze()
        try:
            for _ in range(2):
                quotes, quotes_s = await timed(
                    gateway.client, "GET", QUOTES, headers=partner.headers
                )
                assert quotes.status_code == 200, quotes.text
                assert quotes_s < READ_BOUND_S
                dashboard, dashboard_s = await timed(
                    gateway.client, "GET", DASHBOARD, headers=alice
                )
                assert dashboard.status_code == 200, dashboard.text
                assert dashboard_s < READ_BOUND_S
                refused, refused_s = await timed(
                    gateway.client,
                    "POST",
                    ORDERS,
                    json=order(),
                    headers={**alice, "Idempotency-Key": uuid.uuid4().hex},
                )
                assert refused.status_code == 503, refused.text
                assert refused.headers["retry-after"] == "1"
                assert refused.headers["content-type"] == "application/problem+json"
                assert refused_s < REFUSAL_BOUND_S
            assert posts(orders_backend) == placed_before
        finally:
            frozen_redis.resume()
        # API keys were checked against the snapshot: said once for the outage, not per call.
        fallbacks = [m for m in redis_log.messages if "config snapshot only" in m]
        assert len(fallbacks) == 1, redis_log.messages

        # Recovery by itself: the next probe finds Redis answering again.
        for _ in range(50):
            recovered = await place_order(gateway, alice)
            if recovered.status_code != 503:
                break
            await asyncio.sleep(0.1)
        assert recovered.status_code == 201, recovered.text
        assert posts(orders_backend) == placed_before + 1
        # Bob never called before: a limit key of his can only come from the limiter
        # asking Redis after the outage.
        redis = Redis.from_url(frozen_redis.server.url)
        try:
            assert not await redis.exists(f"{PREFIX}rl:u:bob")
            assert (await gateway.client.get(DASHBOARD, headers=bob)).status_code == 200
            assert await redis.exists(f"{PREFIX}rl:u:bob")
        finally:
            await redis.aclose()
