"""Exact rate limits with GCRA (generic cell rate algorithm), shared through Redis.

A limit of `limit` requests per `period_s` seconds admits one request every
`interval = period_s / limit` and lets a caller run ahead of that pace by up to `burst`
requests. The only state per key is the theoretical arrival time (TAT) of the next request.

With Redis, each key is checked by one atomic Lua script that reads Redis's own clock, so
every gateway process sees one clock and one count; the script touches exactly one key so a
Redis Cluster can hold it, and several limits of one request go out pipelined, in one round
trip. Without Redis (or while it is unreachable and the settings say fail open) the same
arithmetic runs in process.
"""

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import NoScriptError, RedisError

logger = logging.getLogger("gateway.ratelimit")

_US = 1_000_000

# KEYS[1]: the limit's TAT key. ARGV: interval (us), burst capacity (us).
# Returns {admitted, tat - now (us), retry after (us)}. Numbers are written with %.0f
# because Lua's default number formatting would round microsecond timestamps.
GCRA_SCRIPT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000000 + tonumber(clock[2])
local interval = tonumber(ARGV[1])
local capacity = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local allow_at = next_tat - capacity
if now < allow_at then
  return {0, string.format('%.0f', tat - now), string.format('%.0f', allow_at - now)}
end
local ttl_ms = math.ceil((next_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', ttl_ms)
return {1, string.format('%.0f', next_tat - now), '0'}
"""


@dataclass(frozen=True, slots=True)
class RateLimit:
    """`limit` requests per `period_s` seconds, bursting up to `burst` at once."""

    name: str
    limit: int
    period_s: float
    burst: int
    interval_us: int = field(init=False)
    capacity_us: int = field(init=False)
    # The limit's item in `RateLimit-Policy`, e.g. `"consumer-minute";q=600;w=60`.
    policy_item: str = field(init=False)

    def __post_init__(self) -> None:
        interval = max(1, round(self.period_s * _US / self.limit))
        object.__setattr__(self, "interval_us", interval)
        object.__setattr__(self, "capacity_us", interval * self.burst)
        window = int(self.period_s) if float(self.period_s).is_integer() else self.period_s
        object.__setattr__(self, "policy_item", f'"{self.name}";q={self.limit};w={window}')

    @classmethod
    def of(cls, name: str, *, limit: int, period_s: float, burst: int | None = None) -> "RateLimit":
        return cls(name=name, limit=limit, period_s=period_s, burst=burst or limit)


@dataclass(frozen=True, slots=True)
class LimitOutcome:
    """One limit's verdict on one request."""

    limit: RateLimit
    admitted: bool
    remaining: int
    # Seconds until the limit's full burst is available again.
    reset_s: int
    # Seconds until a refused request would be admitted; 0 when admitted.
    retry_after_s: int

    @property
    def header_item(self) -> str:
        """The outcome's item in the `RateLimit` header."""
        return f'"{self.limit.name}";r={self.remaining};t={self.reset_s}'


def _outcome(limit: RateLimit, *, admitted: bool, ahead_us: int, retry_us: int) -> LimitOutcome:
    """Turn GCRA state (how far the TAT is ahead of now) into counts for headers."""
    if admitted:
        remaining = max(0, (limit.capacity_us - ahead_us) // limit.interval_us)
        retry_after = 0
    else:
        remaining = 0
        retry_after = max(1, math.ceil(retry_us / _US))
    return LimitOutcome(
        limit=limit,
        admitted=admitted,
        remaining=remaining,
        reset_s=math.ceil(ahead_us / _US),
        retry_after_s=retry_after,
    )


# One check: the (unprefixed) key the limit counts under, and the limit.
LimitCheck = tuple[str, RateLimit]


class LocalGcra:
    """GCRA in this process's memory: the embedded default and the fail-open fallback."""

    # Forgotten keys are swept every this many checks, so memory follows active callers.
    _SWEEP_EVERY = 4096

    def __init__(self) -> None:
        self._tats: dict[str, int] = {}
        self._checks = 0

    def check(self, checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
        now = time.monotonic_ns() // 1000
        self._checks += 1
        if self._checks % self._SWEEP_EVERY == 0:
            self._sweep(now)
        outcomes = []
        for key, limit in checks:
            tat = max(self._tats.get(key, now), now)
            next_tat = tat + limit.interval_us
            allow_at = next_tat - limit.capacity_us
            if now < allow_at:
                outcomes.append(
                    _outcome(limit, admitted=False, ahead_us=tat - now, retry_us=allow_at - now)
                )
                continue
            self._tats[key] = next_tat
            outcomes.append(_outcome(limit, admitted=True, ahead_us=next_tat - now, retry_us=0))
        return outcomes

    def _sweep(self, now: int) -> None:
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}


class RedisGcra:
    """GCRA in Redis: one EVALSHA per limit key, all of a request's limits in one round trip."""

    def __init__(self, redis: Redis, *, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix + "rl:"
        self._sha: str | None = None

    async def check(self, checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
        if self._sha is None:
            await self._load()
        try:
            replies = await self._send(checks)
        except NoScriptError:
            # Redis restarted or its script cache was flushed.
            await self._load()
            replies = await self._send(checks)
        return [
            _outcome(limit, admitted=reply[0] == 1, ahead_us=int(reply[1]), retry_us=int(reply[2]))
            for (_, limit), reply in zip(checks, replies, strict=True)
        ]

    async def _load(self) -> None:
        self._sha = str(await self._redis.script_load(GCRA_SCRIPT))

    async def _send(self, checks: Sequence[LimitCheck]) -> list[list[int | bytes]]:
        sha = self._sha
        assert sha is not None
        if len(checks) == 1:
            key, limit = checks[0]
            reply = await self._redis.evalsha(
                sha, 1, self._prefix + key, limit.interval_us, limit.capacity_us
            )
            return [reply]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, limit in checks:
                pipe.evalsha(sha, 1, self._prefix + key, limit.interval_us, limit.capacity_us)
            replies = await pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies


class RateLimiterUnavailable(Exception):
    """Redis is unreachable and the settings say to refuse rather than guess."""


RedisFailure = Literal["open", "closed"]


class RateLimiter:
    """Checks a request's limits in Redis when configured, otherwise in process.

    When Redis fails, the limiter stops asking it for `retry_s` (so an outage costs one
    timeout, not one per request), then lets a single request probe it again. Meanwhile
    `redis_failure="open"` limits in process and `"closed"` refuses.
    """

    def __init__(
        self,
        redis: Redis | None,
        *,
        prefix: str,
        failure: RedisFailure,
        retry_s: float,
    ) -> None:
        self._redis = redis
        self._shared = RedisGcra(redis, prefix=prefix) if redis is not None else None
        self.local = LocalGcra()
        self._failure = failure
        self._retry_s = retry_s
        self._down_until = 0.0
        self._probing = False

    @classmethod
    def connect(
        cls,
        redis_url: str | None,
        *,
        prefix: str,
        failure: RedisFailure,
        timeout_s: float,
        retry_s: float,
        max_connections: int,
    ) -> "RateLimiter":
        """A limiter with its own Redis pool: short timeouts and no retries, so that an
        outage costs a request at most `timeout_s` and the fallback decides the rest.

        The pool is bounded and requests queue for a connection: a burst then reuses a few
        connections instead of opening one per request in flight.
        """
        redis = None
        if redis_url:
            pool = BlockingConnectionPool.from_url(
                redis_url,
                max_connections=max_connections,
                timeout=None,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            redis = Redis(connection_pool=pool)
        return cls(redis, prefix=prefix, failure=failure, retry_s=retry_s)

    @property
    def redis_down(self) -> bool:
        return self._down_until > 0.0

    async def check(self, checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
        if self._shared is None:
            return self.local.check(checks)
        if self._down_until:
            if self._probing or time.monotonic() < self._down_until:
                return self._without_redis(checks)
            self._probing = True
        try:
            outcomes = await self._shared.check(checks)
        except (RedisError, OSError) as exc:
            if not self._down_until:
                logger.warning(
                    "Redis unreachable for rate limiting (%s); failing %s until it answers",
                    exc,
                    self._failure,
                )
            self._down_until = time.monotonic() + self._retry_s
            return self._without_redis(checks)
        finally:
            self._probing = False
        if self._down_until:
            logger.warning("Redis answers again; rate limits are shared again")
            self._down_until = 0.0
        return outcomes

    def _without_redis(self, checks: Sequence[LimitCheck]) -> list[LimitOutcome]:
        if self._failure == "closed":
            raise RateLimiterUnavailable
        return self.local.check(checks)

    async def close(self) -> None:
        if self._redis is not None:
            await self._redis.aclose(close_connection_pool=True)
