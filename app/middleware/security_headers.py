"""Headers every response carries, whatever produced it."""

_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
# Only where the gateway is reached over TLS, as in production.
_HSTS = (b"strict-transport-security", b"max-age=31536000")


def security_headers(*, hsts: bool) -> tuple[tuple[bytes, bytes], ...]:
    """The headers to add to every response, HSTS included when `hsts`."""
    return (*_HEADERS, _HSTS) if hsts else _HEADERS
