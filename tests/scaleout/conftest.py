"""The private Redis Cluster and Sentinel deployments (started once per session), and the
gateway's shared Redis client on each."""

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from app.settings import Settings
from app.shared.redis import SharedRedis, connect_redis
from tests.fixtures.redis_cluster import (
    LocalRedisCluster,
    LocalSentinel,
    redis_cluster,
    redis_sentinel,
)

__all__ = ["redis_cluster", "redis_sentinel"]


@dataclass
class Deployment:
    """A Redis deployment as the gateway reaches it: its URL, its client, a fresh prefix."""

    kind: str
    url: str
    shared: SharedRedis
    prefix: str
    cluster: LocalRedisCluster | None = None
    sentinel: LocalSentinel | None = None


def deployment_settings(url: str) -> Settings:
    """The gateway's settings for `url`, with a Redis bound of 2 s instead of 0.5 s: these
    tests check what the deployments share, and a loaded CI machine has taken longer than
    0.5 s to open the first connection to a freshly started Sentinel's primary."""
    return Settings(redis_url=url, redis={"timeout_s": 2.0})


@pytest.fixture(params=["cluster", "sentinel"])
async def deployment(request: pytest.FixtureRequest) -> AsyncIterator[Deployment]:
    """The gateway's Redis client on a Redis Cluster, then on a Sentinel-managed primary."""
    cluster = sentinel = None
    if request.param == "cluster":
        cluster = request.getfixturevalue("redis_cluster")
        url = cluster.url
    else:
        sentinel = request.getfixturevalue("redis_sentinel")
        url = sentinel.url
    shared = connect_redis(deployment_settings(url))
    assert shared is not None
    try:
        yield Deployment(
            request.param, url, shared, f"t:{uuid.uuid4().hex[:8]}:", cluster, sentinel
        )
    finally:
        await shared.close()
