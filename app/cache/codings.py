"""Content codings: which one a client accepts (`Accept-Encoding` with q-values), whether a
response is worth encoding, and the encoders (gzip, Brotli, zstd).

Used by the compression layer (`app.middleware.compression`) for every response, and by the
response cache, which encodes a stored body once per coding and serves that copy to every
client that accepts it.
"""

import gzip
import zlib
from collections.abc import Iterable
from functools import lru_cache
from typing import Literal, Protocol

import brotli
import zstandard

Coding = Literal["br", "zstd", "gzip"]
# The server's preference when a client accepts several codings with the same q-value.
CODINGS: tuple[Coding, ...] = ("br", "zstd", "gzip")

# Never encoded: a stream the client reads as it comes (an encoder buffers), and media that
# are compressed already.
_UNENCODED_MEDIA = (
    b"text/event-stream",
    b"application/zip",
    b"application/gzip",
    b"application/zstd",
    b"image/",
    b"video/",
    b"audio/",
    b"font/woff",
)

# Levels for speed: a response is encoded on the request's path.
_GZIP_LEVEL = 6
_BROTLI_QUALITY = 5
_ZSTD_LEVEL = 3
_ZSTD = zstandard.ZstdCompressor(level=_ZSTD_LEVEL)


def negotiate(accept_encoding: str, offered: Iterable[Coding] = CODINGS) -> Coding | None:
    """The coding to answer a request with `Accept-Encoding: accept_encoding`, or None for
    the identity (RFC 9110 section 12.5.3): the highest q-value among `offered`, ties going
    to the earlier in `offered`; `q=0` refuses a coding, `*` stands for those not named."""
    weights: dict[str, float] = {}
    for item in accept_encoding.split(","):
        name, _, params = item.partition(";")
        name = name.strip().lower()
        if not name:
            continue
        q = 1.0
        for param in params.split(";"):
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value.strip())
                except ValueError:
                    q = 0.0
                if not 0.0 <= q <= 1.0:
                    q = 0.0
        if name == "x-gzip":
            name = "gzip"
        weights[name] = q
    best: Coding | None = None
    best_q = 0.0
    wildcard = weights.get("*")
    for coding in offered:
        q = weights.get(coding, wildcard if wildcard is not None else 0.0)
        if q > best_q:
            best, best_q = coding, q
    return best


@lru_cache(maxsize=256)
def preferred(accept_encoding: str, offered: tuple[Coding, ...] = CODINGS) -> Coding | None:
    """`negotiate`, each of the few distinct `Accept-Encoding` values clients send parsed
    once."""
    return negotiate(accept_encoding, offered)


def encodable(
    *, status: int, headers: Iterable[tuple[bytes, bytes]], size: int | None, minimum: int
) -> bool:
    """Whether a response is worth encoding: a full answer with a body of at least `minimum`
    bytes (`size` None: not known yet, a stream), not encoded already, not an event stream or
    compressed media, and not marked `Cache-Control: no-transform`."""
    if status < 200 or status in (204, 206, 304):
        return False
    for name, value in headers:
        if name == b"content-encoding":
            return False
        if name == b"content-type":
            media = value.partition(b";")[0].strip().lower()
            if media.startswith(_UNENCODED_MEDIA):
                return False
        elif name == b"cache-control" and b"no-transform" in value.lower():
            return False
    return size is None or size >= minimum


def encode(coding: Coding, body: bytes) -> bytes:
    """`body` encoded whole."""
    if coding == "br":
        encoded: bytes = brotli.compress(body, quality=_BROTLI_QUALITY)
        return encoded
    if coding == "zstd":
        return _ZSTD.compress(body)
    return gzip.compress(body, compresslevel=_GZIP_LEVEL, mtime=0)


class StreamEncoder(Protocol):
    def chunk(self, data: bytes) -> bytes: ...

    def finish(self) -> bytes: ...


class _GzipStream:
    def __init__(self) -> None:
        self._encoder = zlib.compressobj(_GZIP_LEVEL, zlib.DEFLATED, 31)

    def chunk(self, data: bytes) -> bytes:
        # Flushed per chunk so a slow stream reaches the client as it comes.
        return self._encoder.compress(data) + self._encoder.flush(zlib.Z_SYNC_FLUSH)

    def finish(self) -> bytes:
        return self._encoder.flush(zlib.Z_FINISH)


class _BrotliStream:
    def __init__(self) -> None:
        self._encoder = brotli.Compressor(quality=_BROTLI_QUALITY)

    def chunk(self, data: bytes) -> bytes:
        out: bytes = self._encoder.process(data) + self._encoder.flush()
        return out

    def finish(self) -> bytes:
        out: bytes = self._encoder.finish()
        return out


class _ZstdStream:
    def __init__(self) -> None:
        self._encoder = _ZSTD.compressobj()

    def chunk(self, data: bytes) -> bytes:
        return self._encoder.compress(data) + self._encoder.flush(zstandard.COMPRESSOBJ_FLUSH_BLOCK)

    def finish(self) -> bytes:
        return self._encoder.flush(zstandard.COMPRESSOBJ_FLUSH_FINISH)


def stream_encoder(coding: Coding) -> StreamEncoder:
    """An encoder for a body that comes in chunks."""
    if coding == "br":
        return _BrotliStream()
    if coding == "zstd":
        return _ZstdStream()
    return _GzipStream()
