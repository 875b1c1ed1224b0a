"""The response cache: one component every cached route calls.

    answer = await cache.serve(request, policy, fetch)

`serve` looks the request up (memory, then Redis), answers a fresh entry at once (304 when
the client's `If-None-Match`/`If-Modified-Since` match), and otherwise calls `fetch` once
per key however many requests miss together: in this process the others wait for the first
one's answer, and across processes a short Redis lock makes the others wait (bounded) for
the entry the holder stores. `fetch(validators)` returns an `OriginResponse`; `validators`
holds `If-None-Match`/`If-Modified-Since` for a stored entry it may revalidate (a 304 from
the origin refreshes the entry). A stale entry is served while one background fetch
revalidates it (`stale-while-revalidate`), or when the fetch fails (`stale-if-error`).
Every answer carries `Cache-Status` (RFC 9211).

Lower-level calls for a route that needs them: `lookup`, `store`, `invalidate`,
`invalidate_url`, `invalidate_after_unsafe`, `route_pattern`.
"""

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import orjson

from app.cache import codings
from app.cache.entry import CachedResponse, Stored, VaryMarker
from app.cache.http import (
    ERROR_STATUSES,
    HEURISTIC_STATUSES,
    HOP_HEADERS,
    NOT_MODIFIED_HEADERS,
    cache_status,
    directives,
    explicit_freshness,
    not_modified,
    seconds,
    strong_etag,
)
from app.cache.policy import CacheAnswer, CachePolicy, CacheRequest, OriginResponse
from app.cache.stores import CODING_SEPARATOR, MemoryCache, RedisCache
from app.errors import GatewayError
from app.observability.access_log import set_cache_status
from app.observability.metrics import count_cache_lookup
from app.settings import CacheSettings, CompressionSettings
from app.shared.redis import REDIS_ERRORS, RedisUnavailable, SharedRedis, receive
from app.shared.tasks import stop_tasks

logger = logging.getLogger("gateway.cache")

Fetch = Callable[[dict[str, str]], Awaitable[OriginResponse]]

# URLs longer than this are not cached (the key holds the URL).
_MAX_URL = 2048
# How often a process waiting on another's fetch lock looks for the entry.
_LOCK_POLL_S = 0.01
_LISTEN_RETRY_S = 1.0


@dataclass(slots=True)
class Lookup:
    """Where a request's entry is (`key`), and what was found there."""

    key: str
    # The key the response is (or would be) stored under: `key`, or a variant of it.
    entry_key: str
    entry: CachedResponse | None
    # uri-miss, vary-miss, miss (stored under an older policy), or None when found.
    missing: str | None


@dataclass(slots=True)
class _Flight:
    """One fetch in progress for a key; the requests that missed meanwhile wait on it."""

    done: asyncio.Future[CachedResponse | None]


class ResponseCache:
    """Two-level response cache with RFC 9111 semantics; see the module docstring."""

    def __init__(
        self,
        settings: CacheSettings,
        *,
        redis: SharedRedis | None,
        prefix: str,
        compression: CompressionSettings,
        metrics: bool = True,
    ) -> None:
        self.settings = settings
        self.metrics = metrics
        self.memory = MemoryCache(max_bytes=settings.memory_max_bytes)
        self.shared = RedisCache(redis, prefix=prefix) if redis is not None else None
        # Stored bodies are encoded under the same rules as any response (`compression`).
        self.codings: tuple[codings.Coding, ...] = (
            tuple(compression.codings) if compression.enabled else ()
        )
        self.compression_minimum_bytes = compression.minimum_bytes
        self._flights: dict[str, _Flight] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._revalidating: set[str] = set()
        self._listener: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """With Redis, listen for invalidations other processes announce."""
        if self.shared is not None and self._listener is None:
            self._listener = asyncio.create_task(self._listen(), name="cache-invalidations")

    async def stop(self) -> None:
        await stop_tasks(*self._background, self._listener)
        self._listener = None

    # -- keys --------------------------------------------------------------------------------

    def key_for(self, request: CacheRequest, policy: CachePolicy) -> str | None:
        """The request's key, or None when the cache stays out of it: not a GET, a URL too
        long, a per-caller route without a caller, or a shared route asked with credentials
        the route does not share."""
        if not self.settings.enabled or request.method != "GET":
            return None
        url = request.url(policy)
        if len(url) > _MAX_URL:
            return None
        if policy.scope == "per-caller":
            if request.principal is None:
                return None
            owner = "u:" + hashlib.blake2b(request.principal.encode(), digest_size=12).hexdigest()
        else:
            if request.credentialed and not policy.share_credentialed:
                return None
            owner = "s"
        key = f"{url}#{owner}"
        if policy.vary_headers:
            key += "|h:" + _digest([request.headers.get(name, "") for name in policy.vary_headers])
        return key

    @staticmethod
    def route_pattern(template: str) -> str:
        """A glob over the keys of a route template: `/partner/v1/candles/{symbol}` ->
        `/partner/v1/candles/*`."""
        parts = []
        depth = 0
        for char in template:
            if char == "{":
                if depth == 0:
                    parts.append("*")
                depth += 1
            elif char == "}":
                depth -= 1
            elif depth == 0:
                parts.append(_glob_escape(char))
        return "".join(parts)

    # -- lookup and store --------------------------------------------------------------------

    async def lookup(
        self, request: CacheRequest, policy: CachePolicy, key: str, *, coding: str | None = None
    ) -> Lookup:
        """The entry for `request` at `key` (from `key_for`), memory first, then Redis."""
        value = await self._get(key, coding)
        if value is None:
            return Lookup(key, key, None, "uri-miss")
        entry_key = key
        if isinstance(value, VaryMarker):
            if value.version != policy.version:
                return Lookup(key, key, None, "miss")
            entry_key = _variant_key(key, value.names, request)
            value = await self._get(entry_key, coding)
            if not isinstance(value, CachedResponse):
                return Lookup(key, entry_key, None, "vary-miss")
        if value.version != policy.version:
            return Lookup(key, entry_key, None, "miss")
        return Lookup(key, entry_key, value, None)

    async def _get(self, key: str, coding: str | None) -> Stored | None:
        value = self.memory.get(key)
        if value is not None or self.shared is None:
            return value
        try:
            value, encoded = await self.shared.get(key, coding)
        except RedisUnavailable:
            self.shared.redis.health.announce_fallback("response cache in memory only")
            return None
        if value is None:
            return None
        now = time.time()
        if isinstance(value, CachedResponse):
            if encoded is not None and coding is not None:
                value.encoded[coding] = encoded
            self.memory.put(key, value, keep_s=min(value.keep_s(now), self.settings.memory_max_s))
        else:
            self.memory.put(
                key, value, keep_s=min(value.expires_at - now, self.settings.memory_max_s)
            )
        return value

    def storable(
        self, request: CacheRequest, policy: CachePolicy, response: OriginResponse
    ) -> CachedResponse | None:
        """The entry `response` makes under `policy`, or None when it must not be stored."""
        now = time.time()
        headers = [
            (name.lower(), value)
            for name, value in response.headers
            if name.lower() not in HOP_HEADERS
        ]
        field = _FieldReader(headers)
        origin_headers = dict(headers)
        # The server dates each answer (see `_answer`).
        headers = [(name, value) for name, value in headers if name != "date"]
        asked = directives(request.headers.get("cache-control"))
        answered = directives(field.joined("cache-control"))
        if "no-store" in asked or "no-store" in answered:
            return None
        if len(response.body) > self.settings.max_entry_bytes:
            return None
        etag = field.first("etag")
        last_modified = field.first("last-modified")
        if policy.follow_origin:
            if policy.scope == "shared" and (
                "private" in answered or _has(response.headers, "set-cookie")
            ):
                return None
            if "*" in field.vary_names():
                return None
            fresh = explicit_freshness(answered, origin_headers, now=now)
            if fresh is None:
                # The route's TTL as the heuristic freshness, for the statuses that allow it;
                # otherwise only worth keeping to revalidate.
                heuristic = response.status in HEURISTIC_STATUSES and policy.ttl_s > 0
                fresh = policy.ttl_s if heuristic else 0.0
            if "no-cache" in answered and answered["no-cache"] is None:
                fresh = 0.0
            if fresh <= 0 and etag is None and last_modified is None:
                return None
            swr = seconds(answered.get("stale-while-revalidate"))
            sie = seconds(answered.get("stale-if-error"))
            return CachedResponse(
                status=response.status,
                headers=headers,
                body=response.body,
                stored_at=now,
                initial_age=float(seconds(_FieldReader(response.headers).first_any("age")) or 0),
                fresh_s=fresh,
                stale_while_revalidate_s=float(
                    swr if swr is not None else policy.stale_while_revalidate_s
                ),
                stale_if_error_s=float(sie if sie is not None else policy.stale_if_error_s),
                must_revalidate=bool(
                    {"must-revalidate", "proxy-revalidate", "no-cache"} & answered.keys()
                ),
                version=policy.version,
                etag=etag,
                last_modified=last_modified,
            )
        if response.status != 200 or policy.ttl_s <= 0:
            return None
        if etag is None:
            etag = strong_etag(response.body)
            headers.append(("etag", etag))
        return CachedResponse(
            status=response.status,
            headers=headers,
            body=response.body,
            stored_at=now,
            initial_age=0.0,
            fresh_s=policy.ttl_s,
            stale_while_revalidate_s=policy.stale_while_revalidate_s,
            stale_if_error_s=policy.stale_if_error_s,
            version=policy.version,
            etag=etag,
            last_modified=last_modified,
        )

    async def store(
        self, request: CacheRequest, policy: CachePolicy, key: str, entry: CachedResponse
    ) -> str:
        """Keep `entry` for `request` at `key` (from `key_for`), in memory and Redis; where it
        was stored (a variant key when the response varies on request headers)."""
        now = time.time()
        keep_s = entry.keep_s(now)
        vary = _FieldReader(entry.headers).vary_names() if policy.follow_origin else ()
        entry_key = key
        if vary:
            marker = VaryMarker(names=vary, version=policy.version, expires_at=now + keep_s)
            entry_key = _variant_key(key, vary, request)
            self.memory.put(key, marker, keep_s=min(keep_s, self.settings.memory_max_s))
            await self._put_shared(key, marker, keep_s)
        self.memory.put(entry_key, entry, keep_s=min(keep_s, self.settings.memory_max_s))
        await self._put_shared(entry_key, entry, keep_s)
        return entry_key

    async def _put_shared(self, key: str, value: Stored, keep_s: float) -> None:
        if self.shared is None:
            return
        with contextlib.suppress(RedisUnavailable):
            await self.shared.put(key, value, keep_s=keep_s)

    # -- invalidation ------------------------------------------------------------------------

    async def invalidate(self, patterns: Sequence[str], *, announce: bool = True) -> int:
        """Delete every entry whose URL matches one of the glob `patterns` (e.g.
        `/partner/v1/quotes*`), in memory, in Redis and in every other process's memory;
        how many entries were found here and in Redis."""
        globs = [pattern + "#*" for pattern in patterns]
        deleted = self.memory.delete_matching(globs)
        if self.shared is not None:
            try:
                deleted += await self.shared.delete_matching(globs)
                if announce:
                    await self.shared.announce(orjson.dumps({"patterns": list(patterns)}))
            except RedisUnavailable:
                logger.warning("cache invalidation %s reached this process only", patterns)
        return deleted

    async def invalidate_url(self, path: str, query: str = "") -> int:
        """Delete the stored GETs of one URL (every caller's, every variant)."""
        request = CacheRequest(method="GET", path=path, query=query, headers={})
        return await self.invalidate([_glob_escape(request.url(CachePolicy(ttl_s=0)))])

    async def invalidate_after_unsafe(
        self, request: CacheRequest, *, status: int, headers: Sequence[tuple[str, str]] = ()
    ) -> int:
        """After a POST, PUT, PATCH or DELETE answered 2xx or 3xx, delete the stored GETs of
        its URL and of its answer's same-origin `Location`/`Content-Location` (RFC 9111
        section 4.4)."""
        if request.method in ("GET", "HEAD", "OPTIONS", "TRACE") or not 200 <= status < 400:
            return 0
        deleted = await self.invalidate_url(request.path, request.query)
        for name, value in headers:
            if name.lower() in ("location", "content-location") and value.startswith("/"):
                path, _, query = value.partition("?")
                deleted += await self.invalidate_url(path, query)
        return deleted

    async def _listen(self) -> None:
        assert self.shared is not None
        while True:
            try:
                # Sharded pub/sub on a cluster (`SharedRedis.subscribe`).
                pubsub = await self.shared.redis.subscribe(self.shared.channel)
                try:
                    while True:
                        message = await receive(pubsub, timeout_s=5.0)
                        if message is None:
                            continue
                        with contextlib.suppress(orjson.JSONDecodeError, KeyError, TypeError):
                            patterns = orjson.loads(message["data"])["patterns"]
                            self.memory.delete_matching([p + "#*" for p in patterns])
                finally:
                    with contextlib.suppress(*REDIS_ERRORS):
                        await pubsub.aclose()
            except asyncio.CancelledError:
                raise
            except REDIS_ERRORS as exc:
                # Missed announcements age out: memory keeps an entry `memory_max_s` at most.
                logger.warning("cache invalidation listener: %s; resubscribing", exc)
                self.memory.clear()
                await asyncio.sleep(_LISTEN_RETRY_S)

    # -- the one call a route makes ----------------------------------------------------------

    async def serve(
        self, request: CacheRequest, policy: CachePolicy, fetch: Fetch, *, section: bool = False
    ) -> CacheAnswer:
        """The answer to `request` under `policy`, from the cache or from `fetch` (called at
        most once per key across the requests that miss together). The result is counted in
        `gateway_cache_lookups` and, unless this is a `section` of a larger answer, named in
        the request's access record."""
        try:
            answer = await self._serve(request, policy, fetch)
        except GatewayError as error:
            # The fetch failed and nothing stored could stand in: the problem says so too.
            error.headers.setdefault(
                "Cache-Status", cache_status(fwd="miss", fwd_status=error.status)
            )
            if self.metrics:
                count_cache_lookup("miss")
            if not section:
                set_cache_status("miss")
            raise
        if self.metrics:
            count_cache_lookup(answer.result)
        if not section:
            set_cache_status(answer.result)
        return answer

    async def _serve(self, request: CacheRequest, policy: CachePolicy, fetch: Fetch) -> CacheAnswer:
        key = self.key_for(request, policy)
        if key is None:
            response = await fetch({})
            return _pass(response, cache_status(fwd="bypass"), "bypass")
        asked = directives(request.headers.get("cache-control"))
        if not asked and "no-cache" in (request.headers.get("pragma") or "").lower():
            asked = {"no-cache": None}
        coding = self._coding(request)
        found = await self.lookup(request, policy, key, coding=coding)
        entry = found.entry
        now = time.time()
        fwd = found.missing or "stale"
        if entry is not None and "no-cache" not in asked:
            if _fresh_enough(entry, asked, now):
                return self._answer(
                    request,
                    found.entry_key,
                    entry,
                    cache_status(hit=True, ttl=entry.ttl(now)),
                    "hit",
                )
            stale_s = -entry.ttl(now)
            if stale_s < 0:
                # Fresh, but older than the client's max-age or min-fresh allow.
                fwd = "request"
            elif not entry.must_revalidate and (
                stale_s <= entry.stale_while_revalidate_s
                or stale_s <= (seconds(asked.get("max-stale")) or 0)
                or ("max-stale" in asked and asked["max-stale"] is None)
            ):
                if stale_s <= entry.stale_while_revalidate_s:
                    self._revalidate_later(request, policy, found, fetch)
                status = cache_status(hit=True, ttl=entry.ttl(now), detail="stale-while-revalidate")
                return self._answer(request, found.entry_key, entry, status, "stale")
        if "only-if-cached" in asked:
            return _pass(
                OriginResponse(504, [("content-type", "text/plain")], b"not in the cache\n"),
                cache_status(fwd=found.missing or "stale"),
                "miss",
            )
        if "no-cache" in asked:
            fwd = "request"
        return await self._forward(request, policy, found, fetch, fwd=fwd)

    async def fresh_answer(self, request: CacheRequest, policy: CachePolicy) -> CacheAnswer | None:
        """The answer from a fresh entry the client accepts as it is, or None (then `serve`
        decides). For a route that can answer a hit before doing any work of its own."""
        key = self.key_for(request, policy)
        if key is None:
            return None
        asked = directives(request.headers.get("cache-control"))
        if "no-cache" in asked or "pragma" in request.headers:
            return None
        found = await self.lookup(request, policy, key, coding=self._coding(request))
        entry = found.entry
        now = time.time()
        if entry is None or not _fresh_enough(entry, asked, now):
            return None
        status = cache_status(hit=True, ttl=entry.ttl(now))
        answer = self._answer(request, found.entry_key, entry, status, "hit")
        if self.metrics:
            count_cache_lookup(answer.result)
        set_cache_status(answer.result)
        return answer

    def _coding(self, request: CacheRequest) -> str | None:
        accepted = request.headers.get("accept-encoding")
        return codings.preferred(accepted, self.codings) if accepted else None

    async def _forward(
        self,
        request: CacheRequest,
        policy: CachePolicy,
        found: Lookup,
        fetch: Fetch,
        *,
        fwd: str,
    ) -> CacheAnswer:
        """Fetch for a miss, one fetch per key: later misses wait for the first."""
        flight = self._flights.get(found.entry_key)
        if flight is not None and fwd != "request":
            stored = await asyncio.shield(flight.done)
            if stored is not None:
                status = cache_status(fwd=fwd, ttl=stored.ttl(time.time()), collapsed=True)
                return self._answer(request, found.entry_key, stored, status, "collapsed")
            response = await fetch({})
            return _pass(response, cache_status(fwd=fwd, fwd_status=response.status), "miss")
        loop = asyncio.get_running_loop()
        flight = _Flight(done=loop.create_future())
        self._flights[found.entry_key] = flight
        kept: CachedResponse | None = None
        try:
            answer, kept = await self._fetch_across_processes(
                request, policy, found, fetch, fwd=fwd
            )
            return answer
        finally:
            if self._flights.get(found.entry_key) is flight:
                del self._flights[found.entry_key]
            if not flight.done.done():
                flight.done.set_result(kept)

    async def _fetch_across_processes(
        self,
        request: CacheRequest,
        policy: CachePolicy,
        found: Lookup,
        fetch: Fetch,
        *,
        fwd: str,
    ) -> tuple[CacheAnswer, CachedResponse | None]:
        token: str | None = None
        if self.shared is not None and fwd != "request":
            try:
                token = await self.shared.lock(
                    found.entry_key, lease_ms=self.settings.fetch_lock_ms
                )
                if token is None:
                    waited = await self._wait_for_holder(request, policy, found)
                    if waited is not None:
                        status = cache_status(fwd=fwd, ttl=waited.ttl(time.time()), collapsed=True)
                        answer = self._answer(request, found.entry_key, waited, status, "collapsed")
                        return answer, waited
            except RedisUnavailable:
                token = None
        try:
            return await self._fetch(request, policy, found, fetch, fwd=fwd)
        finally:
            if token is not None and self.shared is not None:
                with contextlib.suppress(RedisUnavailable):
                    await self.shared.unlock(found.entry_key, token)

    async def _wait_for_holder(
        self, request: CacheRequest, policy: CachePolicy, found: Lookup
    ) -> CachedResponse | None:
        """Another process is fetching this key: its entry once stored, or None after
        `fetch_lock_wait_ms` (this request then fetches itself)."""
        assert self.shared is not None
        give_up = time.monotonic() + self.settings.fetch_lock_wait_ms / 1000
        previous = found.entry.stored_at if found.entry is not None else None
        while time.monotonic() < give_up:
            await asyncio.sleep(_LOCK_POLL_S)
            value, _ = await self.shared.get(found.entry_key, None)
            if (
                isinstance(value, CachedResponse)
                and value.version == policy.version
                and value.stored_at != previous
                and value.ttl(time.time()) > 0
            ):
                self.memory.put(
                    found.entry_key,
                    value,
                    keep_s=min(value.keep_s(time.time()), self.settings.memory_max_s),
                )
                return value
        return None

    async def _fetch(
        self,
        request: CacheRequest,
        policy: CachePolicy,
        found: Lookup,
        fetch: Fetch,
        *,
        fwd: str,
    ) -> tuple[CacheAnswer, CachedResponse | None]:
        entry = found.entry
        validators: dict[str, str] = {}
        if entry is not None:
            if entry.etag is not None:
                validators["if-none-match"] = entry.etag
            if entry.last_modified is not None:
                validators["if-modified-since"] = entry.last_modified
        now = time.time()
        try:
            response = await fetch(validators)
        except Exception:
            if entry is not None and _usable_on_error(entry, now):
                status = cache_status(fwd=fwd, ttl=entry.ttl(now), detail="stale-if-error")
                return self._answer(request, found.entry_key, entry, status, "stale"), None
            raise
        if response.status in ERROR_STATUSES and entry is not None and _usable_on_error(entry, now):
            status = cache_status(
                fwd=fwd, fwd_status=response.status, ttl=entry.ttl(now), detail="stale-if-error"
            )
            return self._answer(request, found.entry_key, entry, status, "stale"), None
        if response.status == 304 and entry is not None:
            refreshed = self._refreshed(entry, response, policy, request)
            if refreshed is not None:
                await self.store(request, policy, found.key, refreshed)
                status = cache_status(
                    fwd=fwd, fwd_status=304, ttl=refreshed.ttl(time.time()), stored=True
                )
                answer = self._answer(request, found.entry_key, refreshed, status, "revalidated")
                return answer, refreshed
        stored = self.storable(request, policy, response)
        if stored is None:
            if policy.follow_origin or response.status < 500:
                # Not storable (or an error): what a stored one was is no longer current.
                self.memory.delete(found.entry_key)
            return _pass(response, cache_status(fwd=fwd, fwd_status=response.status), "miss"), None
        entry_key = await self.store(request, policy, found.key, stored)
        status = cache_status(
            fwd=fwd, fwd_status=response.status, ttl=stored.ttl(time.time()), stored=True
        )
        return self._answer(request, entry_key, stored, status, "miss"), stored

    def _refreshed(
        self,
        entry: CachedResponse,
        response: OriginResponse,
        policy: CachePolicy,
        request: CacheRequest,
    ) -> CachedResponse | None:
        """The stored entry, its headers updated by the origin's 304 (RFC 9111 section 4.3.4)."""
        updates = {
            name.lower(): value
            for name, value in response.headers
            if name.lower() not in HOP_HEADERS and name.lower() != "content-type"
        }
        headers = [(name, updates.pop(name, value)) for name, value in entry.headers]
        headers += list(updates.items())
        merged = OriginResponse(status=entry.status, headers=headers, body=entry.body)
        return self.storable(request, policy, merged)

    def _revalidate_later(
        self, request: CacheRequest, policy: CachePolicy, found: Lookup, fetch: Fetch
    ) -> None:
        """One background fetch refreshes a stale entry while it is served."""
        key = found.entry_key
        if key in self._flights or key in self._revalidating:
            return
        self._revalidating.add(key)

        async def refresh() -> None:
            try:
                await self._forward(request, policy, found, fetch, fwd="stale")
            except Exception as exc:
                logger.info("background revalidation of %s failed: %s", key, exc)
            finally:
                self._revalidating.discard(key)

        task = asyncio.create_task(refresh(), name="cache-revalidate")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- answers -----------------------------------------------------------------------------

    def _answer(
        self,
        request: CacheRequest,
        entry_key: str,
        entry: CachedResponse,
        status: str,
        result: str,
    ) -> CacheAnswer:
        now = time.time()
        # No `Date` of the entry's: the server stamps every answer with one, and `Date` is a
        # singleton field; `Age` says how old the entry is. (Entries stored before `storable`
        # left it out may still hold one.)
        stored = entry.headers
        if _has(stored, "date"):
            stored = [(name, value) for name, value in stored if name != "date"]
        headers = [*stored, ("age", str(int(entry.age(now)))), ("cache-status", status)]
        coding = self._coding(request)
        if entry.status == 200 and (
            not_modified(request.headers, etag=entry.etag, last_modified=entry.last_modified)
            or (
                coding is not None
                and entry.etag is not None
                and not_modified(
                    request.headers, etag=_coded_etag(entry.etag, coding), last_modified=None
                )
            )
        ):
            kept = [(n, v) for n, v in headers if n in NOT_MODIFIED_HEADERS]
            kept += [("age", str(int(entry.age(now)))), ("cache-status", status)]
            return CacheAnswer(304, kept, b"", result, status)
        if coding is not None and codings.encodable(
            status=entry.status,
            headers=[(n.encode(), v.encode()) for n, v in entry.headers],
            size=len(entry.body),
            minimum=self.compression_minimum_bytes,
        ):
            body = entry.encoded.get(coding)
            if body is None:
                body = codings.encode(coding, entry.body)  # type: ignore[arg-type]
                entry.encoded[coding] = body
                self.memory.grew(entry_key)
                self._store_encoded_later(entry_key, coding, body, entry.keep_s(now))
            headers = [(n, _coded_etag(v, coding) if n == "etag" else v) for n, v in headers]
            headers.append(("content-encoding", coding))
            headers.append(("vary", "Accept-Encoding"))
            return CacheAnswer(entry.status, headers, body, result, status)
        return CacheAnswer(entry.status, headers, entry.body, result, status)

    def _store_encoded_later(self, key: str, coding: str, body: bytes, keep_s: float) -> None:
        if self.shared is None:
            return
        shared = self.shared

        async def put() -> None:
            with contextlib.suppress(RedisUnavailable):
                await shared.put_encoded(key, coding, body, keep_s=keep_s)

        task = asyncio.create_task(put(), name="cache-store-encoded")
        self._background.add(task)
        task.add_done_callback(self._background.discard)


class _FieldReader:
    def __init__(self, headers: Sequence[tuple[str, str]]) -> None:
        self.headers = headers

    def first(self, name: str) -> str | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def first_any(self, name: str) -> str | None:
        """The first value of `name`, whatever the case of the stored names."""
        for key, value in self.headers:
            if key.lower() == name:
                return value
        return None

    def joined(self, name: str) -> str | None:
        values = [value for key, value in self.headers if key == name]
        return ", ".join(values) if values else None

    def vary_names(self) -> tuple[str, ...]:
        names = []
        for key, value in self.headers:
            if key == "vary":
                names += [part.strip().lower() for part in value.split(",") if part.strip()]
        # The cache encodes per client itself; the identity body does not vary on it.
        return tuple(sorted(set(names) - {"accept-encoding"}))


def _has(headers: Sequence[tuple[str, str]], name: str) -> bool:
    return any(key.lower() == name for key, _ in headers)


def _digest(values: Sequence[str]) -> str:
    return hashlib.blake2b("\x1f".join(values).encode(), digest_size=8).hexdigest()


def _variant_key(key: str, names: Sequence[str], request: CacheRequest) -> str:
    return key + "|v:" + _digest([request.headers.get(name, "") for name in names])


def _glob_escape(text: str) -> str:
    return "".join("[" + char + "]" if char in "*?[]" else char for char in text)


def _coded_etag(etag: str, coding: str) -> str:
    """A representation's tag: each encoding of a body is a representation of its own."""
    if etag.endswith('"'):
        return etag[:-1] + "-" + coding + '"'
    return etag


def _fresh_enough(entry: CachedResponse, asked: dict[str, str | None], now: float) -> bool:
    ttl = entry.ttl(now)
    if ttl <= 0:
        return False
    max_age = seconds(asked.get("max-age")) if "max-age" in asked else None
    if max_age is not None and entry.age(now) > max_age:
        return False
    min_fresh = seconds(asked.get("min-fresh")) if "min-fresh" in asked else None
    return min_fresh is None or ttl >= min_fresh


def _usable_on_error(entry: CachedResponse, now: float) -> bool:
    return not entry.must_revalidate and -entry.ttl(now) <= entry.stale_if_error_s


def _pass(response: OriginResponse, status: str, result: str) -> CacheAnswer:
    headers = [
        (name.lower(), value)
        for name, value in response.headers
        if name.lower() not in ("content-length", "transfer-encoding", "connection")
    ]
    headers.append(("cache-status", status))
    return CacheAnswer(response.status, headers, response.body, result, status)


__all__ = ["CODING_SEPARATOR", "Fetch", "Lookup", "ResponseCache"]
