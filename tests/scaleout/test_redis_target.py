"""REDIS_URL and the GATEWAY_REDIS__* settings name one node, a cluster or a Sentinel-managed
primary; a malformed one stops the start with a message naming what is wrong."""

import pytest

from app.settings import RedisSettings, Settings
from app.shared.redis import RedisTarget, RedisUnavailable, connect_redis, redis_target
from app.traffic.gcra import RateLimit
from app.traffic.ratelimit import RateLimiter
from tests.fixtures.redis import free_port


def test_no_url_no_redis() -> None:
    assert redis_target(Settings(redis_url=None)) is None


def test_a_single_node_keeps_its_url() -> None:
    target = redis_target(Settings(redis_url="rediss://:pw@cache.internal:6380/2"))
    assert target == RedisTarget(kind="node", url="rediss://:pw@cache.internal:6380/2")


def test_a_cluster_url_lists_its_seed_nodes_and_credentials() -> None:
    target = redis_target(
        Settings(redis_url="rediss+cluster://gw:s%40cret@10.0.0.1:7000,10.0.0.2,[::1]:7002")
    )
    assert target is not None
    assert (target.kind, target.tls, target.username, target.password) == (
        "cluster",
        True,
        "gw",
        "s@cret",
    )
    assert target.nodes == (("10.0.0.1", 7000), ("10.0.0.2", 6379), ("::1", 7002))


def test_cluster_seed_nodes_from_the_settings() -> None:
    settings = Settings(
        redis_url=None, redis=RedisSettings(cluster_nodes=["redis-0:6379", "redis-1:6379"])
    )
    target = redis_target(settings)
    assert target is not None
    assert (target.kind, target.nodes) == ("cluster", (("redis-0", 6379), ("redis-1", 6379)))


def test_a_sentinel_url_names_the_service_and_database() -> None:
    target = redis_target(Settings(redis_url="redis+sentinel://s1:26379,s2/gateway/3?password=pw"))
    assert target is not None
    assert (target.kind, target.service, target.db, target.password) == (
        "sentinel",
        "gateway",
        3,
        "pw",
    )
    assert target.nodes == (("s1", 26379), ("s2", 26379))


def test_sentinels_from_the_settings() -> None:
    settings = Settings(
        redis=RedisSettings(sentinels=["s1:26379"], sentinel_service="gateway"),
    )
    target = redis_target(settings)
    assert target is not None
    assert (target.kind, target.service, target.nodes) == ("sentinel", "gateway", (("s1", 26379),))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+sentinel://s1:26379", "service name"),
        ("redis+cluster://", "without hosts"),
        ("redis+cluster://host:notaport", "host[:port]"),
        ("redis+cluster://host:70000", "port"),
    ],
)
def test_malformed_targets_are_refused(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        redis_target(Settings(redis_url=url))


async def test_an_unreachable_cluster_is_an_outage_not_an_error() -> None:
    """redis-py's cluster errors outside RedisError (no node reachable, a slot without a
    primary) reach the callers as RedisUnavailable and their failure policies."""
    shared = connect_redis(Settings(redis_url=f"redis+cluster://127.0.0.1:{free_port()}"))
    assert shared is not None
    try:
        with pytest.raises(RedisUnavailable):
            async with shared.answering() as client:
                await client.get("x")
        limiter = RateLimiter(shared, prefix="t:", failure="open")
        verdict = await limiter.admit([("k", RateLimit.of("l", limit=1, period_s=60))])
        assert verdict.outcomes[0].admitted and verdict.granted is None
    finally:
        await shared.close()
