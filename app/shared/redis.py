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

Keys a script touches together share a hash tag (`{…}`), so every script runs unchanged on
a Redis Cluster.
"""

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from app.settings import Settings

logger = logging.getLogger("gateway.redis")

# What a Redis call may raise when Redis is unreachable, slow or confused.
REDIS_ERRORS = (RedisError, OSError)


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

    def __init__(self, client: Redis) -> None:
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

    def __init__(self, client: Redis, *, retry_s: float) -> None:
        self.client = client
        self.health = RedisHealth(retry_s=retry_s)
        self.pipeliner = RedisPipeliner(client)

    @asynccontextmanager
    async def answering(self) -> AsyncIterator[Redis]:
        """The client for a block of calls, under the discipline: `RedisUnavailable` at once
        while Redis is known to be down, or when a call in the block fails or times out."""
        if not self.health.may_ask():
            raise RedisUnavailable("Redis is down; not asked again yet")
        try:
            yield self.client
        except REDIS_ERRORS as exc:
            self.health.failed(exc)
            raise RedisUnavailable(str(exc)) from exc
        self.health.succeeded()

    async def close(self) -> None:
        await self.pipeliner.drain()
        await self.client.aclose()


# How many keys one SCAN step looks at.
_SCAN_PAGE = 1000


async def delete_keys(
    client: Redis, *, keys: Sequence[str] = (), prefixes: Sequence[str] = ()
) -> int:
    """Delete `keys` and every key that starts with one of `prefixes`; how many were there.

    Keys under a prefix are found with SCAN and MATCH, a page at a time (KEYS would hold
    Redis for the whole keyspace); each key is deleted on its own, so it works on a Cluster.
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


def connect_redis(settings: Settings) -> SharedRedis | None:
    """The process's Redis client, None on embedded defaults (no `REDIS_URL`).

    The only place a Redis client is created (a test enforces it).
    """
    if not settings.redis_url:
        return None
    timeout_s = settings.redis.timeout_s
    pool = BlockingConnectionPool.from_url(
        settings.redis_url,
        # A burst waits briefly for a connection instead of failing.
        max_connections=settings.redis.max_connections,
        timeout=timeout_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        # A pooled connection to a Redis that restarted is dead, and the pool's check at
        # checkout does not always see it: the first command on it fails, and is sent again
        # at once on a new connection. Never on a timeout (the command may be running). A
        # connection lost after Redis ran the command is rare; every command sent here is
        # safe to send twice: sets, deletes, the owner-checked scripts and the in-flight
        # claim (same token) end in the same state; a GCRA or quota script counts one
        # request twice (stricter, never looser); a repeated idempotency claim (SET NX) finds
        # its own pending record and answers 409, never a second order; a repeated PUBLISH
        # is one more reload.
        retry=Retry(NoBackoff(), 1, supported_errors=(RedisConnectionError,)),
    )
    return SharedRedis(Redis.from_pool(pool), retry_s=settings.redis.retry_s)
