"""The HTTP caching rules the response cache follows as a shared cache (RFC 9111): directives,
freshness, validators and the `Cache-Status` field (RFC 9211)."""

import hashlib
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime

# The cache's name in `Cache-Status`.
CACHE_NAME = "gateway"

# Status codes a cache may store without explicit freshness (RFC 9110 section 15.1).
HEURISTIC_STATUSES = frozenset({200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501})
# Answers to which `stale-if-error` applies.
ERROR_STATUSES = frozenset({500, 502, 503, 504})
# Headers a 304 carries from the stored response (RFC 9110 section 15.4.5).
NOT_MODIFIED_HEADERS = frozenset(
    {"cache-control", "content-location", "date", "etag", "expires", "vary", "last-modified"}
)
# Never stored with a response: they belong to one connection or one answer.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
        "set-cookie",
        "age",
        "cache-status",
    }
)


def directives(value: str | None) -> dict[str, str | None]:
    """`Cache-Control` as a map of lower-cased directive to its argument (None without)."""
    found: dict[str, str | None] = {}
    if not value:
        return found
    for part in value.split(","):
        name, eq, argument = part.partition("=")
        name = name.strip().lower()
        if name:
            found[name] = argument.strip().strip('"') if eq else None
    return found


def seconds(value: str | None) -> int | None:
    """A delta-seconds argument; None when absent or malformed."""
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        return None
    return min(int(value), 2**31)


def http_date(value: str | None) -> float | None:
    """An HTTP-date as seconds since the epoch; None when absent or malformed."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def format_http_date(epoch: float) -> str:
    return format_datetime(datetime.fromtimestamp(epoch, UTC), usegmt=True)


def explicit_freshness(
    response: Mapping[str, str | None], headers: Mapping[str, str], *, now: float
) -> float | None:
    """The freshness lifetime the origin gave a response, for a shared cache (RFC 9111
    section 4.2.1): `s-maxage`, else `max-age`, else `Expires` minus `Date`; None: none given."""
    for name in ("s-maxage", "max-age"):
        if name in response:
            value = seconds(response[name])
            return 0.0 if value is None else float(value)
    if "expires" in headers:
        expires = http_date(headers.get("expires"))
        if expires is None:
            # An invalid Expires means already expired.
            return 0.0
        date = http_date(headers.get("date")) or now
        return max(0.0, expires - date)
    return None


def strong_etag(body: bytes) -> str:
    """An entity tag for a body the gateway made itself."""
    return '"' + hashlib.blake2b(body, digest_size=12).hexdigest() + '"'


def _opaque(tag: str) -> str:
    tag = tag.strip()
    return tag[2:] if tag.startswith("W/") else tag


def etag_matches(if_none_match: str, etag: str | None) -> bool:
    """`If-None-Match` against a stored tag, by weak comparison (RFC 9110 section 13.1.2)."""
    if etag is None:
        return False
    if if_none_match.strip() == "*":
        return True
    mine = _opaque(etag)
    return any(_opaque(tag) == mine for tag in if_none_match.split(","))


def not_modified(
    request: Mapping[str, str], *, etag: str | None, last_modified: str | None
) -> bool:
    """Whether a GET's conditional headers match the selected response, so it is answered 304
    (RFC 9110 section 13.2.2: `If-None-Match` first; `If-Modified-Since` only without it)."""
    if_none_match = request.get("if-none-match")
    if if_none_match is not None:
        return etag_matches(if_none_match, etag)
    since = http_date(request.get("if-modified-since"))
    modified = http_date(last_modified)
    return since is not None and modified is not None and modified <= since


def cache_status(
    *,
    hit: bool = False,
    fwd: str | None = None,
    ttl: float | None = None,
    stored: bool = False,
    collapsed: bool = False,
    fwd_status: int | None = None,
    detail: str | None = None,
) -> str:
    """One `Cache-Status` member (RFC 9211) for this cache."""
    parts = [CACHE_NAME]
    if hit:
        parts.append("hit")
    if fwd is not None:
        parts.append(f"fwd={fwd}")
    if fwd_status is not None:
        parts.append(f"fwd-status={fwd_status}")
    if ttl is not None:
        parts.append(f"ttl={round(ttl)}")
    if stored:
        parts.append("stored")
    if collapsed:
        parts.append("collapsed")
    if detail is not None:
        parts.append(f"detail={detail}")
    return "; ".join(parts)


def header_values(headers: Iterable[tuple[str, str]], name: str) -> list[str]:
    return [value for key, value in headers if key == name]
