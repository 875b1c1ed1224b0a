"""Response compression: gzip, Brotli or zstd, whichever the client's `Accept-Encoding`
prefers (q-values; ties go to the gateway's order, `compression.codings`).

The edge (`app.middleware.edge`) picks the coding once per request and wraps the app in a
`CompressionResponder` for it. A body is encoded when it is at least
`compression.minimum_bytes` long and not already encoded, an event stream, compressed media,
a 204/206/304, or marked `no-transform` (`app.cache.codings.encodable`); a streamed body is
encoded chunk by chunk, each flushed so the client gets it as it comes. Every response whose
body could be encoded says `Vary: Accept-Encoding`, whether it was encoded or not. A body the
response cache serves already encoded (it encodes each stored body once per coding) passes
through untouched.
"""

from functools import lru_cache

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.cache.codings import Coding, StreamEncoder, encodable, encode, negotiate, stream_encoder

VARY_ENCODING = (b"vary", b"Accept-Encoding")


@lru_cache(maxsize=256)
def coding_for(accept_encoding: bytes, offered: tuple[Coding, ...]) -> Coding | None:
    """The coding for a request's `Accept-Encoding`; the few distinct values clients send are
    parsed once each."""
    return negotiate(accept_encoding.decode("latin-1"), offered)


def varies_by_encoding(start: Message, minimum_bytes: int) -> bool:
    """Whether a response (its `http.response.start`) would be encoded for a client that
    accepts a coding: it then says `Vary: Accept-Encoding` to the others too. The declared
    length stands in for the body (none: a stream)."""
    headers = start.get("headers", ())
    length = None
    for name, value in headers:
        if name == b"content-length":
            length = int(value) if value.isdigit() else None
    return encodable(status=start["status"], headers=headers, size=length, minimum=minimum_bytes)


def _with_vary(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    for name, value in headers:
        if name == b"vary" and (b"accept-encoding" in value.lower() or value.strip() == b"*"):
            return headers
    return [*headers, VARY_ENCODING]


def _coded_etag(value: bytes, coding: Coding) -> bytes:
    """Each encoding of a body is a representation of its own, with a tag of its own."""
    if value.endswith(b'"') and not value.endswith(b"-" + coding.encode() + b'"'):
        return value[:-1] + b"-" + coding.encode() + b'"'
    return value


class CompressionResponder:
    """The app, its response encoded with `coding` when worth it (see the module)."""

    def __init__(self, app: ASGIApp, *, coding: Coding, minimum_bytes: int) -> None:
        self.app = app
        self.coding = coding
        self.minimum_bytes = minimum_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        coding = self.coding
        start: Message | None = None
        encoder: StreamEncoder | None = None
        untouched = False

        async def send_encoded(message: Message) -> None:
            nonlocal start, encoder, untouched
            kind = message["type"]
            if kind == "http.response.start":
                # Held until the first body chunk shows whether the body is worth encoding.
                start = message
                return
            if kind != "http.response.body" or untouched:
                await send(message)
                return
            body: bytes = message.get("body", b"")
            more = message.get("more_body", False)
            if start is not None:
                held, start = start, None
                headers = list(held.get("headers", ()))
                size = None if more else len(body)
                if not encodable(
                    status=held["status"], headers=headers, size=size, minimum=self.minimum_bytes
                ):
                    untouched = True
                    if varies_by_encoding(held, self.minimum_bytes):
                        held["headers"] = _with_vary(headers)
                    await send(held)
                    await send(message)
                    return
                headers = [
                    (name, _coded_etag(value, coding) if name == b"etag" else value)
                    for name, value in headers
                    if name != b"content-length"
                ]
                headers.append((b"content-encoding", coding.encode()))
                if more:
                    encoder = stream_encoder(coding)
                    held["headers"] = _with_vary(headers)
                    await send(held)
                    await send({"type": kind, "body": encoder.chunk(body), "more_body": True})
                    return
                encoded = encode(coding, body)
                headers.append((b"content-length", str(len(encoded)).encode()))
                held["headers"] = _with_vary(headers)
                await send(held)
                await send({"type": kind, "body": encoded, "more_body": False})
                return
            if encoder is None:
                await send(message)
                return
            data = encoder.chunk(body) if body else b""
            if not more:
                data += encoder.finish()
            await send({"type": kind, "body": data, "more_body": more})

        await self.app(scope, receive, send_encoded)
        if start is not None:
            # The app started a response and sent no body: send what it did send.
            await send(start)
