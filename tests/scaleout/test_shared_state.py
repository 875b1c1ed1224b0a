"""Every user of shared state on a real Redis Cluster (three primaries, one replica each) and
on a Sentinel-managed primary, through the one client `connect_redis` builds from REDIS_URL:
exact limits, in-flight slots, revocations, quotas, idempotency records, sessions,
self-registrations, key deletion by prefix; and the same after a failover, without a new
client."""

import asyncio
import time
import uuid

import pytest
from redis.asyncio.cluster import ClusterPubSub
from redis.crc import key_slot
from redis.exceptions import RedisError

from app.cache.stores import RedisCache
from app.discovery.selfreg import SelfRegistry
from app.errors import ServiceUnavailable, TooManyRequests
from app.policy.idempotency import RedisRecords
from app.security.quotas import QuotaCounter
from app.security.sessions import RedisDocuments
from app.shared.redis import RedisCluster, connect_redis, delete_keys, receive
from app.store.snapshot import PlanConfig
from app.traffic.gcra import RateLimit, RedisGcra, SetMembership, SlotClaim
from app.traffic.ratelimit import RateLimiter
from tests.fixtures.redis_cluster import RedisProcess
from tests.scaleout.conftest import Deployment, deployment_settings

pytestmark = pytest.mark.redis


def _nodes_of(deployment: Deployment, keys: list[str]) -> set[int]:
    """The cluster primaries (ports) that hold `keys`."""
    assert deployment.cluster is not None
    with deployment.cluster.nodes[0].client() as client:
        slots = client.execute_command("CLUSTER", "SLOTS")
    owners = {}
    for start, end, primary, *_ in slots:
        for key in keys:
            if start <= key_slot(key.encode()) <= end:
                owners[key] = int(primary[1])
    return set(owners.values())


async def test_a_burst_admits_exactly_the_limit_on_every_key(deployment: Deployment) -> None:
    gcra = RedisGcra(deployment.shared, prefix=deployment.prefix)
    limit = RateLimit.of("burst", limit=5, period_s=60)
    keys = [f"a:{n}" for n in range(6)]
    if deployment.cluster is not None:
        assert len(_nodes_of(deployment, [deployment.prefix + "rl:" + k for k in keys])) >= 2
    verdicts = await asyncio.gather(
        *(gcra.admit([(key, limit)]) for key in keys for _ in range(50))
    )
    admitted = {key: 0 for key in keys}
    for index, verdict in enumerate(verdicts):
        if verdict.outcomes[0].admitted:
            admitted[keys[index // 50]] += 1
    assert admitted == {key: 5 for key in keys}


async def test_a_refusal_gives_back_what_the_other_limits_counted(
    deployment: Deployment,
) -> None:
    gcra = RedisGcra(deployment.shared, prefix=deployment.prefix)
    wide, narrow = (
        RateLimit.of("wide", limit=5, period_s=60),
        RateLimit.of("narrow", limit=1, period_s=60),
    )
    checks = [("wide", wide), ("narrow", narrow)]
    first = await gcra.admit(checks)
    second = await gcra.admit(checks)
    alone = await gcra.admit([("wide", wide)])
    assert [o.admitted for o in first.outcomes] == [True, True]
    assert [o.admitted for o in second.outcomes] == [True, False]
    # The refused request counted nothing: the wide limit has used 2 of 5, not 3.
    assert alone.outcomes[0].remaining == 3


async def test_in_flight_slots_and_revocations_in_the_same_round_trip(
    deployment: Deployment,
) -> None:
    gcra = RedisGcra(deployment.shared, prefix=deployment.prefix)
    revoked = deployment.prefix + "apikeys:revoked"
    await deployment.shared.client.sadd(revoked, "sk_gone")
    claims = [SlotClaim(key="c:1", limit=2, lease_ms=10_000) for _ in range(6)]
    verdicts = await asyncio.gather(
        *(gcra.admit((), claim, SetMembership(revoked, "sk_gone")) for claim in claims)
    )
    assert sorted(v.granted for v in verdicts) == [False] * 4 + [True] * 2
    assert all(v.member is True for v in verdicts)
    for claim, verdict in zip(claims, verdicts, strict=True):
        if verdict.granted:
            gcra.release(claim)
    await gcra.aclose()
    again = await gcra.admit((), SlotClaim(key="c:1", limit=2, lease_ms=10_000))
    assert again.granted is True


async def test_quotas_count_exactly_and_are_forgotten(deployment: Deployment) -> None:
    quotas = QuotaCounter(deployment.shared, prefix=deployment.prefix)
    plan = PlanConfig(
        name="metered",
        rate_per_second=None,
        rate_per_minute=None,
        quota_per_day=3,
        quota_per_month=10,
        max_in_flight=None,
        scopes=frozenset(),
    )
    results = await asyncio.gather(
        *(quotas.consume(7, plan) for _ in range(8)), return_exceptions=True
    )
    assert sum(1 for r in results if isinstance(r, TooManyRequests)) == 5
    assert [
        r for r in results if isinstance(r, BaseException) and not isinstance(r, TooManyRequests)
    ] == []
    assert (await quotas.usage(7)).used_today == 3
    await quotas.forget(7)
    assert (await quotas.usage(7)).used_today == 0


async def test_one_claim_per_idempotency_key(deployment: Deployment) -> None:
    records = RedisRecords(deployment.shared)
    key = deployment.prefix + "idem:" + uuid.uuid4().hex
    owners = [uuid.uuid4().hex for _ in range(10)]
    claims = await asyncio.gather(
        *(records.claim(key, {"owner": owner, "state": "pending"}, lease_s=30) for owner in owners)
    )
    assert claims.count(True) == 1
    winner = owners[claims.index(True)]
    loser = next(owner for owner in owners if owner != winner)
    # Only the owner completes (the scripts run on the key's own node).
    await records.complete(key, owner=loser, record={"owner": loser, "state": "done"}, ttl_s=60)
    assert (await records.get(key) or {})["state"] == "pending"
    await records.complete(key, owner=winner, record={"owner": winner, "state": "done"}, ttl_s=60)
    assert (await records.get(key) or {})["state"] == "done"
    await records.release(key, owner=winner)
    assert await records.get(key) is None


async def test_sessions_and_login_states(deployment: Deployment) -> None:
    documents = RedisDocuments(deployment.shared, prefix=deployment.prefix)
    await documents.put("session", "s1", b'{"user": "alice"}', ttl_s=60)
    await documents.put("login", "l1", b"state", ttl_s=60)
    assert await documents.get("session", "s1") == b'{"user": "alice"}'
    taken = await asyncio.gather(*(documents.take("login", "l1") for _ in range(5)))
    assert taken.count(b"state") == 1
    await documents.delete("session", "s1")
    assert await documents.get("session", "s1") is None


async def test_self_registrations_in_transactions(deployment: Deployment) -> None:
    service = f"svc-{uuid.uuid4().hex[:6]}"
    one = SelfRegistry(redis=deployment.shared, prefix=deployment.prefix, default_ttl_s=30)
    other = SelfRegistry(redis=deployment.shared, prefix=deployment.prefix, default_ttl_s=30)
    await one.register(service, "http://10.0.0.1:80", weight=3)
    assert await one.heartbeat(service, "http://10.0.0.1:80") is not None
    await other.refresh([service])
    assert [(r.url, r.weight) for r in other.live(service)] == [("http://10.0.0.1:80", 3)]
    assert await one.deregister(service, "http://10.0.0.1:80")
    await other.refresh([service])
    assert other.live(service) == ()


async def test_keys_under_a_prefix_are_deleted_on_every_node(deployment: Deployment) -> None:
    client = deployment.shared.client
    keys = [f"{deployment.prefix}gone:{n}" for n in range(40)]
    for key in keys:
        await client.set(key, "1")
    await client.set(deployment.prefix + "kept", "1")
    if deployment.cluster is not None:
        assert isinstance(client, RedisCluster)
        assert len(_nodes_of(deployment, keys)) == 3
    assert await delete_keys(client, prefixes=[deployment.prefix + "gone:"]) == 40
    assert await client.exists(*keys) == 0 if deployment.cluster is None else True
    for key in keys:
        assert await client.exists(key) == 0
    assert await client.exists(deployment.prefix + "kept") == 1


async def test_scripts_run_again_after_a_failover_without_a_new_client(
    deployment: Deployment,
) -> None:
    """The replica promoted by a failover never loaded the scripts: the first NOSCRIPT loads
    them; MOVED (cluster) or READONLY (Sentinel) sends the client to the new primary."""
    gcra = RedisGcra(deployment.shared, prefix=deployment.prefix)
    records = RedisRecords(deployment.shared)
    limit = RateLimit.of("failover", limit=3, period_s=60)
    assert (await gcra.admit([("f", limit)])).outcomes[0].admitted
    if deployment.cluster is not None:
        slot = key_slot((deployment.prefix + "rl:f").encode())
        with deployment.cluster.nodes[0].client() as probe:
            primary = next(
                int(row[2][1])
                for row in probe.execute_command("CLUSTER", "SLOTS")
                if row[0] <= slot <= row[1]
            )
        deployment.cluster.failover(primary)
    else:
        assert deployment.sentinel is not None
        deployment.sentinel.failover()
    for server in _all_servers(deployment):
        with server.client() as direct:
            direct.execute_command("SCRIPT", "FLUSH")
    outcomes = []
    for _ in range(4):
        try:
            verdict = await gcra.admit([("f", limit)])
        except Exception as exc:  # the moment of the switch may fail; the next must not
            outcomes.append(type(exc).__name__)
        else:
            outcomes.append(verdict.outcomes[0].admitted)
    # The count survived the failover (the replica had it): 1 + 2 admitted, then refused.
    assert outcomes[-2:] == [True, False] or outcomes[-1] is False, outcomes
    key = deployment.prefix + "idem:after-failover"
    assert await records.claim(key, {"owner": "x"}, lease_s=30)
    await records.release(key, owner="x")
    assert await records.get(key) is None


def _all_servers(deployment: Deployment) -> list:
    if deployment.cluster is not None:
        return list(deployment.cluster.nodes)
    assert deployment.sentinel is not None
    return [deployment.sentinel.primary, deployment.sentinel.replica]


async def test_notices_reach_another_client_over_sharded_pub_sub(deployment: Deployment) -> None:
    """What change notices and cache invalidations use: SPUBLISH/SSUBSCRIBE on a cluster."""
    listener = connect_redis(deployment_settings(deployment.url))
    assert listener is not None
    channel = deployment.prefix + "config-changed"
    try:
        pubsub = await listener.subscribe(channel)
        try:
            if deployment.cluster is not None:
                assert isinstance(pubsub, ClusterPubSub) and pubsub.shard_channels
            await deployment.shared.publish(channel, b'{"origin": "x"}')
            message = None
            for _ in range(20):
                message = await receive(pubsub, timeout_s=0.1)
                if message is not None:
                    break
            assert message is not None and message["data"] == b'{"origin": "x"}'
        finally:
            await pubsub.aclose()
    finally:
        await listener.close()


async def test_response_cache_locks_and_invalidation_on_every_node(
    deployment: Deployment,
) -> None:
    store = RedisCache(deployment.shared, prefix=deployment.prefix)
    token = await store.lock("GET /a?x=1", lease_ms=5000)
    assert token is not None
    assert await store.lock("GET /a?x=1", lease_ms=5000) is None
    await store.unlock("GET /a?x=1", token)
    assert await store.lock("GET /a?x=1", lease_ms=5000) is not None
    client = deployment.shared.client
    for n in range(30):
        await client.set(store.entries + "{GET /quotes/" + str(n) + "}", b"x")
    assert await store.delete_matching(["GET /quotes/*"]) == 30


async def test_a_primary_stopped_keeps_the_failure_policies_and_recovers(
    deployment: Deployment,
) -> None:
    """The primary holding a limit's and an idempotency record's keys is killed: until its
    replica is promoted the limits count in process (fail open) and the ledger answers 503
    (fail closed, no order); then both are Redis's again, with the same client."""
    shared = deployment.shared
    limiter = RateLimiter(shared, prefix=deployment.prefix, failure="open")
    records = RedisRecords(shared)
    # Keys on one shard (a hash tag), so that the killed primary holds both.
    limit_key = "{victim}:limit"
    record_key = deployment.prefix + "idem:{victim}"
    limit = RateLimit.of("stop", limit=1000, period_s=60)
    assert (await limiter.admit([(limit_key, limit)])).outcomes[0].admitted
    if deployment.cluster is not None:
        victim = deployment.cluster.node(
            _primary_of(deployment, deployment.prefix + "rl:" + limit_key)
        )
    else:
        assert deployment.sentinel is not None
        port = deployment.sentinel.primary_port()
        victim = next(s for s in _all_servers(deployment) if s.port == port)
    victim.stop()
    try:
        fell_back = shared_again = False
        refused_orders = 0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not shared_again:
            verdict = await limiter.admit([(limit_key, limit)], SlotClaim("c:9", 5, 10_000))
            # Fail open: admitted, counted in process (no slot granted by Redis).
            assert verdict.outcomes[0].admitted
            if verdict.granted is None:
                fell_back = True
                with pytest.raises(ServiceUnavailable):
                    await records.claim(record_key, {"owner": "o"}, lease_s=30)
                refused_orders += 1
            else:
                shared_again = True
            await asyncio.sleep(0.2)
        assert fell_back and refused_orders > 0
        assert shared_again, "the replica was not promoted"
        assert await records.claim(record_key, {"owner": "o"}, lease_s=30)
        await records.release(record_key, owner="o")
    finally:
        victim.start()
        await asyncio.to_thread(_wait_restored, deployment, victim)


def _primary_of(deployment: Deployment, key: str) -> int:
    assert deployment.cluster is not None
    slot = key_slot(key.encode())
    with deployment.cluster.nodes[0].client() as probe:
        for start, end, primary, *_ in probe.execute_command("CLUSTER", "SLOTS"):
            if start <= slot <= end:
                return int(primary[1])
    raise AssertionError(slot)


def _wait_restored(deployment: Deployment, server: RedisProcess) -> None:
    """The restarted server is back as a replica, the deployment healthy."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with server.client() as client:
                replication = client.info("replication")
            if replication["role"] == "slave" and replication.get("master_link_status") == "up":
                break
        except (RedisError, OSError):
            pass
        time.sleep(0.1)
    if deployment.cluster is not None:
        deployment.cluster.wait_healthy()
