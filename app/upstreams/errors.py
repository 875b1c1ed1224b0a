"""How upstream trouble reaches the client: 502, 503 or 504, never a 500.

An upstream's own 4xx answer (an unknown order, a rejected field) is passed on with its
status and detail, since it describes the client's request rather than a failure.
"""

from app.errors import GatewayError


class UpstreamError(GatewayError):
    """The upstream answered, but not with something usable."""

    status, slug, title = 502, "bad-gateway", "Upstream service error"

    def __init__(self, detail: str, *, service: str, **kwargs: object) -> None:
        super().__init__(detail, extra={"service": service}, **kwargs)  # type: ignore[arg-type]
        self.service = service


class UpstreamUnavailable(UpstreamError):
    """No instance could be reached, or the service said it is unavailable."""

    status, slug, title = 503, "upstream-unavailable", "Upstream service unavailable"


class UpstreamTimeout(UpstreamError):
    """The upstream did not answer before the call's deadline."""

    status, slug, title = 504, "upstream-timeout", "Upstream service timed out"


class UpstreamRejected(GatewayError):
    """The upstream refused the request itself (4xx); its status and detail pass through."""

    slug, title = "upstream-rejected", "Request rejected"

    def __init__(self, detail: str, *, status: int, service: str) -> None:
        super().__init__(detail, extra={"service": service})
        self.status = status
        self.service = service
