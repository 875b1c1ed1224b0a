"""Self-registration: instances announce themselves and keep heartbeating, or they leave.

With Redis, registrations are shared by every gateway process: per service, a sorted set of
instance URLs scored by their expiry (epoch seconds) and a hash of their weight and TTL,
under `<redis_prefix>discovery:<service>:`. Each process keeps an in-memory copy refreshed in
the background, so the hot path never waits on Redis; expiry is also checked against that
copy, so an instance leaves on time even between refreshes. Without Redis, the in-memory
copy is the registry.
"""

import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import orjson

from app.shared.redis import RedisUnavailable, SharedRedis

logger = logging.getLogger("gateway.discovery")


@dataclass(frozen=True, slots=True)
class Registration:
    service: str
    url: str
    weight: int
    ttl_s: float
    expires_at: float

    def live(self, now: float) -> bool:
        return now < self.expires_at


class SelfRegistry:
    def __init__(
        self,
        *,
        redis: SharedRedis | None,
        prefix: str,
        default_ttl_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._shared = redis
        self._prefix = prefix
        self.default_ttl_s = default_ttl_s
        self._clock = clock
        self._known: dict[str, dict[str, Registration]] = {}

    # A service's two keys share a hash tag: they are written together in one transaction.
    def _expiry_key(self, service: str) -> str:
        return f"{self._prefix}discovery:{{{service}}}:expiry"

    def _meta_key(self, service: str) -> str:
        return f"{self._prefix}discovery:{{{service}}}:meta"

    def live(self, service: str) -> tuple[Registration, ...]:
        """The instances of `service` that registered and have not expired."""
        known = self._known.get(service)
        if not known:
            return ()
        now = self._clock()
        return tuple(r for r in known.values() if r.live(now))

    async def register(
        self, service: str, url: str, *, weight: int = 1, ttl_s: float | None = None
    ) -> Registration:
        ttl = ttl_s or self.default_ttl_s
        registration = Registration(service, url, weight, ttl, self._clock() + ttl)
        if self._shared is not None:
            async with self._shared.answering() as client, client.pipeline(True) as pipe:
                pipe.zadd(self._expiry_key(service), {url: registration.expires_at})
                pipe.hset(
                    self._meta_key(service),
                    url,
                    orjson.dumps({"weight": weight, "ttl_s": ttl}),
                )
                await pipe.execute()
        self._known.setdefault(service, {})[url] = registration
        return registration

    async def heartbeat(self, service: str, url: str) -> Registration | None:
        """Extend a live registration by its TTL; None when it is unknown or has expired."""
        now = self._clock()
        if self._shared is None:
            current = self._known.get(service, {}).get(url)
            if current is None or not current.live(now):
                return None
            weight, ttl = current.weight, current.ttl_s
        else:
            async with self._shared.answering() as client:
                async with client.pipeline(transaction=False) as pipe:
                    pipe.zscore(self._expiry_key(service), url)
                    pipe.hget(self._meta_key(service), url)
                    expires_at, meta = await pipe.execute()
                if expires_at is None or expires_at <= now or meta is None:
                    return None
                fields = orjson.loads(meta)
                weight, ttl = int(fields["weight"]), float(fields["ttl_s"])
                # XX: a heartbeat never resurrects an instance deregistered meanwhile.
                await client.zadd(self._expiry_key(service), {url: now + ttl}, xx=True)
        registration = Registration(service, url, weight, ttl, now + ttl)
        self._known.setdefault(service, {})[url] = registration
        return registration

    async def deregister(self, service: str, url: str) -> bool:
        """Remove a registration at once; False when there was none."""
        removed = self._known.get(service, {}).pop(url, None) is not None
        if self._shared is not None:
            async with self._shared.answering() as client, client.pipeline(True) as pipe:
                pipe.zrem(self._expiry_key(service), url)
                pipe.hdel(self._meta_key(service), url)
                gone, _ = await pipe.execute()
            removed = removed or bool(gone)
        return removed

    async def refresh(self, services: Iterable[str]) -> None:
        """Re-read the registrations of `services` from Redis, dropping expired ones there."""
        if self._shared is None:
            now = self._clock()
            for registrations in self._known.values():
                for url in [u for u, r in registrations.items() if not r.live(now)]:
                    del registrations[url]
            return
        names = list(services)
        now = self._clock()
        try:
            async with self._shared.answering() as client, client.pipeline(False) as pipe:
                for name in names:
                    pipe.zrangebyscore(self._expiry_key(name), now, "+inf", withscores=True)
                    pipe.zrangebyscore(self._expiry_key(name), "-inf", now)
                    pipe.hgetall(self._meta_key(name))
                results = await pipe.execute()
        except RedisUnavailable as exc:
            # Keep routing on what we knew; entries still expire locally.
            logger.warning("could not refresh self-registrations: %s", exc)
            return
        for index, name in enumerate(names):
            live, expired, meta = results[3 * index : 3 * index + 3]
            known: dict[str, Registration] = {}
            for raw_url, expires_at in live:
                url = raw_url.decode() if isinstance(raw_url, bytes) else raw_url
                raw_meta = meta.get(raw_url) or meta.get(url.encode())
                fields = orjson.loads(raw_meta) if raw_meta else {}
                known[url] = Registration(
                    name,
                    url,
                    int(fields.get("weight", 1)),
                    float(fields.get("ttl_s", self.default_ttl_s)),
                    float(expires_at),
                )
            self._known[name] = known
            if expired:
                # Best effort: another process's refresh, or the next one, drops them too.
                with contextlib.suppress(RedisUnavailable):
                    await self._drop_expired(name, expired)

    async def _drop_expired(self, service: str, urls: list[bytes]) -> None:
        assert self._shared is not None
        now = self._clock()
        async with self._shared.answering() as client:
            for url in urls:
                # Only if still expired: it may have heartbeated since we looked.
                score = await client.zscore(self._expiry_key(service), url)
                if score is not None and score <= now:
                    await client.zrem(self._expiry_key(service), url)
                    await client.hdel(self._meta_key(service), url)
