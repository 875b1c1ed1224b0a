"""Where the response cache keeps entries: `MemoryCache` in the process (L1: a byte budget,
least recently used out first) and `RedisCache` shared by every process (L2, with the
short fetch lock that keeps concurrent misses in several processes to one upstream call)."""

import fnmatch
import time
import uuid
from collections import OrderedDict
from collections.abc import Sequence

from app.cache.entry import CachedResponse, Stored, dump, load
from app.settings import CONTENT_CODINGS
from app.shared.redis import SharedRedis, delete_keys


class MemoryCache:
    """Entries by key within `max_bytes`; the least recently used leave first."""

    def __init__(self, *, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.used_bytes = 0
        # key -> (value, keep until (monotonic), size)
        self._items: OrderedDict[str, tuple[Stored, float, int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> Stored | None:
        item = self._items.get(key)
        if item is None:
            return None
        value, keep_until, _ = item
        if time.monotonic() >= keep_until:
            self._drop(key)
            return None
        self._items.move_to_end(key)
        return value

    def put(self, key: str, value: Stored, *, keep_s: float) -> None:
        if keep_s <= 0:
            self.delete(key)
            return
        size = value.size()
        if size > self.max_bytes:
            self.delete(key)
            return
        self._drop(key)
        self._items[key] = (value, time.monotonic() + keep_s, size)
        self.used_bytes += size
        while self.used_bytes > self.max_bytes and self._items:
            oldest = next(iter(self._items))
            self._drop(oldest)

    def grew(self, key: str) -> None:
        """An entry's encoded copies changed: account for its new size."""
        item = self._items.get(key)
        if item is not None and isinstance(item[0], CachedResponse):
            value, keep_until, _ = item
            self.put(key, value, keep_s=keep_until - time.monotonic())

    def delete(self, key: str) -> None:
        self._drop(key)

    def delete_matching(self, patterns: Sequence[str]) -> int:
        """Delete the keys matching any of the glob `patterns`; how many."""
        doomed = [key for key in self._items if any(fnmatch.fnmatchcase(key, p) for p in patterns)]
        for key in doomed:
            self._drop(key)
        return len(doomed)

    def clear(self) -> None:
        self._items.clear()
        self.used_bytes = 0

    def _drop(self, key: str) -> None:
        item = self._items.pop(key, None)
        if item is not None:
            self.used_bytes -= item[2]


# Separates an entry's key from the coding of an encoded copy kept beside it.
CODING_SEPARATOR = "~"


class RedisCache:
    """Entries in Redis under `{prefix}cache:{<key>}`, each with a TTL, encoded copies beside
    them (`{prefix}cache:{<key>}~br`); fetch locks under `{prefix}cache-lock:{<key>}`.

    Every call raises `RedisUnavailable` when Redis does not answer; the cache then works
    from memory alone (see `ResponseCache`)."""

    def __init__(self, redis: SharedRedis, *, prefix: str) -> None:
        self.redis = redis
        self.entries = f"{prefix}cache:"
        self.locks = f"{prefix}cache-lock:"
        self.channel = f"{prefix}cache-invalidated"
        self._release = redis.client.register_script(_RELEASE)

    def _entry(self, key: str) -> str:
        # The whole key is the hash tag: an entry and its encoded copies share a Cluster slot.
        return self.entries + "{" + key + "}"

    def _lock(self, key: str) -> str:
        return self.locks + "{" + key + "}"

    async def get(self, key: str, coding: str | None) -> tuple[Stored | None, bytes | None]:
        """The entry at `key` and, when asked, its copy encoded with `coding`: one round trip."""
        names = [self._entry(key)]
        if coding is not None:
            names.append(self._entry(key) + CODING_SEPARATOR + coding)
        async with self.redis.answering() as client:
            found = await client.mget(names)
        value = load(found[0]) if isinstance(found[0], bytes) else None
        encoded = found[1] if coding is not None and isinstance(found[1], bytes) else None
        return value, encoded

    async def put(self, key: str, value: Stored, *, keep_s: float) -> None:
        millis = int(keep_s * 1000)
        if millis <= 0:
            return
        async with self.redis.answering() as client:
            pipe = client.pipeline(transaction=False)
            pipe.set(self._entry(key), dump(value), px=millis)
            if isinstance(value, CachedResponse):
                # A copy encoded from the body this replaces is no longer its copy.
                for coding in CONTENT_CODINGS:
                    pipe.delete(self._entry(key) + CODING_SEPARATOR + coding)
            await pipe.execute()

    async def put_encoded(self, key: str, coding: str, body: bytes, *, keep_s: float) -> None:
        millis = int(keep_s * 1000)
        if millis <= 0:
            return
        async with self.redis.answering() as client:
            await client.set(self._entry(key) + CODING_SEPARATOR + coding, body, px=millis)

    async def delete_matching(self, patterns: Sequence[str]) -> int:
        """Delete the entries whose key matches one of the glob `patterns` (SCAN MATCH)."""
        deleted = 0
        async with self.redis.answering() as client:
            for pattern in patterns:
                names = [
                    name
                    async for name in client.scan_iter(
                        match=self.entries + "{" + pattern, count=1000
                    )
                ]
                deleted += await delete_keys(client, keys=names)
        return deleted

    async def lock(self, key: str, *, lease_ms: int) -> str | None:
        """Claim the right to fetch `key` for `lease_ms`: a token to release it with, or None
        when another process holds it."""
        token = uuid.uuid4().hex
        async with self.redis.answering() as client:
            claimed = await client.set(self._lock(key), token, nx=True, px=lease_ms)
        return token if claimed else None

    async def unlock(self, key: str, token: str) -> None:
        async with self.redis.answering() as client:
            await self._release(keys=[self._lock(key)], args=[token], client=client)

    async def announce(self, message: bytes) -> None:
        # Sharded (SPUBLISH) on a cluster, as the listeners subscribe.
        await self.redis.publish(self.channel, message)


# Release a fetch lock only if it is still ours (its lease may have passed to another).
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
