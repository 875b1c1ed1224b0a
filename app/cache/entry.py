"""What the response cache stores: a response (status, headers, body bytes) with what its
freshness was computed from, or a marker naming the headers the origin's responses vary on.

Stored in Redis as bytes: a 4-byte length, the metadata as JSON, then the body as it is. No
pickle: an entry is data, and a process never runs what another wrote.
"""

import struct
from dataclasses import dataclass, field
from typing import Any

import orjson

_MAGIC = b"GWC1"
_LENGTH = struct.Struct(">I")


@dataclass(slots=True)
class CachedResponse:
    status: int
    # Lower-cased names, as the client is answered (without hop-by-hop fields).
    headers: list[tuple[str, str]]
    body: bytes
    # Seconds since the epoch when the cache received it; with `initial_age` (the origin's
    # `Age`) this gives the current age in any process (RFC 9111 section 4.2.3).
    stored_at: float
    initial_age: float
    # Freshness lifetime, and how long past it the entry may still be served.
    fresh_s: float
    stale_while_revalidate_s: float = 0.0
    stale_if_error_s: float = 0.0
    # `must-revalidate`, `proxy-revalidate` or `no-cache`: never served stale.
    must_revalidate: bool = False
    # The route policy's version (its settings and the config revision) it was stored under.
    version: str = ""
    etag: str | None = None
    last_modified: str | None = None
    # Encoded copies of `body`, by content coding; each stored once, served to every client
    # that accepts that coding.
    encoded: dict[str, bytes] = field(default_factory=dict)

    def age(self, now: float) -> float:
        return self.initial_age + max(0.0, now - self.stored_at)

    def ttl(self, now: float) -> float:
        """Seconds of freshness left; negative once stale."""
        return self.fresh_s - self.age(now)

    def keep_s(self, now: float) -> float:
        """How long a store should keep it: fresh, then stale but servable, then (with a
        validator) worth revalidating."""
        servable = self.ttl(now) + max(self.stale_while_revalidate_s, self.stale_if_error_s)
        if self.etag is not None or self.last_modified is not None:
            servable = max(servable, self.ttl(now) + _REVALIDATE_KEEP_S)
        return servable

    def size(self) -> int:
        return (
            len(self.body)
            + sum(len(body) for body in self.encoded.values())
            + sum(len(k) + len(v) for k, v in self.headers)
            + 200
        )


# An entry with a validator is kept this long past its freshness, for a conditional request.
_REVALIDATE_KEEP_S = 60.0


@dataclass(slots=True)
class VaryMarker:
    """Stored at a URL's key when the origin's response varies on request headers: the
    response itself lives under a key that adds those headers' values."""

    names: tuple[str, ...]
    version: str
    expires_at: float

    def size(self) -> int:
        return 100 + sum(len(name) for name in self.names)


Stored = CachedResponse | VaryMarker


def dump(value: Stored) -> bytes:
    body = b""
    meta: dict[str, Any]
    if isinstance(value, VaryMarker):
        meta = {"kind": "vary", "names": value.names, "version": value.version}
        meta["expires_at"] = value.expires_at
    else:
        body = value.body
        meta = {
            "kind": "response",
            "status": value.status,
            "headers": value.headers,
            "stored_at": value.stored_at,
            "initial_age": value.initial_age,
            "fresh_s": value.fresh_s,
            "swr_s": value.stale_while_revalidate_s,
            "sie_s": value.stale_if_error_s,
            "must_revalidate": value.must_revalidate,
            "version": value.version,
            "etag": value.etag,
            "last_modified": value.last_modified,
        }
    encoded = orjson.dumps(meta)
    return _MAGIC + _LENGTH.pack(len(encoded)) + encoded + body


def load(data: bytes) -> Stored | None:
    """The stored value, or None for bytes this version does not read."""
    if not data.startswith(_MAGIC) or len(data) < 8:
        return None
    (length,) = _LENGTH.unpack_from(data, 4)
    try:
        meta = orjson.loads(data[8 : 8 + length])
        if meta["kind"] == "vary":
            return VaryMarker(
                names=tuple(meta["names"]), version=meta["version"], expires_at=meta["expires_at"]
            )
        return CachedResponse(
            status=meta["status"],
            headers=[(name, value) for name, value in meta["headers"]],
            body=data[8 + length :],
            stored_at=meta["stored_at"],
            initial_age=meta["initial_age"],
            fresh_s=meta["fresh_s"],
            stale_while_revalidate_s=meta["swr_s"],
            stale_if_error_s=meta["sie_s"],
            must_revalidate=meta["must_revalidate"],
            version=meta["version"],
            etag=meta["etag"],
            last_modified=meta["last_modified"],
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None
