"""The process's one Redis client, and the one discipline every Redis user follows.

Every user of shared state (rate limits, in-flight slots, quotas, idempotency records,
sessions, key revocations, self-registrations, change notices) goes through the redis-py
asyncio client built here, once, in the lifespan. The discipline:

- a short timeout on every command and connect (`redis_timeout_s`), so a Redis that hangs
  instead of refusing costs a request that long and no more;
- one immediate retry on a dead connection (a pooled connection that Redis closed when it
  restarted), never on a timeout: the command may have run;
- a remembered "Redis is down" state (`RedisHealth`): after a failure nobody waits on Redis
  again for `redis_retry_s`; then one caller probes it, and the first success ends the
  outage for everyone;
- on top, each user's own documented failure policy: the rate limiter fails open (limits in
  process) or closed (503), key revocation checks fall back to the config snapshot's
  revocations, order idempotency fails closed (503 with `Retry-After`), self-registration
  reads keep the last known instances. A user that serves on a fallback says so through
  `RedisHealth.announce_fallback`: once per outage in the log, not once per request.

Naming: each concern with state to share has a `Redis…` implementation and a `Memory…` one
(in-process, the embedded default and, where the policy says so, the fallback).

Where Redis runs (`redis_target`): `REDIS_URL` names a single node (`redis://`,
`rediss://`, `unix://`), a Redis Cluster (`redis+cluster://host:port[,host:port...]`, or the
seed nodes in `GATEWAY_REDIS__CLUSTER_NODES`) or a primary that Sentinel manages
(`redis+sentinel://host:port[,host:port...]/service_name[/db]`, or
`GATEWAY_REDIS__SENTINELS` and `GATEWAY_REDIS__SENTINEL_SERVICE`). Every user takes the same
`SharedRedis` whatever the kind: on a cluster the client follows `MOVED`/`ASK` and a failover
by itself, the pipeliner's batches are split per node by redis-py's cluster pipeline, and
change notices use sharded pub/sub (`SPUBLISH`/`SSUBSCRIBE`) so a notice travels to one
shard, not across the whole cluster bus.

Keys a script touches together share a hash tag (`{…}`), so every script runs unchanged on
a Redis Cluster; `SCRIPT LOAD` goes to every primary, and a primary promoted by a failover
that never saw a script gets it on its first `NOSCRIPT`.
"""

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, unquote

import hiredis
from redis.asyncio import BlockingConnectionPool, Redis, RedisCluster
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, ClusterPubSub
from redis.asyncio.connection import (
    AbstractConnection,
    Connection,
    SSLConnection,
    UnixDomainSocketConnection,
)
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError

from app.settings import Settings

logger = logging.getLogger("gateway.redis")

# What a Redis call may raise when Redis is unreachable, slow or confused. redis-py's
# cluster errors that are not `RedisError`s (a slot no live primary serves, a cluster that
# cannot be reached at all) are outages too.
REDIS_ERRORS = (RedisError, OSError, RedisClusterException)

# The client every user of shared state gets: one node's (also a Sentinel-managed primary's)
# or a cluster's. Both speak the same commands, pipelines and scripts.
RedisClient = Redis | RedisCluster

RedisKind = Literal["node", "cluster", "sentinel"]


class RedisUnavailable(Exception):
    """Redis did not answer (or is known to be down); the caller applies its failure policy."""


class RedisHealth:
    """Whether Redis is worth asking: remembered across calls, so an outage costs one timeout
    per `retry_s`, not one per request."""

    def __init__(self, *, retry_s: float) -> None:
        self._retry_s = retry_s
        self._down_until = 0.0
        # The fallbacks already logged during this outage.
        self._fallbacks: set[str] = set()

    @property
    def down(self) -> bool:
        return self._down_until != 0.0

    def may_ask(self) -> bool:
        """True while Redis is up; while it is down, True for one probe every `retry_s`."""
        if not self._down_until:
            return True
        now = time.monotonic()
        if now < self._down_until:
            return False
        # This caller probes; the others keep failing fast until it knows.
        self._down_until = now + self._retry_s
        return True

    def succeeded(self) -> None:
        if self._down_until:
            logger.warning("Redis answers again")
            self._down_until = 0.0
            self._fallbacks.clear()

    def announce_fallback(self, fallback: str) -> None:
        """Log what serves without Redis, once per outage however many requests it serves."""
        if fallback not in self._fallbacks:
            self._fallbacks.add(fallback)
            logger.warning("Redis is down: %s", fallback)

    def failed(self, error: BaseException) -> None:
        if not self._down_until:
            logger.warning(
                "Redis is unreachable (%s: %s); not asked again for %.1f s",
                type(error).__name__,
                error,
                self._retry_s,
            )
        self._down_until = time.monotonic() + self._retry_s


# One command: its name and arguments, as `Redis.execute_command` takes them.
Command = tuple[Any, ...]
# Commands queued by one request, and where their replies go.
_Queued = tuple[Sequence[Command], "asyncio.Future[list[Any]]"]


class RedisPipeliner:
    """Commands of concurrent requests sent together: one redis-py pipeline per turn of the
    event loop, whatever the number of requests that queued commands in that turn.

    The per-request path (rate limits, in-flight slot, key revocation) costs one round trip
    either way; what batching saves is redis-py's fixed cost per pipeline (a pooled
    connection, packing, parsing set-up), about 200 us of CPU per request measured here,
    which a gateway doing a few thousand requests a second cannot afford. Replies, errors
    included, come back per request in order; a connection failure or timeout fails every
    request of the batch, each of which applies its own failure policy.
    """

    def __init__(self, client: RedisClient) -> None:
        self._client = client
        self._queued: list[_Queued] = []
        self._sending: set[asyncio.Task[None]] = set()

    def execute(self, commands: Sequence[Command]) -> "asyncio.Future[list[Any]]":
        """The replies to `commands` (errors as values), sent with this turn's other commands."""
        loop = asyncio.get_running_loop()
        replies: asyncio.Future[list[Any]] = loop.create_future()
        if not self._queued:
            loop.call_soon(self._flush)
        self._queued.append((commands, replies))
        return replies

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.ensure_future(self._send(batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(
        self, batch: list[tuple[Sequence[Command], "asyncio.Future[list[Any]]"]]
    ) -> None:
        # On a cluster, redis-py's cluster pipeline sends each node its commands (one round
        # trip per node, in parallel) and follows MOVED/ASK for the ones that moved.
        pipe = self._client.pipeline(transaction=False)
        for commands, _ in batch:
            for command in commands:
                pipe.execute_command(*command)
        try:
            replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:
            for _, waiter in batch:
                if not waiter.done():
                    waiter.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        start = 0
        for commands, waiter in batch:
            end = start + len(commands)
            if not waiter.done():
                waiter.set_result(replies[start:end])
            start = end

    async def drain(self) -> None:
        """Wait (briefly) for the batches already on their way."""
        if self._sending:
            await asyncio.wait(set(self._sending), timeout=1.0)


class SharedRedis:
    """The Redis client, its health and its pipeliner, handed to every user of shared state."""

    def __init__(
        self,
        client: RedisClient,
        *,
        retry_s: float,
        kind: RedisKind = "node",
        closers: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self.client = client
        self.kind = kind
        self.health = RedisHealth(retry_s=retry_s)
        self.pipeliner = RedisPipeliner(client)
        self._closers = tuple(closers)
        # A cluster client routes a command by the slot map it reads on first use; commands
        # issued before it has one go to any node, and the MOVED replies that follow make it
        # drop every connection, replies in flight included. So the first caller reads the
        # map and the others wait for it.
        self._discovered: asyncio.Future[Any] | None = None
        self._unmapped = isinstance(client, RedisCluster)

    @property
    def cluster(self) -> bool:
        """Whether the client talks to a Redis Cluster (sharded pub/sub, per-node SCAN)."""
        return self.kind == "cluster"

    @asynccontextmanager
    async def answering(self) -> AsyncIterator[RedisClient]:
        """The client for a block of calls, under the discipline: `RedisUnavailable` at once
        while Redis is known to be down, or when a call in the block fails or times out."""
        if not self.health.may_ask():
            raise RedisUnavailable("Redis is down; not asked again yet")
        try:
            if self._unmapped:
                await self._discover()
            yield self.client
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
            raise RedisUnavailable(str(exc)) from exc
        self.health.succeeded()

    async def _discover(self) -> None:
        """Read the cluster's slot map once, whoever asks first."""
        assert isinstance(self.client, RedisCluster)
        failed = (
            self._discovered is not None
            and self._discovered.done()
            and (self._discovered.cancelled() or self._discovered.exception() is not None)
        )
        if self._discovered is None or failed:
            self._discovered = asyncio.ensure_future(self.client.initialize())
        await asyncio.shield(self._discovered)
        self._unmapped = False

    async def subscribe(self, channel: str) -> PubSub:
        """A subscription to `channel` on a connection of its own: sharded (`SSUBSCRIBE`) on
        a cluster, to the shard that owns the channel's slot. Read it with `receive`; close
        it with `aclose()`. Not under the command timeout: a subscription waits by nature."""
        if self._unmapped:
            await self._discover()
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            if isinstance(pubsub, ClusterPubSub):
                await pubsub.ssubscribe(channel)
            else:
                await pubsub.subscribe(channel)
        except BaseException:
            with contextlib.suppress(*REDIS_ERRORS):
                await pubsub.aclose()
            raise
        return pubsub

    async def publish(self, channel: str, message: bytes) -> None:
        """Send `message` on `channel`: sharded (`SPUBLISH`) on a cluster, so it reaches the
        shard that owns the channel instead of every node."""
        async with self.answering() as client:
            if isinstance(client, RedisCluster):
                await client.spublish(channel, message)
            else:
                await client.publish(channel, message)

    async def close(self) -> None:
        await self.pipeliner.drain()
        await self.client.aclose()
        for close in self._closers:
            await close()


async def receive(pubsub: PubSub, *, timeout_s: float) -> dict[str, Any] | None:
    """The next message of a `SharedRedis.subscribe` subscription, None after `timeout_s`.
    A shard subscription that its node dropped (the channel's slot moved, a failover)
    raises `ConnectionError`, so the subscriber subscribes again."""
    if isinstance(pubsub, ClusterPubSub):
        message = await pubsub.get_sharded_message(timeout=timeout_s)
        if not pubsub.shard_channels:
            raise ConnectionError("the sharded subscription was dropped by its node")
        return message
    return await pubsub.get_message(timeout=timeout_s)


# How many keys one SCAN step looks at.
_SCAN_PAGE = 1000


async def delete_keys(
    client: RedisClient, *, keys: Sequence[str] = (), prefixes: Sequence[str] = ()
) -> int:
    """Delete `keys` and every key that starts with one of `prefixes`; how many were there.

    Keys under a prefix are found with SCAN and MATCH, a page at a time (KEYS would hold
    Redis for the whole keyspace; on a cluster, redis-py scans every primary); each key is
    deleted on its own, so it works on a Cluster.
    """
    names: list[Any] = list(keys)
    for prefix in prefixes:
        match = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"
        names += [name async for name in client.scan_iter(match=match, count=_SCAN_PAGE)]
    if not names:
        return 0
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.delete(name)
    return sum(await pipe.execute())


@dataclass(frozen=True, slots=True)
class RedisTarget:
    """Where the shared state lives: one node (`url`), a cluster's seed nodes, or the
    sentinels that know a primary (`service`)."""

    kind: RedisKind
    url: str = ""
    nodes: tuple[tuple[str, int], ...] = ()
    service: str = ""
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    db: int = 0


_SCHEMES: dict[str, tuple[RedisKind, bool]] = {
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
}


def _host_port(text: str, *, default_port: int) -> tuple[str, int]:
    """`host:port`, `[v6]:port` or `host` as a pair; ValueError naming the text otherwise."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest.removeprefix(":")
    else:
        host, _, port_text = text.rpartition(":") if ":" in text else (text, "", "")
    if not host:
        raise ValueError(f"not a Redis host[:port]: {text!r}")
    try:
        port = int(port_text) if port_text else default_port
    except ValueError:
        raise ValueError(f"not a Redis host[:port]: {text!r}") from None
    if not 0 < port < 65536:
        raise ValueError(f"not a Redis port: {text!r}")
    return host, port


def redis_target(settings: Settings) -> RedisTarget | None:
    """What `REDIS_URL` and the `GATEWAY_REDIS__*` node lists name; None without either.

    The seed lists in the settings win over the URL's hosts; the URL still gives the
    credentials (and, for a node, every option redis-py reads from a URL).
    """
    url = settings.redis_url or ""
    scheme, _, rest = url.partition("://")
    kind, tls = _SCHEMES.get(scheme.lower(), ("node", scheme.lower() == "rediss"))
    username = password = None
    db = 0
    nodes: tuple[tuple[str, int], ...] = ()
    service = ""
    if kind != "node":
        rest, _, query = rest.partition("?")
        netloc, _, path = rest.partition("/")
        userinfo, _, hosts = netloc.rpartition("@")
        if userinfo:
            user, _, secret = userinfo.partition(":")
            username, password = unquote(user) or None, unquote(secret) or None
        for name, value in parse_qsl(query):
            if name == "password":
                password = value
        default_port = 26379 if kind == "sentinel" else 6379
        nodes = tuple(_host_port(h, default_port=default_port) for h in hosts.split(",") if h)
        if kind == "sentinel":
            service, _, db_text = path.partition("/")
            db = int(db_text) if db_text else 0
    if settings.redis.cluster_nodes:
        kind = "cluster"
        nodes = tuple(_host_port(h, default_port=6379) for h in settings.redis.cluster_nodes)
    elif settings.redis.sentinels:
        kind = "sentinel"
        nodes = tuple(_host_port(h, default_port=26379) for h in settings.redis.sentinels)
    if kind == "sentinel":
        service = settings.redis.sentinel_service or service
        if not service:
            raise ValueError(
                "a Sentinel-managed Redis needs the primary's service name: "
                "redis+sentinel://host:port/<service> or GATEWAY_REDIS__SENTINEL_SERVICE"
            )
    if kind == "node":
        return RedisTarget(kind="node", url=url) if url else None
    if not nodes:
        raise ValueError(f"REDIS_URL names a Redis {kind} without hosts")
    return RedisTarget(
        kind=kind,
        nodes=nodes,
        service=service,
        username=username,
        password=password,
        tls=tls,
        db=db,
    )


class _HiredisPacking:
    """Commands packed by hiredis (C) instead of redis-py's Python packer, several times
    cheaper per command (every request's admission sends one). What hiredis does not pack
    as redis-py would (a command name of several words, a value of another type) goes to
    redis-py's packer, which also raises its own error for what cannot be sent."""

    def pack_command(self, *args: Any) -> list[bytes]:
        name = args[0]
        if (isinstance(name, bytes) and b" " not in name) or (
            isinstance(name, str) and " " not in name
        ):
            try:
                return [hiredis.pack_command(args)]
            except TypeError:
                pass
        packed: list[bytes] = super().pack_command(*args)  # type: ignore[misc]
        return packed


class _PackedConnection(_HiredisPacking, Connection):
    pass


class _PackedSSLConnection(_HiredisPacking, SSLConnection):
    pass


class _PackedUnixConnection(_HiredisPacking, UnixDomainSocketConnection):
    pass


# The connection class redis-py picks for a URL's scheme, and its hiredis-packing twin.
_PACKED: dict[type[AbstractConnection], type[AbstractConnection]] = {
    Connection: _PackedConnection,
    SSLConnection: _PackedSSLConnection,
    UnixDomainSocketConnection: _PackedUnixConnection,
}


def connect_redis(settings: Settings) -> SharedRedis | None:
    """The process's Redis client, None on embedded defaults (no `REDIS_URL`).

    The only place a Redis client is created (a test enforces it).
    """
    target = redis_target(settings)
    if target is None:
        return None
    timeout_s = settings.redis.timeout_s
    # A pooled connection to a Redis that restarted is dead, and the pool's check at
    # checkout does not always see it: the first command on it fails, and is sent again
    # at once on a new connection. Never on a timeout (the command may be running). A
    # connection lost after Redis ran the command is rare; every command sent here is
    # safe to send twice: sets, deletes, the owner-checked scripts and the in-flight
    # claim (same token) end in the same state; a GCRA or quota script counts one
    # request twice (stricter, never looser); a repeated idempotency claim (SET NX) finds
    # its own pending record and answers 409, never a second order; a repeated PUBLISH
    # is one more reload.
    retry = Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,))
    retry_s = settings.redis.retry_s
    if target.kind == "cluster":
        # The cluster client re-reads the slot map after a connection error, a timeout or
        # CLUSTERDOWN and tries once more (after 0.25 s: redis-py's pause), so a failover
        # costs the requests of that moment their failure policy, and no restart. A
        # timeout is retried here too (redis-py does not tell them apart on a cluster):
        # the commands above are safe to send twice. Slots whose primary is gone fail;
        # the others keep serving (no full coverage required).
        cluster = RedisCluster(
            startup_nodes=[ClusterNode(host, port) for host, port in target.nodes],
            username=target.username,
            password=target.password,
            ssl=target.tls,
            require_full_coverage=False,
            max_connections=settings.redis.max_connections,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 1),
        )
        return SharedRedis(cluster, retry_s=retry_s, kind="cluster")
    if target.kind == "sentinel":
        options: dict[str, Any] = {
            "socket_timeout": timeout_s,
            "socket_connect_timeout": timeout_s,
        }
        sentinel = Sentinel(list(target.nodes), sentinel_kwargs=dict(options), **options)
        # Each new connection asks the sentinels where the primary is; a connection to a
        # primary demoted by a failover answers READONLY, is dropped, and the retry
        # connects to the new one.
        primary = sentinel.master_for(
            target.service,
            username=target.username,
            password=target.password,
            ssl=target.tls,
            db=target.db,
            max_connections=settings.redis.max_connections,
            retry=retry,
            **options,
        )

        async def close_sentinels() -> None:
            for client in sentinel.sentinels:
                await client.aclose()

        return SharedRedis(primary, retry_s=retry_s, kind="sentinel", closers=[close_sentinels])
    pool = BlockingConnectionPool.from_url(
        target.url,
        # A burst waits briefly for a connection instead of failing.
        max_connections=settings.redis.max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=retry,
    )
    pool.connection_class = _PACKED.get(pool.connection_class, pool.connection_class)
    return SharedRedis(Redis.from_pool(pool), retry_s=retry_s)
