"""Redis stopped during a run: fail open onto in-process limits or fail closed with 503,
never a 500, and shared limits again once Redis is back; restarted, its stale pooled
connections cost no request.

The limiter's calls are anonymous, limited per address and then refused by authentication
(401), so nothing but the limiter decides their status.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from redis.asyncio import Redis

from app.policy.idempotency import IdempotencyLedger, Outcome
from app.settings import AccessSettings, RateLimitSettings, RedisSettings, Settings
from app.shared.redis import connect_redis
from backends.launcher import Platform
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.redis import RedisServer, WarningLog, redis_warnings

QUOTES = "/partner/v1/quotes?symbols=AAPL"
RETRY_S = 0.2


@pytest.fixture
async def redis_server() -> AsyncIterator[RedisServer]:
    server = RedisServer()
    await server.start()
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture
def limiter_log() -> Iterator[WarningLog]:
    with redis_warnings() as log:
        yield log


def _settings(settings: Settings, server: RedisServer, failure: str) -> Settings:
    limits = RateLimitSettings(
        anonymous_limit=3,
        anonymous_period_s=600,
        redis_failure=failure,  # type: ignore[arg-type]
    )
    return settings.model_copy(
        update={
            "redis_url": server.url,
            "redis_prefix": "outage:",
            "rate_limit": limits,
            "redis": RedisSettings(retry_s=RETRY_S, timeout_s=1.0),
        }
    )


async def _statuses(gateway: RunningGateway, count: int) -> list[httpx.Response]:
    return [await gateway.client.get(QUOTES) for _ in range(count)]


async def _until_shared_again(gateway: RunningGateway, server: RedisServer) -> httpx.Response:
    """Requests until one was counted in the restarted Redis; that one's response."""
    redis = Redis.from_url(server.url)
    try:
        for _ in range(50):
            response = await gateway.client.get(QUOTES)
            assert response.status_code < 500 or response.status_code == 503
            if await redis.exists("outage:rl:a:127.0.0.1"):
                return response
            await asyncio.sleep(RETRY_S / 2)
    finally:
        await redis.aclose()
    raise AssertionError("the limiter never used the restarted Redis")


async def test_fail_open_limits_in_process_and_recovers(
    settings: Settings, redis_server: RedisServer, limiter_log: WarningLog
) -> None:
    async with running_gateway(_settings(settings, redis_server, "open")) as gateway:
        before = await _statuses(gateway, 2)
        assert [r.status_code for r in before] == [401, 401]
        assert before[1].headers["ratelimit"].startswith('"address";r=1;')

        redis_server.kill()
        during = await _statuses(gateway, 5)
        # Each process counts on its own from the outage on: this one admits its 3, no more.
        assert [r.status_code for r in during] == [401, 401, 401, 429, 429]
        assert during[3].json()["limit"] == "address"
        outage_warnings = [m for m in limiter_log.messages if "unreachable" in m]
        assert len(outage_warnings) == 1, limiter_log.messages

        await redis_server.start()
        recovered = await _until_shared_again(gateway, redis_server)
        # The restarted Redis is empty: the shared count starts over.
        assert recovered.status_code == 401
        assert recovered.headers["ratelimit"].startswith('"address";r=2;')
        assert any("answers again" in m for m in limiter_log.messages)


async def test_fail_closed_answers_503_and_recovers(
    settings: Settings, redis_server: RedisServer
) -> None:
    async with running_gateway(_settings(settings, redis_server, "closed")) as gateway:
        assert (await gateway.client.get(QUOTES)).status_code == 401

        redis_server.kill()
        during = await _statuses(gateway, 4)
        assert [r.status_code for r in during] == [503] * 4
        for response in during:
            assert response.headers["content-type"] == "application/problem+json"
            assert response.headers["retry-after"] == "1"
            assert response.json()["status"] == 503

        await redis_server.start()
        recovered = await _until_shared_again(gateway, redis_server)
        assert recovered.status_code == 401
        assert recovered.headers["ratelimit"].startswith('"address";r=2;')


async def test_a_redis_that_accepts_but_never_answers_costs_one_timeout(
    settings: Settings, limiter_log: WarningLog
) -> None:
    async def swallow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # read until the client gives up; never answer
        writer.close()

    silent = await asyncio.start_server(swallow, "127.0.0.1", 0)
    port = silent.sockets[0].getsockname()[1]
    limits = RateLimitSettings(anonymous_limit=3, anonymous_period_s=600)
    hung = settings.model_copy(
        update={
            "redis_url": f"redis://127.0.0.1:{port}/0",
            "rate_limit": limits,
            "redis": RedisSettings(timeout_s=0.3, retry_s=60),
        }
    )
    try:
        async with running_gateway(hung) as gateway:
            responses = await _statuses(gateway, 5)
    finally:
        silent.close()
        await silent.wait_closed()

    # The first request waited out the timeout; the rest were limited in process at once.
    assert [r.status_code for r in responses] == [401, 401, 401, 429, 429]
    timeouts = [m for m in limiter_log.messages if "unreachable" in m]
    assert len(timeouts) == 1
    assert "TimeoutError" in timeouts[0]


async def test_first_order_after_a_redis_restart_succeeds(
    settings: Settings, redis_server: RedisServer, platform: Platform
) -> None:
    """Pooled connections to the Redis that was killed are dead; the first command on each
    fails once and is sent again at once on a new connection, so no request sees it."""
    alice = await bearer_headers(platform, username="alice")
    restartable = settings.model_copy(
        update={
            "redis_url": redis_server.url,
            "redis_prefix": "restart:",
            # Self-registrations are re-read at start and then not within the test, so no
            # background call finds Redis away while it restarts and marks it down.
            "resilience": settings.resilience.model_copy(update={"registry_refresh_s": 60}),
        }
    )
    order = {"symbol": "MSFT", "side": "buy", "type": "limit", "quantity": 1, "limit_price": 10}

    async def place() -> httpx.Response:
        headers = {**alice, "Idempotency-Key": uuid.uuid4().hex}
        return await gateway.client.post("/web/v1/orders", json=order, headers=headers)

    async with running_gateway(restartable) as gateway:
        # Concurrent orders leave several connections in the pool.
        warm = await asyncio.gather(*(place() for _ in range(4)))
        assert [r.status_code for r in warm] == [201] * 4

        redis_server.kill()
        await redis_server.start()  # the same port, an empty Redis

        first = await place()
        assert first.status_code == 201, first.text
        assert "idempotent-replayed" not in first.headers


async def test_a_dead_pooled_connection_is_retried_once(redis_server: RedisServer) -> None:
    """The same, without a gateway's background listener, which may meet the dead connection
    first: an order's idempotency claim (`SET NX`) is the first command after the restart."""
    redis = connect_redis(Settings(redis_url=redis_server.url))
    assert redis is not None
    ledger = IdempotencyLedger(redis, prefix="restart:", settings=AccessSettings())

    async def attempt() -> Outcome:
        return Outcome(status=201, body={"placed": True})

    try:
        await asyncio.gather(*(redis.client.ping() for _ in range(4)))
        redis_server.kill()
        await redis_server.start()

        outcome, replayed = await ledger.run(
            scope="user:alice",
            idempotency_key=uuid.uuid4().hex,
            request_fingerprint="order",
            attempt=attempt,
        )
        assert (outcome.status, replayed) == (201, False)
        assert not redis.health.down
    finally:
        await redis.close()
