"""Proxying done right: what a pass-through request may ask for, what the upstream receives,
and what the client receives back.

- The client never chooses where the request goes: the upstream is the route's service, its
  path is built from the route's declaration and the request's decoded, checked segments
  (no `.`/`..` segment, encoded or not, no encoded `/` or `\\`, no `%` left after decoding,
  no `@`, no control characters), the `Host` the upstream sees is its own. An absolute URI
  in the request line only ever reaches the route its path names.
- Hop-by-hop headers (RFC 9110 7.6.1: `Connection`, those it names, `Keep-Alive`,
  `Proxy-Connection`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade`, and the proxy
  authentication headers) go neither way. `Forwarded` (RFC 7239), `X-Forwarded-For`,
  `-Proto`, `-Host` and `Via` are set on the way up, `Via` also on the way down.
- An upstream redirect to the upstream's own address points at the gateway instead.
"""

import re
from collections.abc import AsyncIterator, Iterable, Sequence
from urllib.parse import quote, urlsplit

from starlette.types import Receive

from app.errors import BadRequest, GatewayError
from app.store.route_declarations import RouteDeclaration, path_segments

RawHeaders = list[tuple[bytes, bytes]]

HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"proxy-authenticate",
        b"proxy-authorization",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
# Request headers the gateway itself answers or sets: never copied from the client.
_NOT_FORWARDED = frozenset(
    {
        b"host",
        b"content-length",
        b"x-request-id",
        b"x-request-deadline",
        # The gateway's credential: the consumer's key stays with the gateway.
        b"x-api-key",
        b"forwarded",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"via",
        b"x-forwarded-for",
    }
)
# Response headers the ASGI server writes itself.
_NOT_RETURNED = frozenset({b"date", b"server", b"content-length"})
# Segment characters sent as they are; anything else is percent-encoded again.
_SEGMENT_SAFE = "-._~!$&'()*+,;=:"
_ENCODED_SEPARATOR = re.compile(rb"%(2f|5c)", re.IGNORECASE)
# Anything `checked_segments` refuses: most paths have none of it, and are passed at once.
_SUSPICIOUS = re.compile(r"[%@\\\x00-\x1f\x7f]|/\.\.?(?=/|$)")
_PARAMETER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


class SuspiciousPath(BadRequest):
    slug, title = "suspicious-path", "Path refused"


class MethodNotAllowed(GatewayError):
    status, slug, title = 405, "method-not-allowed", "Method not allowed"


class PayloadTooLarge(GatewayError):
    status, slug, title = 413, "payload-too-large", "Request body too large"


class ClientDisconnected(Exception):
    """The client went away while its body was being forwarded."""


def checked_segments(path: str, raw_path: bytes | None) -> list[str]:
    """The decoded path's segments, or 400 when it tries to leave its place: a dot segment,
    an encoded separator, a second round of percent-encoding, `@`, `\\`, control characters."""
    if raw_path is not None and _ENCODED_SEPARATOR.search(raw_path):
        raise SuspiciousPath("The path encodes a / or \\ inside a segment.")
    segments = path.split("/")[1:]
    if _SUSPICIOUS.search(path) is None:
        return segments
    for segment in segments:
        if segment in {".", ".."}:
            raise SuspiciousPath("The path has a . or .. segment.")
        if "%" in segment:
            raise SuspiciousPath("The path is percent-encoded twice.")
        if "@" in segment or "\\" in segment:
            raise SuspiciousPath("The path has an @ or a \\.")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in segment):
            raise SuspiciousPath("The path has control characters.")
    return segments


def _encode(segments: Iterable[str]) -> str:
    return "/".join(quote(segment, safe=_SEGMENT_SAFE) for segment in segments)


def upstream_path(
    declaration: RouteDeclaration, *, parameters: dict[str, str], rest: str, path: str
) -> str:
    """The path the upstream receives, percent-encoded: the declared upstream path with the
    template's parameters (a prefix route: the upstream prefix, then the rest of the path)."""
    match = declaration.match
    target = declaration.upstream.path
    if match.path is not None:
        if target is None:
            return "/" + _encode(path_segments(path))
        segments = [
            _PARAMETER.sub(lambda m: parameters[m.group(1)], segment)
            for segment in path_segments(target)
        ]
        return "/" + _encode(segments)
    base = target if target is not None else match.path_prefix
    assert base is not None
    encoded = "/" + _encode(path_segments(base)) if base != "/" else ""
    tail = rest.split("/")[1:] if rest else []
    if tail:
        encoded += "/" + _encode(tail)
    return encoded or "/"


# Request headers the loop below sets aside: hop-by-hop, set by the gateway, or read for
# the forwarding headers.
_NOT_COPIED = HOP_BY_HOP | _NOT_FORWARDED


def forwarded_headers(
    headers: Sequence[tuple[bytes, bytes]],
    *,
    peer: str,
    scheme: str,
    via: bytes,
) -> dict[str, str]:
    """The client's end-to-end headers for the upstream, with the forwarding headers set."""
    outgoing: dict[str, str] = {}
    forwarded_for: list[str] = []
    forwarded: list[str] = []
    vias: list[str] = []
    host = ""
    # One pass; the headers `Connection` names are taken out after it (ASGI names are lower
    # case, as `outgoing`'s keys are).
    named_by_connection: list[bytes] = []
    for name, value in headers:
        if name in _NOT_COPIED:
            if name == b"host":
                host = value.decode("latin-1")
            elif name == b"x-forwarded-for":
                forwarded_for.append(value.decode("latin-1"))
            elif name == b"forwarded":
                forwarded.append(value.decode("latin-1"))
            elif name == b"via":
                vias.append(value.decode("latin-1"))
            elif name == b"connection":
                named_by_connection += (v.strip().lower() for v in value.split(b","))
            continue
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        if key in outgoing:
            outgoing[key] += ("; " if key == "cookie" else ", ") + text
        else:
            outgoing[key] = text
    for named in named_by_connection:
        outgoing.pop(named.decode("latin-1"), None)
    node = f'"[{peer}]"' if ":" in peer else peer
    forwarded.append(f"for={node};proto={scheme}" + (f';host="{host}"' if host else ""))
    forwarded_for.append(peer)
    vias.append(via.decode())
    outgoing["forwarded"] = ", ".join(forwarded)
    outgoing["x-forwarded-for"] = ", ".join(forwarded_for)
    outgoing["x-forwarded-proto"] = scheme
    if host:
        outgoing["x-forwarded-host"] = host
    outgoing["via"] = ", ".join(vias)
    return outgoing


def returned_headers(
    raw: Iterable[tuple[bytes, bytes]], *, via: bytes, keep_length: bool
) -> RawHeaders:
    """The upstream's end-to-end response headers for the client, `Via` added."""
    raw = list(raw)
    named_by_connection: set[bytes] = set()
    for name, value in raw:
        if name.lower() == b"connection":
            named_by_connection |= {v.strip().lower() for v in value.split(b",") if v.strip()}
    returned: RawHeaders = []
    vias: list[bytes] = []
    for name, value in raw:
        lower = name.lower()
        if lower in HOP_BY_HOP or lower in named_by_connection:
            continue
        if lower == b"content-length" and keep_length:
            returned.append((lower, value))
            continue
        if lower in _NOT_RETURNED:
            continue
        if lower == b"via":
            vias.append(value)
            continue
        returned.append((lower, value))
    vias.append(via)
    returned.append((b"via", b", ".join(vias)))
    return returned


def rewrite_location(
    location: str,
    *,
    instances: Iterable[str],
    gateway_origin: str,
    upstream_base: str | None,
    public_base: str | None,
) -> str:
    """A redirect to the upstream's own address, pointed at the gateway; a path under the
    route's upstream base mapped back under its public base. Any other location stays."""
    parts = urlsplit(location)
    if parts.scheme or parts.netloc:
        origin = f"{parts.scheme}://{parts.netloc}".lower()
        if origin not in {i.lower().rstrip("/") for i in instances}:
            return location
    elif not location.startswith("/"):
        return location
    path = parts.path or "/"
    if (
        upstream_base is not None
        and public_base is not None
        and (path == upstream_base or path.startswith(upstream_base.rstrip("/") + "/"))
    ):
        path = public_base.rstrip("/") + path[len(upstream_base.rstrip("/")) :]
    rewritten = path + (f"?{parts.query}" if parts.query else "")
    rewritten += f"#{parts.fragment}" if parts.fragment else ""
    return gateway_origin + rewritten if parts.netloc else rewritten


async def request_body(receive: Receive, first: bytes) -> AsyncIterator[bytes]:
    """The request body as it arrives, after its `first` chunk."""
    if first:
        yield first
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def read_body(receive: Receive, first: bytes, more: bool, *, limit: int) -> bytes:
    """The whole request body, or 413 past `limit`."""
    chunks = [first]
    size = len(first)
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnected
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(
                f"This route reads the request body whole: at most {limit} bytes."
            )
        chunks.append(chunk)
        more = message.get("more_body", False)
    if size > limit:
        raise PayloadTooLarge(f"This route reads the request body whole: at most {limit} bytes.")
    return b"".join(chunks)
