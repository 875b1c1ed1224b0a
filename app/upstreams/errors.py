"""An upstream's own refusal of a request, passed on to the client.

Upstream trouble (502, 503, 504) is `UpstreamError` and its kinds in `app.errors`, since the
traffic and discovery layers raise it too. An upstream's own 4xx answer (an unknown order, a
rejected field) is passed on with its status and detail, since it describes the client's
request rather than a failure.
"""

from app.errors import GatewayError


class UpstreamRejected(GatewayError):
    """The upstream refused the request itself (4xx); its status and detail pass through."""

    slug, title = "upstream-rejected", "Request rejected"

    def __init__(self, detail: str, *, status: int, service: str) -> None:
        super().__init__(detail, extra={"service": service})
        self.status = status
        self.service = service
