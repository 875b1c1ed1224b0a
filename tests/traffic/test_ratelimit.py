"""GCRA rate limits: the arithmetic in Redis and in process, and the gateway's headers."""

import asyncio
import re
from collections.abc import AsyncIterator, Callable, Sequence

import httpx
import pytest

from app.settings import RateLimitSettings, Settings
from app.store.database import create_engine, session_factory
from app.store.models import RateLimitRule
from app.store.rate_limit_rules import RateLimitRuleRepository
from app.traffic.gcra import (
    LimitCheck,
    LimitOutcome,
    MemoryGcra,
    RateLimit,
    RedisGcra,
    SetMembership,
    SlotClaim,
)
from app.traffic.ratelimit import RateLimiter
from backends.launcher import Platform
from tests.fixtures.consumers import create_partner
from tests.fixtures.gateway import running_gateway
from tests.fixtures.identity import bearer_headers
from tests.fixtures.redis import PrefixedRedis, prefixed_redis

QUOTES = "/partner/v1/quotes?symbols=AAPL"
_RATE_LIMIT = re.compile(r'^"(?P<name>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)$')


@pytest.fixture
async def shared_redis() -> AsyncIterator[PrefixedRedis]:
    async with prefixed_redis() as redis:
        yield redis


@pytest.fixture(params=["redis", "in-process"])
async def gcra(
    request: pytest.FixtureRequest,
) -> AsyncIterator[Callable[[Sequence[LimitCheck]], "asyncio.Future[list[LimitOutcome]]"]]:
    """Both implementations behind one awaitable `check(checks)`."""
    if request.param == "in-process":
        local = MemoryGcra()

        async def check_local(checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
            return local.check(checks)

        yield check_local  # type: ignore[misc]
        return
    async with prefixed_redis() as redis:
        shared = RedisGcra(redis.shared, prefix=redis.prefix)

        async def check_shared(checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
            return (await shared.admit(checks)).outcomes

        yield check_shared  # type: ignore[misc]
        await shared.aclose()


async def test_a_burst_is_admitted_then_the_steady_rate(gcra) -> None:  # type: ignore[no-untyped-def]
    limit = RateLimit.of("test", limit=5, period_s=2)  # one every 0.4 s, bursting to 5
    burst = [(await gcra([("k", limit)]))[0] for _ in range(7)]
    assert [o.admitted for o in burst] == [True] * 5 + [False] * 2
    assert [o.remaining for o in burst[:5]] == [4, 3, 2, 1, 0]
    assert all(o.retry_after_s == 1 for o in burst[5:])

    await asyncio.sleep(0.4)
    steady = [(await gcra([("k", limit)]))[0] for _ in range(2)]
    assert [o.admitted for o in steady] == [True, False]


async def test_retry_after_names_when_the_next_request_is_admitted(gcra) -> None:  # type: ignore[no-untyped-def]
    limit = RateLimit.of("test", limit=3, period_s=60)  # one every 20 s
    outcomes = [(await gcra([("k", limit)]))[0] for _ in range(4)]
    assert [o.admitted for o in outcomes] == [True, True, True, False]
    assert [o.reset_s for o in outcomes[:3]] == [20, 40, 60]
    assert outcomes[3].retry_after_s == 20
    assert outcomes[3].header_item == '"test";r=0;t=60'


async def test_a_smaller_burst_spreads_the_limit(gcra) -> None:  # type: ignore[no-untyped-def]
    limit = RateLimit.of("test", limit=60, period_s=60, burst=2)
    outcomes = [(await gcra([("k", limit)]))[0] for _ in range(3)]
    assert [o.admitted for o in outcomes] == [True, True, False]
    assert outcomes[2].retry_after_s == 1


async def test_keys_and_limits_count_separately(gcra) -> None:  # type: ignore[no-untyped-def]
    tight = RateLimit.of("tight", limit=1, period_s=60)
    loose = RateLimit.of("loose", limit=10, period_s=60)
    first = await gcra([("a", tight), ("a2", loose)])
    second = await gcra([("a", tight), ("a2", loose)])
    other = await gcra([("b", tight)])
    assert [o.admitted for o in first] == [True, True]
    assert [o.admitted for o in second] == [False, True]
    assert other[0].admitted


async def test_a_refused_request_counts_against_none_of_its_limits(gcra) -> None:  # type: ignore[no-untyped-def]
    tight = RateLimit.of("tight", limit=1, period_s=60)
    loose = RateLimit.of("loose", limit=10, period_s=60)
    await gcra([("a", tight), ("a2", loose)])
    for _ in range(5):
        refused = await gcra([("a", tight), ("a2", loose)])
        assert [o.admitted for o in refused] == [False, True]
    # Only the admitted request counted: 10 - 1 - this one.
    (after,) = await gcra([("a2", loose)])
    assert after.admitted and after.remaining == 8


async def test_the_script_is_reloaded_when_redis_forgot_it(shared_redis: PrefixedRedis) -> None:
    limiter = RedisGcra(shared_redis.shared, prefix=shared_redis.prefix)
    limit = RateLimit.of("test", limit=2, period_s=60)
    assert (await limiter.admit([("k", limit)])).outcomes[0].remaining == 1
    await shared_redis.client.script_flush()
    assert (await limiter.admit([("k", limit)])).outcomes[0].remaining == 0


async def test_concurrent_checks_get_their_own_replies(shared_redis: PrefixedRedis) -> None:
    limiter = RedisGcra(shared_redis.shared, prefix=shared_redis.prefix)
    limits = [RateLimit.of(f"l{n}", limit=100 + n, period_s=60) for n in range(20)]
    verdicts = await asyncio.gather(
        *(
            limiter.admit([(f"k{n}", limit), ("shared", limits[0])])
            for n, limit in enumerate(limits)
        )
    )
    outcomes = [verdict.outcomes for verdict in verdicts]
    # Each request's first reply is its own limit's, in its own order.
    assert [own.limit.name for own, _ in outcomes] == [f"l{n}" for n in range(20)]
    assert [own.remaining for own, _ in outcomes] == [99 + n for n in range(20)]
    assert sorted(shared.remaining for _, shared in outcomes) == list(range(80, 100))


async def test_a_membership_question_shares_the_round_trip(shared_redis: PrefixedRedis) -> None:
    limiter = RedisGcra(shared_redis.shared, prefix=shared_redis.prefix)
    members = shared_redis.prefix + "members"
    await shared_redis.client.sadd(members, "in")
    limit = RateLimit.of("test", limit=5, period_s=60)
    inside = await limiter.admit([("k", limit)], membership=SetMembership(members, "in"))
    outside = await limiter.admit([("k", limit)], membership=SetMembership(members, "out"))
    assert (inside.member, outside.member) == (True, False)
    assert [o.remaining for o in inside.outcomes + outside.outcomes] == [4, 3]


async def test_a_requests_limits_claim_and_question_are_one_command(
    shared_redis: PrefixedRedis,
) -> None:
    shared = shared_redis.shared
    limiter = RedisGcra(shared, prefix=shared_redis.prefix)
    sent: list[int] = []
    pipeliner = shared.pipeliner
    execute = pipeliner.execute

    def counted(commands):  # type: ignore[no-untyped-def]
        sent.append(len(commands))
        return execute(commands)

    pipeliner.execute = counted  # type: ignore[method-assign]
    members = shared_redis.prefix + "members"
    await shared_redis.client.sadd(members, "in")
    limits = [
        ("a", RateLimit.of("a", limit=5, period_s=60)),
        ("b", RateLimit.of("b", limit=3, period_s=60)),
    ]
    claim = SlotClaim(key="c:1", limit=2, lease_ms=10_000)
    verdict = await limiter.admit(limits, claim, SetMembership(members, "in"))
    assert sent == [1]
    assert [o.remaining for o in verdict.outcomes] == [4, 2]
    assert (verdict.granted, verdict.member) == (True, True)
    limiter.release(claim)
    await limiter.aclose()


async def test_a_refused_request_claims_no_in_flight_slot(shared_redis: PrefixedRedis) -> None:
    limiter = RedisGcra(shared_redis.shared, prefix=shared_redis.prefix)
    one = RateLimit.of("one", limit=1, period_s=60)
    first = SlotClaim(key="c:2", limit=5, lease_ms=10_000)
    assert (await limiter.admit([("k", one)], first)).granted is True
    refused = await limiter.admit([("k", one)], SlotClaim(key="c:2", limit=5, lease_ms=10_000))
    assert not refused.outcomes[0].admitted and refused.granted is False
    slots = await shared_redis.client.zrange(shared_redis.prefix + "if:c:2", 0, -1)
    assert slots == [first.token.encode()]


def _limited_settings(settings: Settings, **limits: object) -> Settings:
    return settings.model_copy(update={"rate_limit": RateLimitSettings(**limits)})  # type: ignore[arg-type]


def _remaining(response: httpx.Response) -> int:
    match = _RATE_LIMIT.match(response.headers["ratelimit"])
    assert match is not None, response.headers["ratelimit"]
    return int(match["r"])


@pytest.mark.parametrize("store", ["redis", "in-process"])
async def test_headers_count_down_and_429_names_the_limit(settings: Settings, store: str) -> None:
    async with prefixed_redis() as redis:
        if store == "redis":
            settings = settings.model_copy(
                update={"redis_url": redis.url, "redis_prefix": redis.prefix}
            )
        async with running_gateway(settings) as gateway:
            partner = await create_partner(gateway.client, plan={"rate_per_minute": 5})
            responses = [
                await gateway.client.get(QUOTES, headers=partner.headers) for _ in range(6)
            ]
        if store == "redis":
            key = f"{redis.prefix}rl:c:{partner.consumer_id}:consumer-minute"
            assert await redis.client.exists(key)

    for response in responses[:5]:
        assert response.status_code == 200, response.text
        assert response.headers["ratelimit-policy"] == '"consumer-minute";q=5;w=60'
    assert [_remaining(r) for r in responses[:5]] == [4, 3, 2, 1, 0]

    refused = responses[5]
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "12"
    assert refused.headers["ratelimit"] == '"consumer-minute";r=0;t=60'
    problem = refused.json()
    assert problem["status"] == 429
    assert problem["limit"] == "consumer-minute"
    assert "'consumer-minute'" in problem["detail"]


async def test_a_plan_per_second_rate_limits_each_consumer_separately(
    settings: Settings,
) -> None:
    async with running_gateway(settings) as gateway:
        first = await create_partner(gateway.client, plan={"rate_per_second": 2})
        second = await create_partner(gateway.client, plan={"rate_per_second": 2})
        statuses = [
            (await gateway.client.get(QUOTES, headers=key.headers)).status_code
            for key in (first, first, first, second)
        ]
    assert statuses == [200, 200, 429, 200]


async def test_anonymous_calls_are_limited_by_address_before_authentication(
    settings: Settings,
) -> None:
    limited = _limited_settings(settings, anonymous_limit=2, anonymous_period_s=60)
    async with running_gateway(limited) as gateway:
        responses = [await gateway.client.get(QUOTES) for _ in range(3)]
    assert [r.status_code for r in responses] == [401, 401, 429]
    assert responses[0].headers["ratelimit-policy"] == '"address";q=2;w=60'
    assert responses[1].headers["ratelimit"] == '"address";r=0;t=60'
    assert responses[2].json()["limit"] == "address"
    assert responses[2].headers["retry-after"] == "30"


async def _add_rules(database_url: str, *rules: RateLimitRule) -> None:
    engine = create_engine(database_url)
    try:
        async with session_factory(engine)() as session, session.begin():
            for rule in rules:
                await RateLimitRuleRepository(session).add(rule)
    finally:
        await engine.dispose()


async def test_a_route_rule_from_the_store_is_reported_when_most_restrictive(
    settings: Settings, database_url: str
) -> None:
    await _add_rules(
        database_url,
        RateLimitRule(
            name="quotes-route", key_by="route", route_prefix="/partner/v1/quotes",
            plan_name="", limit=2, period_s=10, burst=None, enabled=True,
        ),
        RateLimitRule(
            name="elsewhere", key_by="route", route_prefix="/web/", plan_name="",
            limit=1, period_s=10, burst=None, enabled=True,
        ),
        # Written by hand, unusable: skipped, never a 500.
        RateLimitRule(
            name="broken", key_by="route", route_prefix="/partner/", plan_name="",
            limit=0, period_s=0, burst=None, enabled=True,
        ),
    )  # fmt: skip
    async with running_gateway(settings) as gateway:
        partner = await create_partner(gateway.client, plan={"rate_per_minute": 100})
        responses = [await gateway.client.get(QUOTES, headers=partner.headers) for _ in range(3)]

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["ratelimit-policy"] == (
        '"consumer-minute";q=100;w=60, "quotes-route";q=2;w=10'
    )
    assert responses[0].headers["ratelimit"] == '"quotes-route";r=1;t=5'
    assert responses[1].headers["ratelimit"] == '"quotes-route";r=0;t=10'
    assert responses[2].json()["limit"] == "quotes-route"
    assert responses[2].headers["retry-after"] == "5"


async def test_routes_outside_the_frontends_are_not_limited(settings: Settings) -> None:
    async with running_gateway(_limited_settings(settings, anonymous_limit=1)) as gateway:
        statuses = [(await gateway.client.get("/healthz")).status_code for _ in range(3)]
        health = await gateway.client.get("/healthz")
    assert statuses == [200, 200, 200]
    assert "ratelimit" not in health.headers


async def test_signed_in_users_are_limited_each_on_their_own(
    settings: Settings, platform: Platform
) -> None:
    limited = _limited_settings(settings, user_limit=2, user_period_s=60)
    alice = await bearer_headers(platform, username="alice")
    bob = await bearer_headers(platform, username="bob")
    async with running_gateway(limited) as gateway:
        responses = [await gateway.client.get("/web/v1/orders", headers=alice) for _ in range(3)]
        other = await gateway.client.get("/web/v1/orders", headers=bob)

    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[0].headers["ratelimit-policy"] == '"user";q=2;w=60'
    assert responses[2].json()["limit"] == "user"
    assert other.status_code == 200
    assert other.headers["ratelimit"] == '"user";r=1;t=30'


def test_limit_names_are_valid_structured_field_strings() -> None:
    limit = RateLimit.of('quotes "fast" \\ lane é', limit=5, period_s=2.4)
    assert limit.policy_item == '"quotes \\"fast\\" \\\\ lane ?";q=5;w=2'


@pytest.mark.parametrize("store", ["redis", "in-process"])
async def test_the_counts_of_a_deleted_consumer_or_rule_are_forgotten(store: str) -> None:
    async with prefixed_redis() as redis:
        limiter = RateLimiter(
            redis.shared if store == "redis" else None, prefix=redis.prefix, failure="open"
        )
        one = RateLimit.of("one", limit=1, period_s=60)
        # Consumer 7's and rule 1's counts, next to keys that only look alike.
        keys = ["c:7:consumer-second", "c:70:consumer-second", "r:1:7", "r:1:8", "r:12:7"]
        for key in keys:
            assert (await limiter.admit([(key, one)])).outcomes[0].admitted
        claim = SlotClaim(key="c:7", limit=1, lease_ms=60_000)
        assert (await limiter.admit([], claim)).granted is (True if store == "redis" else None)

        await limiter.forget(prefixes=["c:7:"], keys=["r:1:7"], in_flight=["c:7"])
        await limiter.forget(prefixes=["r:12:"])

        admitted = {key: (await limiter.admit([(key, one)])).outcomes[0].admitted for key in keys}
        assert admitted == {
            "c:7:consumer-second": True,
            "c:70:consumer-second": False,
            "r:1:7": True,
            "r:1:8": False,
            "r:12:7": True,
        }
        if store == "redis":
            assert not await redis.client.exists(redis.prefix + "if:c:7")
            assert (await limiter.admit([], claim)).granted is True
        await limiter.aclose()
