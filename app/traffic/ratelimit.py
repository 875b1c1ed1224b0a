"""The rate limiter: GCRA in Redis when configured (`app.traffic.gcra`), in process otherwise,
and what happens when Redis fails.

While Redis is down (`app.shared.redis.RedisHealth`: one timeout, then nobody asks it again
until a probe succeeds), `redis_failure="open"` limits in this process alone and `"closed"`
refuses with 503.
"""

from collections.abc import Sequence
from typing import Literal

from app.shared.redis import REDIS_ERRORS, SharedRedis
from app.traffic.gcra import (
    LimitCheck,
    LimitOutcome,
    MemoryGcra,
    RedisGcra,
    RedisVerdict,
    SetMembership,
    SlotClaim,
)

RedisFailure = Literal["open", "closed"]


class RateLimiterUnavailable(Exception):
    """Redis is unreachable and the settings say to refuse rather than guess."""


class RateLimiter:
    """Checks a request's limits in Redis when configured, otherwise in process."""

    def __init__(self, redis: SharedRedis | None, *, prefix: str, failure: RedisFailure) -> None:
        self._redis = redis
        self._shared = RedisGcra(redis, prefix=prefix) if redis is not None else None
        self.memory = MemoryGcra()
        self._failure = failure

    @property
    def shared(self) -> bool:
        """Whether limits and in-flight slots are counted in Redis (when it answers)."""
        return self._shared is not None

    async def admit(
        self,
        checks: Sequence[LimitCheck],
        claim: SlotClaim | None = None,
        membership: SetMembership | None = None,
    ) -> RedisVerdict:
        """The limits' outcomes; whether Redis granted the claimed in-flight slot and whether
        the member is in the set, each None when Redis did not decide it (nothing asked, no
        Redis, or Redis down and the limits failing open)."""
        if self._shared is None or self._redis is None:
            return RedisVerdict(self.memory.check(checks), None, None)
        health = self._redis.health
        if not health.may_ask():
            return self._without_redis(checks)
        try:
            verdict = await self._shared.admit(checks, claim, membership)
        except REDIS_ERRORS as exc:
            health.failed(exc)
            return self._without_redis(checks)
        health.succeeded()
        return verdict

    def release(self, claim: SlotClaim) -> None:
        if self._shared is not None:
            self._shared.release(claim)

    async def forget(
        self,
        *,
        prefixes: Sequence[str] = (),
        keys: Sequence[str] = (),
        in_flight: Sequence[str] = (),
    ) -> None:
        """Delete the counts of a deleted consumer or rule (`MemoryGcra.forget`,
        `RedisGcra.forget`), in this process and in Redis; `RedisUnavailable` when Redis
        does not answer."""
        self.memory.forget(prefixes=prefixes, keys=keys)
        if self._shared is not None and self._redis is not None:
            async with self._redis.answering():
                await self._shared.forget(prefixes=prefixes, keys=keys, in_flight=in_flight)

    def _without_redis(self, checks: Sequence[LimitCheck]) -> RedisVerdict:
        if self._failure == "closed":
            raise RateLimiterUnavailable
        return RedisVerdict(self.memory.check(checks), None, None)

    async def aclose(self) -> None:
        if self._shared is not None:
            await self._shared.aclose()


__all__ = ["LimitOutcome", "RateLimiter", "RateLimiterUnavailable", "RedisFailure"]
