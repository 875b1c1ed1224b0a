"""A route's cache policy, the request as the cache sees it, and what a fetch answers."""

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

CacheScope = Literal["shared", "per-caller"]


@dataclass(frozen=True, slots=True)
class CachePolicy:
    """How one route is cached.

    - `ttl_s`: freshness of what the route stores; with `follow_origin`, only when the origin
      gives none (and its status may be stored heuristically).
    - `scope`: `shared` (one entry for every caller) or `per-caller` (keyed by principal).
    - `vary_query`: the query parameters that make the key (None: all of them, sorted).
    - `vary_headers`: request headers whose values make the key.
    - `follow_origin`: behave as a shared HTTP cache (RFC 9111) and follow the origin's
      `Cache-Control`, `Expires`, `Age`, `Vary`, validators; off, the route decides alone.
    - `share_credentialed`: a request with `Authorization` or a cookie may be answered from,
      and stored into, a shared entry (off: such requests bypass a shared cache).
    - `stale_while_revalidate_s`, `stale_if_error_s`: as the directives (the origin's win).
    - `revision`: the route's config version; a change makes every older entry a miss.
    """

    ttl_s: float
    scope: CacheScope = "shared"
    vary_query: tuple[str, ...] | None = None
    vary_headers: tuple[str, ...] = ()
    follow_origin: bool = False
    share_credentialed: bool = False
    stale_while_revalidate_s: float = 0.0
    stale_if_error_s: float = 0.0
    revision: str = ""
    version: str = field(init=False, default="")

    def __post_init__(self) -> None:
        described = repr(
            (
                self.ttl_s,
                self.scope,
                self.vary_query,
                self.vary_headers,
                self.follow_origin,
                self.share_credentialed,
                self.stale_while_revalidate_s,
                self.stale_if_error_s,
                self.revision,
            )
        )
        digest = hashlib.blake2b(described.encode(), digest_size=6).hexdigest()
        object.__setattr__(self, "version", digest)
        object.__setattr__(self, "vary_headers", tuple(h.lower() for h in self.vary_headers))


@dataclass(frozen=True, slots=True)
class CacheRequest:
    """A request as the cache keys and judges it.

    `headers` is case-insensitive (Starlette's `Headers`, aiohttp's `CIMultiDictProxy`, or a
    dict with lower-case names). `principal` names the caller for per-caller entries (a
    user's subject, a consumer's id); `credentialed` says the request carries `Authorization`
    or a session cookie."""

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    principal: str | None = None
    credentialed: bool = False

    def url(self, policy: CachePolicy) -> str:
        """The path and the query parameters that make the key, sorted; parameters are
        compared as sent (not decoded), so `a=1&b=2` and `b=2&a=1` share an entry."""
        if not self.query:
            return self.path
        pairs = [pair for pair in self.query.split("&") if pair]
        if policy.vary_query is not None:
            pairs = [pair for pair in pairs if pair.partition("=")[0] in policy.vary_query]
        if not pairs:
            return self.path
        if len(pairs) > 1:
            pairs.sort()
        return self.path + "?" + "&".join(pairs)


@dataclass(slots=True)
class OriginResponse:
    """What a fetch returns: the origin's (or the route's own) full answer."""

    status: int
    # Names in any case; the cache lower-cases them.
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(slots=True)
class CacheAnswer:
    """What the cache answers the client: status, headers (with `Cache-Status`, `Age`, and
    `Content-Encoding` when it serves an encoded copy), body. `result` is the lookup's
    outcome for logs and metrics: hit, stale, miss, bypass, revalidated, collapsed."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes
    result: str
    cache_status: str
